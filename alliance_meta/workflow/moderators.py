"""Moderator analyses in the run's headline model (notebook 03): one omnibus test per moderator
in the same dependence handling as the headline, a permutation test, pooled estimates per level
and the "k < 3 per level: not interpreted" flag.

The omnibus test of a moderator follows the headline's ``dependence``:

- three-level: the three-level meta-regression (``am.three_level(..., mods=, formula=)``) and
  its QM (an F under the t-test; Konstantopoulos 2011, doi:10.1002/jrsm.35);
- robust: the random-effects meta-regression with CR2 standard errors, samples as clusters,
  and the HTZ Wald test (``am.robust(reg, sample).wald_test(...)``; Tipton & Pustejovsky 2015,
  J Educ Behav Stat 40:604-634, doi:10.3102/1076998615606099);
- aggregate: a Knapp-Hartung meta-regression of composites formed per sample and moderator
  level (``am.aggregate``; a sample whose effects differ in the moderator gives one composite
  per level).

The permutation test (``am.permutation_test``; Viechtbauer et al. 2015,
doi:10.1037/met0000023) permutes those composites, so that a sample's effects move together
whatever the headline's dependence handling. Every number comes from the stats floor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..stats.escalc import aggregate
from ..stats.permutation import permutation_test
from ..stats.rma import meta_regression
from ..stats.rma_mv import three_level
from ..stats.robust import robust
from .report import MIN_PER_LEVEL, moderator_sentence
from .workbench import Attempt, HeadlineModel, _tl_options, attempt, headline_model

__all__ = ["MODERATORS", "ModeratorResult", "NotPooled", "moderator_analysis", "centre",
           "tests_table", "levels_table", "orchard", "sentences"]

#: The categorical moderators of notebook 03 and what each distinguishes.
MODERATORS = {
    "r_kind": "partial vs zero-order correlation",
    "alliance_rater": "who rated the alliance",
    "outcome_rater": "who rated the outcome",
    "alliance_timing": "when the alliance was measured",
    "modality": "treatment approach",
    "format": "individual, group, couple or family",
    "delivery": "face-to-face, internet, app, video",
    "design": "study design",
    "publication_type": "publication type",
}


@dataclass(frozen=True)
class NotPooled:
    """Stands in for a level whose headline model could not be fitted, so that its effects
    still appear in an orchard plot without a pooled estimate (NaN draws nothing)."""

    reason: str
    estimate: float = float("nan")
    ci_lb: float = float("nan")
    ci_ub: float = float("nan")
    level: float = 0.95
    measure: str = "ZCOR"


@dataclass(frozen=True, repr=False)
class ModeratorResult:
    """One moderator in the headline model: ``omnibus`` (the fitted test), ``permutation``,
    ``levels`` (one row per level, or per coefficient for a continuous moderator) and
    ``fits`` (the headline model per level, for the orchard plot)."""

    moderator: str
    kind: str
    model: str
    omnibus: Attempt
    permutation: Attempt
    levels: pd.DataFrame
    fits: dict = field(default_factory=dict)
    note: str = ""
    data: pd.DataFrame | None = field(default=None, repr=False)

    def test_row(self) -> dict[str, Any]:
        """The omnibus test as one tidy row (statistic, df, p, permutation p, flags)."""
        row: dict[str, Any] = {"moderator": self.moderator, "kind": self.kind,
                               "levels": len(self.levels) if self.kind == "categorical" else np.nan,
                               "model": self.model}
        if self.kind == "categorical":
            few = self.levels.loc[~self.levels["interpret"], "level"].tolist()
            row["not_interpreted"] = ", ".join(map(str, few))
        o = self.omnibus.result
        if o is None:
            row["note"] = f"not testable: {self.omnibus.reason}"
        elif hasattr(o, "df_denom"):  # HTZ Wald test
            row.update(test="HTZ Wald F", stat=_f(o.F), df1=_f(o.df_num), df2=_f(o.df_denom),
                       pval=_f(o.pval))
        else:
            t = str(getattr(o, "test", "z"))
            df1, df2 = _qm_df(o)
            row.update(test="F" if t != "z" else "QM (chi-square)", stat=float(o.QM), df1=df1,
                       df2=df2, pval=float(o.QM_p))
            for a in ("R2", "pseudo_R2", "I2_between", "I2_within", "I2"):
                if hasattr(o, a):
                    row[a] = _f(getattr(o, a))
        p = self.permutation.result
        row["pval_perm"] = _f(p.QM_p) if p is not None else np.nan
        if p is None and self.permutation.reason:
            row["note_perm"] = self.permutation.reason
        if self.note:
            row["note"] = (row.get("note", "") + " " + self.note).strip()
        return row

    def for_report(self):
        """(omnibus, permutation) as :func:`report.moderator_sentence` reads them."""
        return (self.omnibus, self.permutation)

    def __repr__(self) -> str:
        r = self.test_row()
        if "stat" not in r:
            return f"{self.moderator}: {r.get('note', '')}"
        return (f"{self.moderator}: {r['test']}({r['df1']:.3g}, {r['df2']:.3g}) = {r['stat']:.3f}, "
                f"p = {r['pval']:.3g}; permutation p = {r['pval_perm']:.3g} [{self.model}]")


def _f(x) -> float:
    a = np.ravel(np.asarray(x, dtype=float))
    return float(a[0]) if a.size else float("nan")


def _qm_df(o) -> tuple[float, float]:
    """(numerator, denominator) df of a QM; the denominator is inf for a chi-square test."""
    if hasattr(o, "QM_df"):
        d = np.ravel(np.asarray(o.QM_df, dtype=float))
        return float(d[0]), (float(d[1]) if d.size > 1 else float("inf"))
    m = float(o.p - 1) if getattr(o, "intercept", True) else float(o.p)
    if str(getattr(o, "test", "z")) == "z":
        return m, float("inf")
    return m, _f(getattr(o, "dfs", o.k - o.p))


def centre(df: pd.DataFrame, column: str) -> tuple[pd.Series, float]:
    """The column minus its mean over the effects, and that mean (printed by the notebook)."""
    x = pd.to_numeric(df[column], errors="raise").astype(float)
    c = float(x.mean())
    return x - c, c


def _composite_regression(df: pd.DataFrame, column: str, formula: str, method: str,
                          rho: float):
    """Meta-regression of composites per sample and moderator value (Knapp-Hartung)."""
    key = df["sample_id"].astype(str) + "\x1f" + df[column].astype(str)
    ag = aggregate(df["yi"], df["vi"], key, rho=rho)
    first = df.assign(_key=key).drop_duplicates("_key").set_index("_key")
    mods = first.loc[ag["cluster"], [column]].reset_index(drop=True)
    return meta_regression(ag["yi"], ag["vi"], mods=mods, formula=formula, method=method,
                           test="knha")


def _single_sample_levels(df: pd.DataFrame, column: str) -> list[str]:
    if not isinstance(df[column].dtype, pd.CategoricalDtype) and pd.api.types.is_numeric_dtype(
            df[column]):
        return []
    n = df.groupby(column)["sample_id"].nunique()
    return [str(x) for x in n[n < 2].index]


def _omnibus(hm: HeadlineModel, df: pd.DataFrame, column: str, formula: str) -> Attempt:
    y, v, s = df["yi"], df["vi"], df["sample_id"]
    if hm.dependence == "three-level":
        method = hm.method if hm.method in ("REML", "ML") else "REML"
        return attempt("three-level meta-regression", three_level, y, v, s, mods=df[[column]],
                       formula=formula, method=method, level=hm.level, **_tl_options("t", "contain"))
    if hm.dependence == "robust":
        reg = attempt("meta-regression", meta_regression, y, v, mods=df[[column]],
                      formula=formula, method=hm.method, test="z", level=hm.level)
        if not reg.ok:
            return reg
        rb = attempt("CR2", robust, reg.result, s)
        if not rb.ok:
            return rb
        if not hasattr(rb.result, "wald_test"):
            return Attempt("HTZ", None, "the stats floor of this version has no HTZ Wald test")
        one = _single_sample_levels(df, column)
        if one:  # the CR2 covariance of such a contrast rests on one cluster: not estimable
            return Attempt("HTZ", None, "CR2 needs each level in two or more samples; "
                           f"{', '.join(one)} observed in one sample only")
        w = attempt("HTZ Wald test", rb.result.wald_test, list(range(1, reg.result.p)))
        if w.ok and not (np.isfinite(w.result.F) and w.result.F >= 0):
            return Attempt("HTZ", None, f"the HTZ test is not defined here (F = {w.result.F:g})")
        return w
    return attempt("composite meta-regression", _composite_regression, df, column, formula,
                   hm.method, hm.rho)


def _level_fits(hm: HeadlineModel, df: pd.DataFrame, column: str):
    rows, fits = [], {}
    for lev, g in df.groupby(column, sort=True):
        a = attempt(str(lev), headline_model, g, hm.dependence, hm.method, hm.rho, hm.level)
        row = {"level": str(lev), "k": len(g), "n_samples": g["sample_id"].nunique(),
               "n_studies": g["study_id"].nunique(), "interpret": len(g) >= MIN_PER_LEVEL}
        if a.ok:
            h = a.result.headline(variance_cis=False)  # the row shows no variance CI
            row.update(r=h.r, r_ci_lb=h.r_ci_lb, r_ci_ub=h.r_ci_ub, r_pi_lb=h.r_pi_lb,
                       r_pi_ub=h.r_pi_ub, model=a.result.label, note=a.result.note)
            fits[str(lev)] = a.result.result
        else:
            row["note"] = f"not pooled: {a.reason}"
            fits[str(lev)] = NotPooled(a.reason, level=hm.level)
        rows.append(row)
    cols = ["level", "k", "n_samples", "n_studies", "interpret", "r", "r_ci_lb", "r_ci_ub",
            "r_pi_lb", "r_pi_ub", "model", "note"]
    return pd.DataFrame(rows).reindex(columns=cols), fits


def moderator_analysis(hm: HeadlineModel, moderator: str, continuous: bool = False,
                       n_perm: int = 1000, seed: int = 0) -> ModeratorResult:
    """Test ``moderator`` in the headline model ``hm`` (see the module docstring).

    Categorical: ``~ C(moderator)`` (the first level in sort order is the reference), the
    headline model pooled per level, levels with fewer than 3 effects flagged
    ``interpret = False``. Continuous: the column centred at its mean (``centre``) as one
    slope. Rows without a value for the moderator are left out (and counted in ``note``).
    """
    df = hm.effects
    miss = df[moderator].isna() | (df[moderator].astype(str).str.strip() == "")
    note = f"{int(miss.sum())} effects without a value left out." if miss.any() else ""
    df = df[~miss].reset_index(drop=True)
    if continuous:
        xc, c = centre(df, moderator)
        col = f"{moderator}_c"
        df = df.assign(**{col: xc})
        formula = f"~ {col}"
        note = (note + f" {moderator} centred at its mean over the effects, {c:.2f}.").strip()
    else:
        col, formula = moderator, f"~ C({moderator})"
    if not continuous and df[col].nunique() < 2:
        one = Attempt(moderator, None, f"one level only ({df[col].iloc[0]!s})" if len(df)
                      else "no values")
        levels, fits = _level_fits(hm, df, col)
        return ModeratorResult(moderator, "categorical", hm.label, one, one, levels, fits, note,
                               df)
    omni = _omnibus(hm, df, col, formula)
    perm_reg = attempt("composites", _composite_regression, df, col, formula, hm.method, hm.rho)
    perm = (attempt("permutation", permutation_test, perm_reg.result, n_perm=n_perm, seed=seed)
            if perm_reg.ok else perm_reg)
    if continuous:
        o = omni.result
        levels = (o.summary() if o is not None and hasattr(o, "summary") else pd.DataFrame())
        return ModeratorResult(moderator, "continuous", hm.label, omni, perm, levels, {}, note, df)
    levels, fits = _level_fits(hm, df, col)
    return ModeratorResult(moderator, "categorical", hm.label, omni, perm, levels, fits, note, df)


def tests_table(results: dict[str, ModeratorResult]) -> pd.DataFrame:
    """One row per moderator: its omnibus test in the headline model and the permutation p."""
    cols = ["moderator", "kind", "levels", "test", "stat", "df1", "df2", "pval", "pval_perm",
            "not_interpreted", "R2", "pseudo_R2", "I2_between", "I2_within", "I2", "model",
            "note", "note_perm"]
    t = pd.DataFrame([r.test_row() for r in results.values()])
    return t.reindex(columns=[c for c in cols if c in t.columns])


def levels_table(results: dict[str, ModeratorResult]) -> pd.DataFrame:
    """One row per level of every categorical moderator (the headline model per level)."""
    parts = [r.levels.assign(moderator=name) for name, r in results.items()
             if r.kind == "categorical"]
    t = pd.concat(parts, ignore_index=True)
    return t[["moderator", *[c for c in t.columns if c != "moderator"]]]


def orchard(hm: HeadlineModel, results: dict[str, ModeratorResult], title: str | None = None):
    """One orchard plot of every categorical moderator: rows "moderator: level", each level's
    effects as points and its headline-model estimate with CI (and PI where the model has
    one); levels with k < 3 are flagged "not interpreted"."""
    from ..viz.orchard import orchard_plot

    ys, vs, gs, fits = [], [], [], {}
    for name, r in results.items():
        if r.kind != "categorical":
            continue
        e = hm.effects[~(hm.effects[name].isna()
                         | (hm.effects[name].astype(str).str.strip() == ""))]
        ys.append(e["yi"].to_numpy(float))
        vs.append(e["vi"].to_numpy(float))
        gs += [f"{name}: {x}" for x in e[name].astype(str)]
        fits.update({f"{name}: {lev}": f for lev, f in r.fits.items()})
    return orchard_plot(np.concatenate(ys), np.concatenate(vs), gs, fits,
                        min_k_interpret=MIN_PER_LEVEL, title=title,
                        model_label=f"per level, {re.sub(r' [(]df = [^)]*[)]', '', hm.label)}; "
                        "a level without an estimate cannot be fitted (e.g. a single sample)")


def sentences(results: dict[str, ModeratorResult]) -> list[str]:
    """One APA sentence per moderator (:func:`report.moderator_sentence`); small-level cautions
    for categorical moderators."""
    return [moderator_sentence(m, r.for_report(), r.data if r.kind == "categorical" else None)
            for m, r in results.items()]
