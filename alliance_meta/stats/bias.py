"""Small-study effects and publication bias: funnel asymmetry tests, trim-and-fill, PET-PEESE,
step-function selection models and fail-safe N.

Every function takes a fitted model (or ``yi, vi``) from :mod:`alliance_meta.models` and returns
a frozen result with metafor's names (Viechtbauer 2010, J Stat Softw 36(3),
doi:10.18637/jss.v036.i03): ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``k0``,
``delta``, ``LRT``, ``fsnum``. Results based on fewer than 10 effects carry a ``note`` saying that
the power of the method is low (Sterne et al. 2011, BMJ 343:d4002, doi:10.1136/bmj.d4002);
methods that cannot run raise a ValueError that says why.

For dependent effects (a :class:`~alliance_meta.multilevel.ThreeLevelResult`), :func:`egger_test`
and :func:`pet_peese` fit the three-level meta-regression on the standard error (or the sampling
variance) and test it with CR2 cluster-robust standard errors and Satterthwaite df (Rodgers &
Pustejovsky 2021, Psychol Methods 26:141-160, doi:10.1037/met0000300), which metafor's
``regtest`` does not offer for ``rma.mv`` models.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from . import engine
from .rma import (
    MetaRegressionResult,
    RandomEffectsResult,
    _df_html,
    _fit_batch,
    check_yi_vi,
    meta_regression,
    random_effects,
)
from .rma_mv import ThreeLevelResult, three_level
from .robust import robust

__all__ = [
    "EggerResult",
    "RankTestResult",
    "TrimFillResult",
    "PetPeeseResult",
    "SelectionModelResult",
    "FailSafeNResult",
    "egger_test",
    "rank_test",
    "trim_and_fill",
    "pet_peese",
    "selection_model",
    "fail_safe_n",
]

LOW_POWER_K = 10


def _low_power_note(k: int, what: str, unit: str = "effect sizes") -> str:
    if k < LOW_POWER_K:
        return (
            f"k = {k} {unit} (< {LOW_POWER_K}): the power of {what} is low; a non-significant "
            f"result is no evidence of the absence of bias (Sterne et al. 2011)."
        )
    return ""


def _r_cols(row: dict, measure: str) -> dict:
    """Add r = tanh(z) columns for estimates on Fisher's z scale."""
    if measure == "ZCOR":
        for c in ("estimate", "ci_lb", "ci_ub"):
            if c in row:
                row["r" if c == "estimate" else "r_" + c] = np.tanh(row[c])
    return row


def _html_block(title: str, df: pd.DataFrame, note: str) -> str:
    n = f"<br><i>{html.escape(note)}</i>" if note else ""
    return f"<div><b>{html.escape(title)}</b>{_df_html(df)}{n}</div>"


def _uni(res, who: str) -> RandomEffectsResult:
    if isinstance(res, MetaRegressionResult):
        raise ValueError(f"{who}: only applicable to models without moderators")
    if isinstance(res, ThreeLevelResult):
        raise ValueError(
            f"{who}: not defined for a three-level model (its effects are dependent); use "
            f"egger_test or pet_peese on the three-level fit, or aggregate the effects first"
        )
    if not isinstance(res, RandomEffectsResult):
        raise TypeError(f"{who}: needs a RandomEffectsResult, got {type(res).__name__}")
    return res


# ---------------------------------------------------------------------------------------------
# Egger's regression test


@dataclass(frozen=True, repr=False)
class EggerResult:
    """Regression test for funnel-plot asymmetry and the limit estimate.

    ``zval``/``pval`` test the slope on the predictor (``dfs`` = inf for a z test, else the df
    of the t test: k - p under Knapp-Hartung, Satterthwaite under CR2). ``estimate``, ``se``,
    ``ci_lb``, ``ci_ub`` are the intercept: the expected effect of a study with infinite
    precision (metafor's "limit estimate"). ``slope``/``slope_se`` is the predictor's
    coefficient. ``tau2`` is the residual heterogeneity of the regression (NaN for a three-level
    model, whose variance components are ``sigma2``).
    """

    zval: float
    pval: float
    dfs: float
    estimate: float
    se: float
    ci_lb: float
    ci_ub: float
    slope: float
    slope_se: float
    tau2: float
    sigma2: tuple
    k: int
    n_clusters: int | None
    predictor: str
    model: str
    level: float
    measure: str
    note: str = ""

    def summary(self) -> pd.DataFrame:
        row = {
            "test": "Egger regression test",
            "predictor": self.predictor,
            "model": self.model,
            "k": self.k,
            "zval": self.zval,
            "dfs": self.dfs,
            "pval": self.pval,
            "estimate": self.estimate,
            "se": self.se,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
        }
        return pd.DataFrame([_r_cols(row, self.measure)])

    def __repr__(self) -> str:
        stat = "z" if math.isinf(self.dfs) else f"t({self.dfs:.2f})"
        return (
            f"<EggerResult {self.model}, predictor {self.predictor}, k = {self.k}: {stat} = "
            f"{self.zval:.4f}, p = {self.pval:.4g}; limit estimate = {self.estimate:.4f} "
            f"[{self.ci_lb:.4f}, {self.ci_ub:.4f}]{'; ' + self.note if self.note else ''}>"
        )

    def _repr_html_(self) -> str:
        return _html_block("Regression test for funnel plot asymmetry", self.summary(), self.note)


