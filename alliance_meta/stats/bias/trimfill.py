"""Duval & Tweedie's trim-and-fill (metafor's ``trimfill``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import engine
from ..results import CoefResult
from ..rma import _fit_batch, random_effects
from ._common import _html_block, _low_power_note, _r_cols, _uni

__all__ = ["TrimFillResult", "trim_and_fill"]


@dataclass(frozen=True, repr=False, kw_only=True)
class TrimFillResult(CoefResult):
    """Trim-and-fill: ``k0`` studies imputed on ``side`` ("left" or "right") by ``estimator``.

    The coefficient table (one row: ``estimate``, ``se``, ``zval``/``tval``, ``pval``,
    ``ci_lb``, ``ci_ub``, ``dfs``) and ``tau2``, ``I2``, ``QE`` are those of the model refitted to
    the k + k0 observed and imputed effects; ``filled_yi`` and ``filled_vi`` are the imputed
    studies (for the funnel plot)."""

    k0: int
    side: str
    estimator: str
    tau2: float
    I2: float
    QE: float
    k: int
    filled_yi: np.ndarray = field(repr=False)
    filled_vi: np.ndarray = field(repr=False)
    method: str = "REML"
    note: str = ""

    def summary(self) -> pd.DataFrame:
        row = {"method": f"trim and fill ({self.estimator})", "k": self.k, "k0": self.k0,
               "side": self.side, "estimate": self.estimate, "se": self.se,
               self.stat_name: self.statistic,
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
    """The pooled estimate of (y, v) with estimator ``method``: tau^2 and the weighted mean
    only (the arithmetic of rma._fit_batch without its heterogeneity pieces)."""
    Y, V, X = y[None], v[None], np.ones((1, y.size, 1))
    t2 = np.zeros(1) if method == "FE" else engine.tau2_estimate(Y, V, X, method)
    return float(engine.wls(Y, V, X, t2).beta[0, 0])


def _rank_avg(a: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks (scipy.stats.rankdata's "average")."""
    n = a.size
    o = np.argsort(a, kind="mergesort")
    s = a[o]
    new = np.r_[True, s[1:] != s[:-1]]
    r = np.empty(n)
    if new.all():  # no ties (the common case)
        r[o] = np.arange(1.0, n + 1.0)
        return r
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], n]
    r[o] = (0.5 * (starts + 1 + ends))[np.cumsum(new) - 1]
    return r


def egger_side(y: np.ndarray, v: np.ndarray, method: str) -> str:
    """Where studies are assumed missing: from the sign of the slope of Egger's regression
    (sei as moderator, estimator ``method``); a positive slope puts them on the left."""
    k = y.size
    f = _fit_batch(y[None], v[None], np.column_stack([np.ones(k), np.sqrt(v)])[None], method,
                   "z")
    return "left" if f.beta[0, 1] >= 0 else "right"


def _k0_step(ys: np.ndarray, mu: float, estimator: str) -> int:
    """The next k0 from the deviations of all k effects (missing studies on the left) from
    the centre ``mu``: L0 or R0, rounded half to even, floored at 0."""
    k = ys.size
    d = ys - mu
    if estimator == "L0":
        T = _rank_avg(np.abs(d))[d > 0].sum()
        new = (4.0 * T - k * (k + 1)) / (2.0 * k - 1.0)
    else:
        s = np.sign(d)[np.argsort(-np.abs(d), kind="stable")]
        neg = np.flatnonzero(s <= 0)
        run = k if neg.size == 0 else int(neg[0])
        new = run - 1.0
    return max(0, int(np.round(new)))


def _trim(y0: np.ndarray, v0: np.ndarray, method: str, estimator: str, side: str,
          maxiter: int, who: str = "trim_and_fill", mu0: float | None = None
          ) -> tuple[int, np.ndarray, np.ndarray]:
    """The iteration of :func:`trim_and_fill` (see there) on effects (y0, v0) with missing
    studies on ``side``: returns k0 and the imputed effects and their variances. ``mu0``: the
    pooled estimate of all k effects with this estimator when the caller has it (the centre
    of the first round)."""
    k = y0.size
    sign = 1.0 if side == "left" else -1.0  # work with missing studies on the left
    y = sign * y0
    order = np.argsort(y, kind="stable")
    ys, vs = y[order], v0[order]
    k0 = 0
    for _ in range(maxiter):
        mu = (sign * mu0 if k0 == 0 and mu0 is not None
              else _center(ys[: k - k0], vs[: k - k0], method))
        new = _k0_step(ys, mu, estimator)
        if new == k0:
            break
        k0 = new
        if k0 >= k - 1:
            raise ValueError(f"{who}: the estimated number of missing studies ({k0}) leaves too "
                             f"few studies to estimate the centre; the method cannot run here")
    else:
        raise ValueError(f"{who}: k0 did not settle in {maxiter} iterations")
    return k0, sign * (2.0 * mu - ys[k - k0:]), vs[k - k0:].copy()


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
        side = egger_side(y0, v0, res.method)
    k0, fy, fv = _trim(y0, v0, res.method, estimator, side, maxiter, who)
    full = random_effects(np.r_[y0, fy], np.r_[v0, fv], method=res.method, test=res.test,
                          level=res.level, measure=res.measure) if k0 > 0 else res
    return TrimFillResult(
        beta=full.beta, se=full.se, statistic=full.statistic, pval=full.pval, ci_lb=full.ci_lb,
        ci_ub=full.ci_ub, vb=full.vb, dfs=full.dfs, coef_names=full.coef_names, test=full.test,
        level=full.level, measure=res.measure, k0=k0, side=side, estimator=estimator,
        tau2=full.tau2, I2=full.I2, QE=full.QE, k=k, filled_yi=fy, filled_vi=fv,
        method=res.method, note=_low_power_note(k, "trim and fill"),
    )
