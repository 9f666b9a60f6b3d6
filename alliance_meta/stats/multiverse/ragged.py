"""Random-effects fits without moderators of many data sets of different sizes at once.

:mod:`alliance_meta.stats.engine` batches fits of one size k; the multiverse's trim-and-fill
rounds fit subsets of every size. Here the data sets are stacked into one array and every sum is
a segment sum (``np.add.reduceat``), with the engine's algorithms applied elementwise: DL
(DerSimonian & Laird 1986), SJ (Sidik & Jonkman 2005), PM (Paule & Mandel 1982; the engine's
safeguarded Newton on the generalised Q equation) and REML/ML (the engine's Fisher scoring with
Newton steps near the optimum), with the engine's tolerances, so the estimates equal the engine's
to its convergence tolerance. Other estimators, and any data set an iteration leaves
unconverged, are fitted by the engine one at a time.
"""

from __future__ import annotations

import numpy as np

from .. import engine


class Stack:
    """Data sets (y_b, v_b) stacked; ``seg`` is the data set of each row."""

    def __init__(self, ys: list[np.ndarray], vs: list[np.ndarray]):
        self.k = np.array([y.size for y in ys])
        self.starts = np.r_[0, np.cumsum(self.k)[:-1]]
        self.y = np.concatenate(ys)
        self.v = np.concatenate(vs)
        self.seg = np.repeat(np.arange(self.k.size), self.k)

    def S(self, a: np.ndarray) -> np.ndarray:
        return np.add.reduceat(a, self.starts)

    def median_v(self) -> np.ndarray:
        """The engine's tolerance scale: the median of each data set's v."""
        o = np.lexsort((self.v, self.seg))
        vs = self.v[o]
        lo = self.starts + (self.k - 1) // 2
        hi = self.starts + self.k // 2
        return 0.5 * (vs[lo] + vs[hi])

    def wls(self, tau2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Weighted mean, its variance 1 / sum(w) and Q = sum w (y - mean)^2 at tau2."""
        w = 1.0 / (self.v + tau2[self.seg])
        sw = self.S(w)
        mu = self.S(w * self.y) / sw
        e = self.y - mu[self.seg]
        return mu, 1.0 / sw, self.S(e * (w * e))


def _dl(st: Stack) -> np.ndarray:
    w = 1.0 / st.v
    sw = st.S(w)
    mu = st.S(w * st.y) / sw
    e = st.y - mu[st.seg]
    Q = st.S(e * (w * e))
    trP = sw - st.S(w**2) / sw
    return np.maximum(0.0, (Q - (st.k - 1)) / trP)


def _sj(st: Stack) -> np.ndarray:
    ybar = st.S(st.y) / st.k
    tau0 = st.S((st.y - ybar[st.seg]) ** 2) / st.k
    return tau0 * st.wls(tau0)[2] / (st.k - 1)


def _pm(st: Stack, tol: float = engine.TOL, maxiter: int = engine.MAXITER) -> np.ndarray:
    target = (st.k - 1).astype(float)
    B = st.k.size
    lo = np.zeros(B)
    active = st.wls(lo)[2] > target
    out = np.zeros(B)
    if not active.any():
        return out
    ybar = st.S(st.y) / st.k
    var_y = st.S((st.y - ybar[st.seg]) ** 2) / st.k
    hi = np.where(active, np.maximum(1.0, 10 * var_y), 0.0)
    for _ in range(200):
        grow = active & (st.wls(hi)[2] > target)
        if not grow.any():
            break
        hi = np.where(grow, hi * 10.0, hi)
    else:
        raise engine.ConvergenceError("Q-equation: no upper bracket found for tau2")
    vscale = st.median_v()
    tau = lo.copy()
    for _ in range(maxiter):
        w = 1.0 / (st.v + tau[st.seg])
        sw = st.S(w)
        e = st.y - (st.S(w * st.y) / sw)[st.seg]
        Py = w * e
        g = st.S(e * Py) - target
        lo = np.where(g > 0, tau, lo)
        hi = np.where(g <= 0, tau, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = tau + g / st.S(Py * Py)
        bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(active, np.where(bad, 0.5 * (lo + hi), step), 0.0)
        if np.all(np.abs(new - tau) < tol * np.maximum(new, vscale)):
            return new
        tau = new
    raise engine.ConvergenceError("Q-equation for tau2 did not converge")


def _scoring(st: Stack, reml: bool, tol: float = engine.TOL,
             maxiter: int = engine.MAXITER) -> np.ndarray:
    tau2 = _dl(st)
    vscale = st.median_v()
    newton = np.zeros(tau2.shape, dtype=bool)
    lo, hi = np.zeros_like(tau2), np.full_like(tau2, np.inf)
    prev = np.zeros_like(tau2)
    S, seg = st.S, st.seg
    for _ in range(maxiter):
        w = 1.0 / (st.v + tau2[seg])
        sw = S(w)
        mu = S(w * st.y) / sw
        Py = w * (st.y - mu[seg])
        w2 = w * w
        sw2 = S(w2)
        yPPy = S(Py * Py)
        if reml:
            trP = sw - sw2 / sw
            trPP = sw2 - 2.0 * S(w2 * w) / sw + (sw2 / sw) ** 2
        else:
            trP, trPP = sw, sw2
        score = 0.5 * (yPPy - trP)
        fisher = 0.5 * trPP
        if newton.any():
            PPy = w * Py - w * (S(w * Py) / sw)[seg] if reml else w * Py
            obs = S(Py * PPy) - 0.5 * trPP
            info = np.where(newton & (obs > 0), obs, fisher)
        else:
            info = fisher
        new = engine._bracketed_step(tau2, score, info, lo, hi, prev)
        delta = np.abs(new - tau2)
        scale = np.maximum(new, vscale)
        newton = delta < 1e-3 * scale
        tau2 = new
        if np.all(delta < tol * scale):
            return tau2
    raise engine.ConvergenceError("Fisher scoring did not converge")


def tau2(st: Stack, method: str) -> tuple[np.ndarray, list[Exception | None]]:
    """tau^2 of every data set by ``method``, and per data set the error that stopped its fit
    (None where it was fitted)."""
    B = st.k.size
    ok: list[Exception | None] = [None] * B
    try:
        if method == "FE":
            return np.zeros(B), ok
        if method == "DL":
            return _dl(st), ok
        if method == "SJ":
            return _sj(st), ok
        if method == "PM":
            return _pm(st), ok
        if method in ("REML", "ML"):
            return _scoring(st, method == "REML"), ok
    except Exception:  # noqa: BLE001 - one at a time below: only the failing sets are lost
        pass
    out, errs = np.full(B, np.nan), list(ok)
    for b in range(B):
        sl = slice(st.starts[b], st.starts[b] + st.k[b])
        try:
            out[b] = engine.tau2_estimate(st.y[sl][None], st.v[sl][None],
                                          np.ones((1, st.k[b], 1)), method)[0]
        except Exception as e:  # noqa: BLE001 - the caller records the reason
            errs[b] = e
    return out, errs