def _predictor(v: np.ndarray, predictor: str, who: str) -> np.ndarray:
    if predictor == "sei":
        return np.sqrt(v)
    if predictor == "vi":
        return v.copy()
    raise ValueError(f"{who}: predictor must be 'sei' or 'vi', got {predictor!r}")


def _three_level_regression(res: ThreeLevelResult, predictor: str, who: str) -> EggerResult:
    x = _predictor(res.vi, predictor, who)
    M = np.column_stack([res.X[:, 1:], x]) if res.X.shape[1] > 1 else x[:, None]
    fit = three_level(res.yi, res.vi, res.cluster, mods=M, method=res.method, test=res.test,
                      level=res.level, measure=res.measure)
    rb = robust(fit, res.cluster, level=res.level)
    note = _low_power_note(rb.n_clusters, f"the regression test on {predictor}", "samples")
    return EggerResult(
        zval=float(rb.tval[-1]), pval=float(rb.pval[-1]), dfs=float(rb.df[-1]),
        estimate=float(rb.coef[0]), se=float(rb.se[0]), ci_lb=float(rb.ci_lb[0]),
        ci_ub=float(rb.ci_ub[0]), slope=float(rb.coef[-1]), slope_se=float(rb.se[-1]),
        tau2=float("nan"), sigma2=(fit.sigma2_between, fit.sigma2_within), k=res.k,
        n_clusters=rb.n_clusters, predictor=predictor,
        model=f"three-level meta-regression ({res.method}), CR2 robust t (Satterthwaite df)",
        level=res.level, measure=res.measure, note=note,
    )


def egger_test(res, predictor: str = "sei") -> EggerResult:
    """Egger's regression test for funnel-plot asymmetry, as metafor's ``regtest(res)``.

    Egger, Davey Smith, Schneider & Minder (1997), BMJ 315:629-634,
    doi:10.1136/bmj.315.7109.629, in the meta-regression form of Sterne & Egger (2005, in
    Rothstein et al., Publication bias in meta-analysis, Wiley, doi:10.1002/0470870168.ch6):
    the standard error sqrt(vi) (``predictor="sei"``, the default) or the sampling variance
    (``"vi"``) is added as a moderator to the fitted model, which is refitted with the same
    tau^2 estimator and test (z, or Knapp-Hartung t); the slope's test is the test of
    asymmetry and the intercept is the limit estimate. A meta-regression gets the predictor added
    to its moderators.

    For a :class:`ThreeLevelResult`, the three-level meta-regression on the predictor is fitted
    and tested with CR2 cluster-robust standard errors and Satterthwaite df, clustered by sample
    (Rodgers & Pustejovsky 2021, Psychol Methods 26:141-160, doi:10.1037/met0000300).
    """
    who = "egger_test"
    if isinstance(res, ThreeLevelResult):
        return _three_level_regression(res, predictor, who)
    if isinstance(res, RandomEffectsResult):
        y, v, Xm = res.yi, res.vi, np.empty((res.k, 0))
    elif isinstance(res, MetaRegressionResult):
        y, v, Xm = res.yi, res.vi, res.X[:, 1:]
    else:
        raise TypeError(f"{who}: needs a fitted model, got {type(res).__name__}")
    x = _predictor(v, predictor, who)
    k = y.size
    p = Xm.shape[1] + 2
    if k - p < 1:
        raise ValueError(f"{who}: k = {k} effect sizes are too few to fit {p} coefficients")
    reg = meta_regression(y, v, mods=np.column_stack([Xm, x]), method=res.method,
                          test=res.test, level=res.level, measure=res.measure)
    test = "z" if res.test == "z" else "Knapp-Hartung t"
    return EggerResult(
        zval=float(reg.zval[-1]), pval=float(reg.pval[-1]), dfs=reg.dfs,
        estimate=float(reg.coef[0]), se=float(reg.se[0]), ci_lb=float(reg.ci_lb[0]),
        ci_ub=float(reg.ci_ub[0]), slope=float(reg.coef[-1]), slope_se=float(reg.se[-1]),
        tau2=reg.tau2, sigma2=(), k=k, n_clusters=None, predictor=predictor,
        model=f"meta-regression ({res.method}, {test})", level=res.level, measure=res.measure,
        note=_low_power_note(k, "the regression test"),
    )


# ---------------------------------------------------------------------------------------------
# Begg's rank correlation test


