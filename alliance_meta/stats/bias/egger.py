"""Egger's regression test for funnel-plot asymmetry (metafor's ``regtest``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..rma import MetaRegressionResult, RandomEffectsResult, meta_regression
from ..rma_mv import ThreeLevelResult, three_level
from ..robust import robust
from ._common import _html_block, _low_power_note, _predictor, _r_cols

__all__ = ["EggerResult", "egger_test"]


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
