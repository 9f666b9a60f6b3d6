"""Begg & Mazumdar's rank correlation test (metafor's ``ranktest``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..rma import MetaRegressionResult, RandomEffectsResult
from ..rma_mv import ThreeLevelResult
from ._common import _html_block, _low_power_note

__all__ = ["RankTestResult", "rank_test"]


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
    from scipy import stats  # here: scipy.stats costs half a second to import

    t = stats.kendalltau(ystar, v, method="exact" if exact else "asymptotic")
    return RankTestResult(tau=float(t.statistic), pval=float(t.pvalue), exact=exact, k=k,
                          note=_low_power_note(k, "the rank correlation test"))