@dataclass(frozen=True, repr=False)
class RankTestResult:
    """Begg & Mazumdar's rank correlation test: Kendall's ``tau`` between the standardized
    effects and their sampling variances, and its two-sided ``pval`` (``exact`` says whether the
    exact null distribution or the normal approximation was used)."""

    tau: float
    pval: float
    exact: bool
    k: int
    note: str = ""

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"test": "Begg rank correlation", "k": self.k, "tau": self.tau,
                              "pval": self.pval, "exact": self.exact}])

    def __repr__(self) -> str:
        return (f"<RankTestResult k = {self.k}: Kendall's tau = {self.tau:.4f}, "
                f"p = {self.pval:.4g}{' (exact)' if self.exact else ''}>")

    def _repr_html_(self) -> str:
        return _html_block("Rank correlation test for funnel plot asymmetry", self.summary(),
                           self.note)


def rank_test(res) -> RankTestResult:
    """Begg & Mazumdar (1994) rank correlation test, as metafor's ``ranktest(res)``.

    Begg & Mazumdar (1994), Biometrics 50:1088-1101, doi:10.2307/2533446. With the common-effect
    estimate theta = sum(w y)/sum(w) (w = 1/vi) the standardized effects are
    (yi - theta) / sqrt(vi - 1/sum(w)); Kendall's tau-b between them and vi is tested with the
    exact null distribution when k < 50 and there are no ties, else with the normal
    approximation with the tie-corrected variance (Kendall 1970; R's ``cor.test``). The test
    does not depend on the fitted model (only its yi and vi are used).
    """
    who = "rank_test"
    if isinstance(res, ThreeLevelResult):
        raise ValueError(f"{who}: not defined for dependent effects (three-level model); "
                         f"aggregate the effects per sample first")
    if not isinstance(res, (RandomEffectsResult, MetaRegressionResult)):
        raise TypeError(f"{who}: needs a fitted model, got {type(res).__name__}")
    y, v = res.yi, res.vi
    k = y.size
    if k < 3:
        raise ValueError(f"{who}: needs at least 3 effect sizes, got k = {k}")
    w = 1.0 / v
    theta = (w * y).sum() / w.sum()
    ystar = (y - theta) / np.sqrt(v - 1.0 / w.sum())
    ties = np.unique(ystar).size < k or np.unique(v).size < k
    exact = k < 50 and not ties
    t = stats.kendalltau(ystar, v, method="exact" if exact else "asymptotic")
    return RankTestResult(tau=float(t.statistic), pval=float(t.pvalue), exact=exact, k=k,
                          note=_low_power_note(k, "the rank correlation test"))


# ---------------------------------------------------------------------------------------------
# trim and fill


@dataclass(frozen=True, repr=False)
class TrimFillResult:
    """Trim-and-fill: ``k0`` studies imputed on ``side`` ("left" or "right") by ``estimator``;
    ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``tau2``, ``I2``, ``QE`` are
    those of the model refitted to the k + k0 observed and imputed effects; ``filled_yi`` and
    ``filled_vi`` are the imputed studies (for the funnel plot)."""

    k0: int
    side: str
    estimator: str
    estimate: float
    se: float
    zval: float
    pval: float
    ci_lb: float
    ci_ub: float
    tau2: float
    I2: float
    QE: float
    k: int
    filled_yi: np.ndarray = field(repr=False)
    filled_vi: np.ndarray = field(repr=False)
    method: str = "REML"
    measure: str = "ZCOR"
    note: str = ""

    def summary(self) -> pd.DataFrame:
        row = {"method": f"trim and fill ({self.estimator})", "k": self.k, "k0": self.k0,
               "side": self.side, "estimate": self.estimate, "se": self.se, "zval": self.zval,
               "pval": self.pval, "ci_lb": self.ci_lb, "ci_ub": self.ci_ub, "tau2": self.tau2,
               "I2": self.I2}
        return pd.DataFrame([_r_cols(row, self.measure)])

    def __repr__(self) -> str:
        return (f"<TrimFillResult {self.estimator}: k0 = {self.k0} filled on the {self.side}; "
                f"adjusted estimate = {self.estimate:.4f} [{self.ci_lb:.4f}, {self.ci_ub:.4f}], "
                f"tau2 = {self.tau2:.4f}>")

    def _repr_html_(self) -> str:
        return _html_block("Trim and fill", self.summary(), self.note)


def _center(y: np.ndarray, v: np.ndarray, method: str) -> float:
    f = _fit_batch(y[None], v[None], np.ones((1, y.size, 1)), method, "z")
    return float(f.beta[0, 0])


def _rank_avg(a: np.ndarray) -> np.ndarray:
    return stats.rankdata(a, method="average")


