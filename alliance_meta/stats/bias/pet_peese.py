"""PET, PEESE and the conditional PET-PEESE estimator (Stanley & Doucouliagos 2014)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import inference
from ..rma import RandomEffectsResult, check_yi_vi, meta_regression
from ..rma_mv import ThreeLevelResult, three_level
from ..robust import robust
from ._common import _html_block, _low_power_note, _predictor, _r_cols

__all__ = ["PetPeeseResult", "pet_peese"]


@dataclass(frozen=True, repr=False)
class PetPeeseResult:
    """PET, PEESE and the conditional PET-PEESE estimate.

    ``pet_*`` and ``peese_*`` are the intercepts of the regressions on sqrt(vi) and on vi
    (``*_slope``/``*_slope_pval``: the slope and its two-sided test; PET's slope test is the FAT,
    funnel asymmetry test). ``pet_pval_one_sided`` is the one-sided p-value of PET's intercept in
    the direction of ``alternative``; ``chosen`` is "PEESE" when it is below 0.05, else "PET",
    and ``estimate``, ``se``, ``zval``, ``dfs``, ``pval``, ``ci_lb``, ``ci_ub`` are the chosen
    model's intercept.
    """

    chosen: str
    estimate: float
    se: float
    zval: float
    dfs: float
    pval: float
    ci_lb: float
    ci_ub: float
    pet_estimate: float
    pet_se: float
    pet_zval: float
    pet_dfs: float
    pet_pval: float
    pet_pval_one_sided: float
    pet_ci_lb: float
    pet_ci_ub: float
    pet_slope: float
    pet_slope_pval: float
    peese_estimate: float
    peese_se: float
    peese_zval: float
    peese_dfs: float
    peese_pval: float
    peese_ci_lb: float
    peese_ci_ub: float
    peese_slope: float
    peese_slope_pval: float
    alternative: str
    model: str
    k: int
    n_clusters: int | None
    level: float
    measure: str
    note: str = ""

    def summary(self) -> pd.DataFrame:
        rows = []
        for lab, pre in (("PET", "pet_"), ("PEESE", "peese_")):
            rows.append(_r_cols({
                "method": lab, "estimate": getattr(self, pre + "estimate"),
                "se": getattr(self, pre + "se"), "zval": getattr(self, pre + "zval"),
                "dfs": getattr(self, pre + "dfs"), "pval": getattr(self, pre + "pval"),
                "ci_lb": getattr(self, pre + "ci_lb"), "ci_ub": getattr(self, pre + "ci_ub"),
                "slope": getattr(self, pre + "slope"),
                "slope_pval": getattr(self, pre + "slope_pval")}, self.measure))
        rows.append(_r_cols({
            "method": f"PET-PEESE (uses {self.chosen})", "estimate": self.estimate, "se": self.se,
            "zval": self.zval, "dfs": self.dfs, "pval": self.pval, "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub, "slope": np.nan, "slope_pval": np.nan}, self.measure))
        out = pd.DataFrame(rows)
        out.insert(1, "k", self.k)
        return out

    def __repr__(self) -> str:
        return (f"<PetPeeseResult {self.model}, k = {self.k}: PET intercept {self.pet_estimate:.4f}"
                f" (one-sided p = {self.pet_pval_one_sided:.3g}) -> {self.chosen} estimate "
                f"{self.estimate:.4f} [{self.ci_lb:.4f}, {self.ci_ub:.4f}]>")

    def _repr_html_(self) -> str:
        return _html_block(f"PET-PEESE ({self.model})", self.summary(), self.note)


def _wls_dispersion(y, v, x, level):
    """Weighted least squares with weights 1/vi and an estimated multiplicative dispersion
    (R's ``lm(y ~ x, weights = 1/vi)``); returns coef, se, t, df, two-sided p, crit."""
    k = y.size
    X = np.column_stack([np.ones(k), x])
    w = 1.0 / v
    A = X.T @ (X * w[:, None])
    Ainv = np.linalg.inv(A)
    b = Ainv @ (X.T @ (w * y))
    e = y - X @ b
    df = k - 2
    s2 = float((w * e**2).sum() / df)
    se = np.sqrt(np.diag(Ainv) * s2)
    t = b / se
    return b, se, t, float(df), inference.pvalue(t, df), inference.crit(level, df)


def _one_sided(zval: float, dfs: float, alternative: str) -> float:
    return inference.pvalue(zval, dfs, side=alternative)


def pet_peese(yi, vi: Sequence[float] | None = None, *, model: str = "wls",
              method: str = "REML", alternative: str = "greater", level: float = 0.95,
              measure: str = "ZCOR") -> PetPeeseResult:
    """PET, PEESE and the conditional PET-PEESE estimator (Stanley & Doucouliagos 2014).

    Stanley & Doucouliagos (2014), Res Synth Methods 5:60-78, doi:10.1002/jrsm.1095; Stanley
    (2008), Oxf Bull Econ Stat 70:103-127, doi:10.1111/j.1468-0084.2007.00487.x.

    Models (``model=``):

    - ``"wls"`` (default, Stanley & Doucouliagos' unrestricted weighted least squares):
      yi = b0 + b1 * sqrt(vi) + e (PET) and yi = b0 + b1 * vi + e (PEESE) with weights 1/vi and
      a multiplicative dispersion estimated from the residuals; t tests with k - 2 df. This is
      metafor's ``regtest(yi, vi, model="lm", predictor="sei" / "vi")``.
    - ``"rma"``: the same regressions as random-effects meta-regressions with tau^2 by
      ``method`` and z tests (metafor's ``regtest(rma(yi, vi, method=), predictor=)``).
    - a :class:`ThreeLevelResult` passed as ``yi``: three-level meta-regressions on sqrt(vi) and
      vi with CR2 robust t tests and Satterthwaite df, clustered by sample (Rodgers &
      Pustejovsky 2021, Psychol Methods 26:141-160, doi:10.1037/met0000300). A
      :class:`RandomEffectsResult` passed as ``yi`` supplies yi and vi.

    Conditional rule: PET's intercept b0 is tested one-sided at alpha = .05 in the direction of
    ``alternative`` ("greater": H0 b0 <= 0 against b0 > 0, for effects expected positive, as
    alliance-outcome correlations; "less" for negative ones). If H0 is rejected (one-sided
    p < .05, i.e. there is a genuine effect), the PEESE intercept is the PET-PEESE estimate,
    otherwise the PET intercept.
    """
    who = "pet_peese"
    if alternative not in ("greater", "less"):
        raise ValueError(f"{who}: alternative must be 'greater' or 'less', got {alternative!r}")
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must lie in (0, 1), got {level}")
    parts = {}
    n_clusters = None
    if isinstance(yi, ThreeLevelResult):
        if yi.X.shape[1] > 1:
            raise ValueError(f"{who}: only applicable to three-level models without moderators")
        for lab, pr in (("pet", "sei"), ("peese", "vi")):
            fit = three_level(yi.yi, yi.vi, yi.cluster, mods=_predictor(yi.vi, pr, who),
                              method=yi.method, level=level)
            rb = robust(fit, yi.cluster, level=level)
            parts[lab] = (float(rb.coef[0]), float(rb.se[0]), float(rb.tval[0]),
                          float(rb.df[0]), float(rb.ci_lb[0]), float(rb.ci_ub[0]),
                          float(rb.coef[1]), float(rb.pval[1]))
            n_clusters = rb.n_clusters
        k, measure = yi.k, yi.measure
        mdesc = f"three-level meta-regression ({yi.method}), CR2 robust t (Satterthwaite df)"
        note = _low_power_note(n_clusters, "PET-PEESE", "samples")
    else:
        if isinstance(yi, RandomEffectsResult):
            y, v, measure = yi.yi, yi.vi, yi.measure
        else:
            if vi is None:
                raise ValueError(f"{who}: give vi (or pass a fitted model as yi)")
            y, v = check_yi_vi(yi, vi, who, min_k=3)
        k = y.size
        if k < 3:
            raise ValueError(f"{who}: needs at least 3 effect sizes, got k = {k}")
        if model == "wls":
            for lab, pr in (("pet", "sei"), ("peese", "vi")):
                b, se, t, df, p, crit = _wls_dispersion(y, v, _predictor(v, pr, who), level)
                parts[lab] = (b[0], se[0], t[0], df, b[0] - crit * se[0], b[0] + crit * se[0],
                              b[1], p[1])
            mdesc = "WLS with multiplicative dispersion (t, k - 2 df)"
        elif model == "rma":
            for lab, pr in (("pet", "sei"), ("peese", "vi")):
                r = meta_regression(y, v, mods=_predictor(v, pr, who), method=method,
                                    level=level, measure=measure)
                parts[lab] = (r.coef[0], r.se[0], r.zval[0], r.dfs, r.ci_lb[0], r.ci_ub[0],
                              r.coef[1], r.pval[1])
            mdesc = f"random-effects meta-regression ({method}, z)"
        else:
            raise ValueError(f"{who}: model must be 'wls' or 'rma', got {model!r}")
        note = _low_power_note(k, "PET-PEESE")

    pet, peese = parts["pet"], parts["peese"]
    p1 = _one_sided(pet[2], pet[3], alternative)
    chosen = "PEESE" if p1 < 0.05 else "PET"
    c = peese if chosen == "PEESE" else pet
    return PetPeeseResult(
        chosen=chosen, estimate=float(c[0]), se=float(c[1]), zval=float(c[2]), dfs=float(c[3]),
        pval=inference.pvalue(c[2], c[3]), ci_lb=float(c[4]), ci_ub=float(c[5]),
        pet_estimate=float(pet[0]), pet_se=float(pet[1]), pet_zval=float(pet[2]),
        pet_dfs=float(pet[3]), pet_pval=inference.pvalue(pet[2], pet[3]), pet_pval_one_sided=p1,
        pet_ci_lb=float(pet[4]), pet_ci_ub=float(pet[5]), pet_slope=float(pet[6]),
        pet_slope_pval=float(pet[7]),
        peese_estimate=float(peese[0]), peese_se=float(peese[1]), peese_zval=float(peese[2]),
        peese_dfs=float(peese[3]), peese_pval=inference.pvalue(peese[2], peese[3]),
        peese_ci_lb=float(peese[4]), peese_ci_ub=float(peese[5]),
        peese_slope=float(peese[6]), peese_slope_pval=float(peese[7]),
        alternative=alternative, model=mdesc, k=k, n_clusters=n_clusters, level=level,
        measure=measure, note=note,
    )
