"""Fail-safe N: Rosenthal (1979) and Orwin (1983) (metafor's ``fsn``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from .. import inference
from ..rma import check_yi_vi
from ._common import _html_block

__all__ = ["FailSafeNResult", "fail_safe_n"]


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
    # metafor's rounding: up, unless within sqrt(machine eps) of an integer (floating-point
    # noise such as 16.000000000000004 -> 16)
    if abs(x - round(x)) >= math.sqrt(np.finfo(float).eps):
        return int(math.ceil(x))
    return int(round(x))


def fail_safe_n(yi: Sequence[float], vi: Sequence[float], method: str = "rosenthal",
                target: float | None = None, alpha: float = 0.05,
                weighted: bool = False) -> FailSafeNResult:
    """Fail-safe N, as metafor's ``fsn(yi, vi, type=, target=, alpha=)``.

    ``method="rosenthal"``: Rosenthal (1979), Psychol Bull 86:638-641,
    doi:10.1037/0033-2909.86.3.638. With z_i = yi / sqrt(vi) and Stouffer's combined
    Z = |sum(z_i)| / sqrt(k) (one-sided p = 1 - Phi(Z)), N = (sum(z_i) / z_(1-alpha))^2 - k
    rounded up, 0 if p >= alpha. The absolute value is metafor's (``fsn``, type "Rosenthal",
    Stouffer): the direction of the effects does not matter, so effects coded negative (or
    negated) give the same N as positive ones.

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
        zsum = abs(float((y / np.sqrt(v)).sum()))
        pval = inference.pvalue(zsum / np.sqrt(k), side="greater")
        n = 0 if pval >= alpha else max(0, _ceil((zsum / -special.ndtri(alpha)) ** 2 - k))
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