def trim_and_fill(res, estimator: str = "L0", side: str | None = None,
                  maxiter: int = 100) -> TrimFillResult:
    """Duval & Tweedie's trim-and-fill, as metafor's ``trimfill(res, estimator=, side=)``.

    Duval & Tweedie (2000a), Biometrics 56:455-463, doi:10.1111/j.0006-341X.2000.00455.x;
    Duval & Tweedie (2000b), JASA 95:89-98, doi:10.1080/01621459.2000.10473905.
    Studies are assumed missing on ``side``; if not given, the side is chosen from the sign of
    the slope of Egger's regression (sei as moderator, same tau^2 estimator): a positive slope
    (small studies show larger effects) puts the missing studies on the left. Starting from
    k0 = 0, the k0 most extreme effects on the other side are trimmed, the centre is re-estimated
    from the remaining effects with the model's estimator, the deviations of all k effects from
    it are ranked (average ranks for ties), and k0 is updated to
    L0 = (4 T - k(k + 1)) / (2k - 1) (T = the sum of the ranks of the deviations on the trimmed
    side) or R0 = (length of the run of largest absolute deviations on that side) - 1, rounded
    (half to even, as R) and floored at 0, until k0 no longer changes (at most ``maxiter``
    rounds). The trimmed effects are then mirrored about the centre (2 * centre - yi, same vi)
    and the model is refitted to all k + k0 effects with the same estimator and test
    ("random-random" when a random-effects model is passed, "fixed-fixed" for a common-effect
    model).
    """
    who = "trim_and_fill"
    res = _uni(res, who)
    if estimator not in ("L0", "R0"):
        raise ValueError(f"{who}: estimator must be 'L0' or 'R0', got {estimator!r}")
    if side not in (None, "left", "right"):
        raise ValueError(f"{who}: side must be 'left', 'right' or None, got {side!r}")
    y0, v0, k = res.yi, res.vi, res.k
    if k < 3:
        raise ValueError(f"{who}: needs at least 3 effect sizes, got k = {k}")
    if side is None:
        f = _fit_batch(y0[None], v0[None], np.column_stack([np.ones(k), np.sqrt(v0)])[None],
                       res.method, "z")
        side = "left" if f.beta[0, 1] >= 0 else "right"
    sign = 1.0 if side == "left" else -1.0  # work with missing studies on the left
    y = sign * y0
    order = np.argsort(y, kind="stable")
    ys, vs = y[order], v0[order]
    k0 = 0
    for _ in range(maxiter):
        mu = _center(ys[: k - k0], vs[: k - k0], res.method)
        d = ys - mu
        r = _rank_avg(np.abs(d))
        if estimator == "L0":
            T = r[d > 0].sum()
            new = (4.0 * T - k * (k + 1)) / (2.0 * k - 1.0)
        else:
            s = np.sign(d)[np.argsort(-np.abs(d), kind="stable")]
            neg = np.flatnonzero(s <= 0)
            run = k if neg.size == 0 else int(neg[0])
            new = run - 1.0
        new = max(0, int(np.round(new)))
        if new == k0:
            break
        k0 = new
        if k0 >= k - 1:
            raise ValueError(f"{who}: the estimated number of missing studies ({k0}) leaves too "
                             f"few studies to estimate the centre; the method cannot run here")
    else:
        raise ValueError(f"{who}: k0 did not settle in {maxiter} iterations")
    fy = sign * (2.0 * mu - ys[k - k0:])
    fv = vs[k - k0:].copy()
    full = random_effects(np.r_[y0, fy], np.r_[v0, fv], method=res.method, test=res.test,
                          level=res.level, measure=res.measure) if k0 > 0 else res
    return TrimFillResult(
        k0=k0, side=side, estimator=estimator, estimate=full.estimate, se=full.se,
        zval=full.zval, pval=full.pval, ci_lb=full.ci_lb, ci_ub=full.ci_ub, tau2=full.tau2,
        I2=full.I2, QE=full.QE, k=k, filled_yi=fy, filled_vi=fv, method=res.method,
        measure=res.measure, note=_low_power_note(k, "trim and fill"),
    )


# ---------------------------------------------------------------------------------------------
# PET-PEESE


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
    return b, se, t, float(df), 2 * stats.t.sf(np.abs(t), df), stats.t.ppf(0.5 + level / 2, df)


def _one_sided(zval: float, dfs: float, alternative: str) -> float:
    z = zval if alternative == "greater" else -zval
    return float(stats.norm.sf(z) if math.isinf(dfs) else stats.t.sf(z, dfs))


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

    def _p2(z, df):
        return float(2 * (stats.norm.sf(abs(z)) if math.isinf(df) else stats.t.sf(abs(z), df)))

    pet, peese = parts["pet"], parts["peese"]
    p1 = _one_sided(pet[2], pet[3], alternative)
    chosen = "PEESE" if p1 < 0.05 else "PET"
    c = peese if chosen == "PEESE" else pet
    return PetPeeseResult(
        chosen=chosen, estimate=float(c[0]), se=float(c[1]), zval=float(c[2]), dfs=float(c[3]),
        pval=_p2(c[2], c[3]), ci_lb=float(c[4]), ci_ub=float(c[5]),
        pet_estimate=float(pet[0]), pet_se=float(pet[1]), pet_zval=float(pet[2]),
        pet_dfs=float(pet[3]), pet_pval=_p2(pet[2], pet[3]), pet_pval_one_sided=p1,
        pet_ci_lb=float(pet[4]), pet_ci_ub=float(pet[5]), pet_slope=float(pet[6]),
        pet_slope_pval=float(pet[7]),
        peese_estimate=float(peese[0]), peese_se=float(peese[1]), peese_zval=float(peese[2]),
        peese_dfs=float(peese[3]), peese_pval=_p2(peese[2], peese[3]),
        peese_ci_lb=float(peese[4]), peese_ci_ub=float(peese[5]),
        peese_slope=float(peese[6]), peese_slope_pval=float(peese[7]),
        alternative=alternative, model=mdesc, k=k, n_clusters=n_clusters, level=level,
        measure=measure, note=note,
    )


# ---------------------------------------------------------------------------------------------
# step-function selection model


@dataclass(frozen=True, repr=False)
class SelectionModelResult:
    """A step-function selection model fitted by maximum likelihood.

    ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``: the adjusted pooled effect
    (the intercept; all coefficients in ``coef``/``coef_se`` for a meta-regression); ``tau2``,
    ``se_tau2``; ``delta``: the relative selection weight of each p-value interval (the first,
    p <= steps[0], fixed at 1), ``se_delta`` (NaN for the fixed one); ``steps``: the upper
    cut-points of the intervals (the last is 1); ``k_per_interval``: the number of observed
    p-values in each; ``LRT``, ``LRT_df``, ``LRT_p``: likelihood-ratio test of H0: all delta = 1
    against the unadjusted model fitted by ML (``logLik_unadjusted``).
    SEs come from the inverse of the observed information (Hessian of the log-likelihood).
    """

    estimate: float
    se: float
    zval: float
    pval: float
    ci_lb: float
    ci_ub: float
    coef: np.ndarray
    coef_se: np.ndarray
    tau2: float
    se_tau2: float
    delta: np.ndarray
    se_delta: np.ndarray
    steps: tuple
    k_per_interval: np.ndarray
    LRT: float
    LRT_df: int
    LRT_p: float
    logLik: float
    logLik_unadjusted: float
    k: int
    alternative: str
    measure: str
    note: str = ""

    def summary(self) -> pd.DataFrame:
        row = {"model": f"step-function selection model (steps {', '.join(map(str, self.steps))})",
               "k": self.k, "estimate": self.estimate, "se": self.se, "zval": self.zval,
               "pval": self.pval, "ci_lb": self.ci_lb, "ci_ub": self.ci_ub, "tau2": self.tau2,
               "LRT": self.LRT, "LRT_df": self.LRT_df, "LRT_p": self.LRT_p}
        return pd.DataFrame([_r_cols(row, self.measure)])

    def selection_weights(self) -> pd.DataFrame:
        """One row per p-value interval: bounds, number of studies, delta and its SE."""
        lo = (0.0,) + self.steps[:-1]
        return pd.DataFrame({"p_lb": lo, "p_ub": self.steps, "k": self.k_per_interval,
                             "delta": self.delta, "se_delta": self.se_delta})

    def __repr__(self) -> str:
        d = ", ".join(f"{x:.3f}" for x in self.delta[1:])
        return (f"<SelectionModelResult k = {self.k}: estimate = {self.estimate:.4f} "
                f"[{self.ci_lb:.4f}, {self.ci_ub:.4f}], tau2 = {self.tau2:.4f}, delta = {d}; "
                f"LRT = {self.LRT:.3f} (df {self.LRT_df}, p = {self.LRT_p:.4g})>")

    def _repr_html_(self) -> str:
        return (_html_block("Step-function selection model (Vevea & Hedges 1995)",
                            self.summary(), self.note)
                + f"<div>{_df_html(self.selection_weights())}</div>")


class _StepLik:
    """Log-likelihood of the step-function selection model and its gradient.

    Parameters theta = (beta (p), tau2 (if random), delta_2..delta_c). With mu = X beta,
    s^2 = vi + tau2, the cut-points alpha_j on the one-sided p-value scale are cut-points
    c_ij = sqrt(vi) * Phi^-1(1 - alpha_j) on the y scale; P_ij = Pr(alpha_{j-1} < p_i <= alpha_j)
    = Phi((c_i,j-1 - mu_i)/s_i) - Phi((c_ij - mu_i)/s_i) and A_i = sum_j delta_j P_ij. The
    log-likelihood is sum_i [log delta_j(i) + log phi((y_i - mu_i)/s_i) - log s_i - log A_i]
    (Vevea & Hedges 1995, eq. 4). Two-sided p-values add the mirrored interval.
    """

    def __init__(self, y, v, X, alphas, two_sided: bool, random: bool):
        self.y, self.v, self.X = y, v, X
        self.k, self.p = X.shape
        self.random = random
        self.c = alphas.size
        sei = np.sqrt(v)
        q = stats.norm.isf(alphas / 2 if two_sided else alphas)  # (c,), last is -inf or 0
        E = np.empty((self.k, self.c + 1))
        E[:, 0] = np.inf
        E[:, 1:] = sei[:, None] * q[None, :]
        if not two_sided:
            E[:, -1] = -np.inf
        else:
            E[:, -1] = 0.0
        self.E = E
        self.two_sided = two_sided
        z = y / sei
        pv = 2 * stats.norm.sf(np.abs(z)) if two_sided else stats.norm.sf(z)
        self.j = np.searchsorted(alphas, pv, side="left")
        self.j = np.minimum(self.j, self.c - 1)
        self.n = np.bincount(self.j, minlength=self.c)

    def split(self, theta):
        p = self.p
        beta = theta[:p]
        tau2 = theta[p] if self.random else 0.0
        delta = np.r_[1.0, theta[p + (1 if self.random else 0):]]
        return beta, tau2, delta

    def _pieces(self, B):
        F = special.ndtr(B)
        phi = np.where(np.isfinite(B), np.exp(-0.5 * np.where(np.isfinite(B), B, 0) ** 2)
                       / np.sqrt(2 * np.pi), 0.0)
        phiB = np.where(np.isfinite(B), phi * np.where(np.isfinite(B), B, 0), 0.0)
        return F, phi, phiB

    def value_grad(self, theta):
        beta, tau2, delta = self.split(theta)
        y, v, X = self.y, self.v, self.X
        mu = X @ beta
        s2 = v + tau2
        s = np.sqrt(s2)
        B = (self.E - mu[:, None]) / s[:, None]
        F, phi, phiB = self._pieces(B)
        P = F[:, :-1] - F[:, 1:]
        dPm = (-phi[:, :-1] + phi[:, 1:]) / s[:, None]  # dP/dmu
        dPt = (-phiB[:, :-1] + phiB[:, 1:]) / (2 * s2[:, None])  # dP/dtau2
        if self.two_sided:
            B2 = (-self.E - mu[:, None]) / s[:, None]
            F2, phi2, phiB2 = self._pieces(B2)
            P = P + F2[:, 1:] - F2[:, :-1]
            dPm = dPm + (-phi2[:, 1:] + phi2[:, :-1]) / s[:, None]
            dPt = dPt + (-phiB2[:, 1:] + phiB2[:, :-1]) / (2 * s2[:, None])
        A = P @ delta
        r = y - mu
        ll = (np.log(delta[self.j]).sum() - 0.5 * (np.log(2 * np.pi * s2) + r**2 / s2).sum()
              - np.log(A).sum())
        g_mu = r / s2 - (dPm @ delta) / A
        grads = [X.T @ g_mu]
        if self.random:
            grads.append([(-0.5 / s2 + 0.5 * r**2 / s2**2 - (dPt @ delta) / A).sum()])
        grads.append(self.n[1:] / delta[1:] - (P[:, 1:] / A[:, None]).sum(0))
        return float(ll), np.concatenate([np.atleast_1d(np.asarray(g, float)) for g in grads])

    def hessian(self, theta):
        n = theta.size
        H = np.empty((n, n))
        for i in range(n):
            h = 1e-5 * max(abs(theta[i]), 1e-2)
            tp, tm = theta.copy(), theta.copy()
            tp[i] += h
            tm[i] -= h
            H[:, i] = (self.value_grad(tp)[1] - self.value_grad(tm)[1]) / (2 * h)
        return 0.5 * (H + H.T)


def selection_model(res, steps: Sequence[float] = (0.025,), alternative: str = "greater",
                    delta_max: float = 100.0) -> SelectionModelResult:
    """Step-function selection model (Vevea & Hedges 1995), as metafor's
    ``selmodel(res, type="stepfun", steps=steps, alternative=alternative)``.

    Vevea & Hedges (1995), Psychometrika 60:419-435, doi:10.1007/BF02294384; Hedges (1992),
    Stat Sci 7:246-255, doi:10.1214/ss/1177011364. With one cut-point at one-sided p = .025
    (the default) this is the three-parameter selection model (3PSM; McShane, Boeckenholt &
    Hansen 2016, Perspect Psychol Sci 11:730-749, doi:10.1177/1745691616662243; Carter et al.
    2019, AMPPS 2:115-144, doi:10.1177/2515245919847196).

    The one-sided p-values p_i = 1 - Phi(yi / sqrt(vi)) (``alternative="greater"``; Phi(z) for
    "less"; 2(1 - Phi(|z|)) for "two.sided") fall into intervals (0, a1], (a1, a2], ..., (., 1]
    whose relative likelihood of publication is delta_j (delta_1 = 1). The model of ``res``
    (random effects, common effect, or a meta-regression) is fitted jointly with the deltas by
    maximum likelihood (whatever ``res.method``), L-BFGS-B with the analytic gradient
    (tau^2 >= 0, 0 < delta <= ``delta_max``, metafor's default bound 100) polished by Newton steps
    to a gradient below 1e-9; SEs from the Hessian (central differences of the analytic
    gradient). The likelihood-ratio test compares with the unadjusted model fitted by ML.

    Raises ValueError if an interval holds no observed p-value (its delta is not estimable) or
    there are too few effects for the number of parameters.
    """
    who = "selection_model"
    if isinstance(res, ThreeLevelResult):
        raise ValueError(f"{who}: not available for three-level models (the likelihood assumes "
                         f"independent effects)")
    if not isinstance(res, (RandomEffectsResult, MetaRegressionResult)):
        raise TypeError(f"{who}: needs a fitted model, got {type(res).__name__}")
    if alternative not in ("greater", "less", "two.sided"):
        raise ValueError(f"{who}: alternative must be 'greater', 'less' or 'two.sided'")
    a = np.unique(np.asarray(list(steps), float))
    if a.size == 0 or np.any((a <= 0) | (a > 1)):
        raise ValueError(f"{who}: steps must lie in (0, 1], got {list(steps)}")
    if a[-1] < 1:
        a = np.r_[a, 1.0]
    y, v = res.yi, res.vi
    X = np.ones((y.size, 1)) if isinstance(res, RandomEffectsResult) else res.X
    k, p = X.shape
    random = res.method != "FE"
    sgn = -1.0 if alternative == "less" else 1.0
    lik = _StepLik(sgn * y, v, X, a, alternative == "two.sided", random)
    bounds = np.r_[0.0, a]
    empty = np.flatnonzero(lik.n == 0)
    if empty.size:
        iv = ", ".join(f"({bounds[j]:g}, {bounds[j + 1]:g}]" for j in empty)
        raise ValueError(
            f"{who}: no observed p-value falls in the interval(s) {iv}, so their selection "
            f"weight cannot be estimated; choose other steps (p-values per interval: "
            f"{lik.n.tolist()})")
    npar = p + int(random) + a.size - 1
    if k <= npar:
        raise ValueError(f"{who}: k = {k} effect sizes are too few for {npar} parameters")
    # unadjusted ML fit: starting values and the null of the LRT
    Yb, Vb, Xb = (sgn * y)[None], v[None], X[None]
    t0 = engine.tau2_estimate(Yb, Vb, Xb, "ML") if random else np.zeros(1)
    b0 = engine.wls(Yb, Vb, Xb, t0).beta[0]
    ll0 = float(engine.loglik(Yb, Vb, Xb, t0, reml=False)[0])
    theta = np.r_[b0, t0 if random else [], np.ones(a.size - 1)]
    lb = np.r_[np.full(p, -np.inf), [0.0] if random else [], np.full(a.size - 1, 1e-10)]
    ub = np.r_[np.full(p, np.inf), [np.inf] if random else [], np.full(a.size - 1, delta_max)]

    def f(th):
        ll, g = lik.value_grad(th)
        return -ll, -g

    sol = optimize.minimize(f, theta, jac=True, method="L-BFGS-B", bounds=list(zip(lb, ub, strict=True)),
                            options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 5000})
    theta = np.clip(sol.x, lb, ub)
    for _ in range(50):  # Newton polish on the parameters off their bounds
        ll, g = lik.value_grad(theta)
        at_lb = (theta <= lb) & (g < 0)
        at_ub = (theta >= ub) & (g > 0)
        free = ~(at_lb | at_ub)
        if np.all(np.abs(g[free]) < 1e-9 * max(1.0, k)):
            break
        H = lik.hessian(theta)[np.ix_(free, free)]
        try:
            step = -np.linalg.solve(H, g[free])
        except np.linalg.LinAlgError:
            break
        new = theta.copy()
        new[free] = np.clip(theta[free] + step, lb[free], ub[free])
        if lik.value_grad(new)[0] < ll - 1e-10 * max(1.0, abs(ll)):
            break  # not an ascent step: keep the optimiser's solution
        theta = new
    ll, g = lik.value_grad(theta)
    free = ~(((theta <= lb) & (g < 0)) | ((theta >= ub) & (g > 0)))
    if np.any(np.abs(g[free]) > 1e-5 * max(1.0, k)):
        raise engine.ConvergenceError(f"{who}: the likelihood maximisation did not converge "
                                    f"(gradient {np.abs(g[free]).max():.2g})")
    cov = np.full((theta.size, theta.size), np.nan)
    H = -lik.hessian(theta)
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(H[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        pass
    ses = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    beta = sgn * theta[:p]
    bse = ses[:p]
    tau2 = float(theta[p]) if random else 0.0
    se_tau2 = float(ses[p]) if random else float("nan")
    delta = np.r_[1.0, theta[p + int(random):]]
    se_delta = np.r_[np.nan, ses[p + int(random):]]
    crit = stats.norm.ppf(0.5 + res.level / 2)
    z = beta / bse
    LRT = max(0.0, 2 * (ll - ll0))
    note = _low_power_note(k, "the selection model")
    if np.any(lik.n < 4):
        few = (note + " " if note else "") + (
            f"Some p-value intervals hold fewer than 4 effects ({lik.n.tolist()}): their "
            f"selection weights are poorly estimated.")
        note = few
    return SelectionModelResult(
        estimate=float(beta[0]), se=float(bse[0]), zval=float(z[0]),
        pval=float(2 * stats.norm.sf(abs(z[0]))), ci_lb=float(beta[0] - crit * bse[0]),
        ci_ub=float(beta[0] + crit * bse[0]), coef=beta, coef_se=bse, tau2=tau2,
        se_tau2=se_tau2, delta=delta, se_delta=se_delta, steps=tuple(float(x) for x in a),
        k_per_interval=lik.n.copy(), LRT=LRT, LRT_df=int(a.size - 1),
        LRT_p=float(stats.chi2.sf(LRT, a.size - 1)), logLik=ll, logLik_unadjusted=ll0, k=k,
        alternative=alternative, measure=res.measure, note=note,
    )


# ---------------------------------------------------------------------------------------------
# fail-safe N


@dataclass(frozen=True, repr=False)
class FailSafeNResult:
    """Fail-safe N: ``fsnum`` studies averaging null results would bring the combined result to
    ``alpha`` (Rosenthal; ``pval`` is the observed Stouffer p-value) or the average effect down
    to ``target`` (Orwin; ``meanes`` is the observed average)."""

    method: str
    fsnum: int
    alpha: float
    pval: float
    meanes: float
    target: float
    k: int

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame([{"method": self.method, "k": self.k, "fsnum": self.fsnum,
                              "alpha": self.alpha, "pval": self.pval, "meanes": self.meanes,
                              "target": self.target}])

    def __repr__(self) -> str:
        return f"<FailSafeNResult {self.method}: fail-safe N = {self.fsnum} (k = {self.k})>"

    def _repr_html_(self) -> str:
        return _html_block("Fail-safe N", self.summary(), "")


def _ceil(x: float) -> int:
    # ceiling robust to floating-point noise around integers (16.000000000000004 -> 16)
    return int(math.ceil(round(x, 9)))


def fail_safe_n(yi: Sequence[float], vi: Sequence[float], method: str = "rosenthal",
                target: float | None = None, alpha: float = 0.05,
                weighted: bool = False) -> FailSafeNResult:
    """Fail-safe N, as metafor's ``fsn(yi, vi, type=, target=, alpha=)``.

    ``method="rosenthal"``: Rosenthal (1979), Psychol Bull 86:638-641,
    doi:10.1037/0033-2909.86.3.638. With z_i = yi / sqrt(vi) and Stouffer's combined
    Z = sum(z_i) / sqrt(k) (one-sided p = 1 - Phi(Z)), N = (sum(z_i) / z_(1-alpha))^2 - k
    rounded up, 0 if p >= alpha.

    ``method="orwin"``: Orwin (1983), J Educ Stat 8:157-159, doi:10.3102/10769986008002157.
    N = k (mean - target) / target rounded up, with the unweighted mean of yi (or the
    inverse-variance weighted mean if ``weighted``); ``target`` defaults to mean / 2 and takes
    the sign of the mean; 0 if the mean does not exceed the target in absolute value.
    """
    who = "fail_safe_n"
    y, v = check_yi_vi(yi, vi, who, min_k=1)
    k = y.size
    if not 0 < alpha < 1:
        raise ValueError(f"{who}: alpha must lie in (0, 1), got {alpha}")
    m = method.lower()
    if m == "rosenthal":
        zsum = float((y / np.sqrt(v)).sum())
        pval = float(stats.norm.sf(zsum / np.sqrt(k)))
        n = 0 if pval >= alpha else max(0, _ceil((zsum / stats.norm.isf(alpha)) ** 2 - k))
        return FailSafeNResult("Rosenthal", n, alpha, pval, float("nan"), float("nan"), k)
    if m == "orwin":
        w = 1.0 / v if weighted else np.ones(k)
        meanes = float((w * y).sum() / w.sum())
        tgt = meanes / 2 if target is None else float(target)
        if tgt == 0:
            raise ValueError(f"{who}: Orwin's target must not be 0")
        if np.sign(tgt) != np.sign(meanes):
            tgt = -tgt
        n = 0 if abs(meanes) <= abs(tgt) else max(0, _ceil(k * (meanes - tgt) / tgt))
        return FailSafeNResult("Orwin", n, float("nan"), float("nan"), meanes, tgt, k)
    raise ValueError(f"{who}: method must be 'rosenthal' or 'orwin', got {method!r}")

