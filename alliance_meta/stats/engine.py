"""Batched numerical engine: weighted least squares and tau^2 estimators (numpy only).

Every function works on a batch of B problems at once: ``y`` and ``v`` have shape (B, k) and the
design ``X`` has shape (B, k, p), or (1, k, p) for one design shared by all B fits. One fit is a
batch of one. Vectorising across fits (rather than
looping in Python) is what makes permutation tests, leave-one-out and multiverse runs fast.

Convergence: iterative estimators stop when the change in tau^2 is below ``tol`` (default
1e-12, tighter than metafor's 1e-5) or after ``maxiter`` steps, and raise ``ConvergenceError``
if any fit in the batch has not converged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

TAU2_METHODS = ("DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM")
TOL = 1e-12
MAXITER = 10_000


def tol_scale(v: np.ndarray) -> np.ndarray:
    """The scale that convergence tolerances on tau2 are relative to: tau2 itself, but not below
    the median sampling variance (so results do not depend on the units of y)."""
    return np.median(v, axis=1)


class ConvergenceError(RuntimeError):
    """An iterative estimator did not converge."""


@dataclass
class WLS:
    """Weighted least squares pieces at given tau^2, for a batch of B fits."""

    w: np.ndarray  # (B, k) weights 1/(v + tau2)
    beta: np.ndarray  # (B, p)
    Ainv: np.ndarray  # (B, p, p) (X'WX)^-1
    e: np.ndarray  # (B, k) residuals y - X beta
    Py: np.ndarray  # (B, k) P y = W e

    @property
    def Q(self) -> np.ndarray:
        """Generalised Q statistic y'Py (B,)."""
        return np.einsum("bk,bk->b", self.e, self.Py)


# A design of shape (1, k, p) with a batch of B > 1 rows of y is SHARED by every fit (a
# permutation test permutes (y, v) against one X): X'WX is then one matrix product of the (B, k)
# weights with the k rows' outer products (k x p^2, cheap to form), not B separate products.


def _shared(X: np.ndarray, a: np.ndarray) -> bool:
    return X.shape[0] == 1 and a.shape[0] > 1


def _xtwx(X: np.ndarray, w: np.ndarray) -> np.ndarray:
    if _shared(X, w):
        p = X.shape[2]
        Z = np.einsum("kp,kq->kpq", X[0], X[0]).reshape(X.shape[1], p * p)
        return (w @ Z).reshape(w.shape[0], p, p)
    return np.matmul(X.transpose(0, 2, 1) * w[:, None, :], X)


def _xt(X: np.ndarray, a: np.ndarray) -> np.ndarray:
    """X' a for each fit: (B, p)."""
    return a @ X[0] if _shared(X, a) else np.einsum("bki,bk->bi", X, a)


def _xb(X: np.ndarray, b: np.ndarray) -> np.ndarray:
    """X b for each fit: (B, k)."""
    return b @ X[0].T if _shared(X, b) else np.einsum("bki,bi->bk", X, b)


def wls(y: np.ndarray, v: np.ndarray, X: np.ndarray, tau2: np.ndarray) -> WLS:
    w = 1.0 / (v + tau2[:, None])
    if X.shape[2] == 1:  # one column (the common case): plain sums, no matrix algebra
        x = X[:, :, 0]
        wx = w * x
        A = (wx * x).sum(1)
        beta = ((wx * y).sum(1) / A)[:, None]
        e = y - x * beta
        return WLS(w=w, beta=beta, Ainv=(1.0 / A)[:, None, None], e=e, Py=w * e)
    Ainv = np.linalg.inv(_xtwx(X, w))
    beta = np.einsum("bij,bj->bi", Ainv, _xt(X, w * y))
    e = y - _xb(X, beta)
    return WLS(w=w, beta=beta, Ainv=Ainv, e=e, Py=w * e)


def _trace_terms(X: np.ndarray, f: WLS, order: int) -> tuple[np.ndarray, ...]:
    """tr(P) and, for order 2, tr(PP), using only p x p matrices."""
    w = f.w
    if X.shape[2] == 1:
        x2 = X[:, :, 0] ** 2
        a = f.Ainv[:, 0, 0]
        m2 = a * (w**2 * x2).sum(1)
        trP = w.sum(1) - m2
        if order == 1:
            return (trP,)
        m3 = a * (w**3 * x2).sum(1)
        return trP, (w**2).sum(1) - 2.0 * m3 + m2**2
    M2 = np.matmul(f.Ainv, _xtwx(X, w**2))  # Ainv X'W^2X
    trP = w.sum(1) - np.trace(M2, axis1=1, axis2=2)
    if order == 1:
        return (trP,)
    M3 = np.matmul(f.Ainv, _xtwx(X, w**3))
    trPP = (
        (w**2).sum(1)
        - 2.0 * np.trace(M3, axis1=1, axis2=2)
        + np.einsum("bij,bji->b", M2, M2)
    )
    return trP, trPP


def _dl(y, v, X):
    k, p = X.shape[1], X.shape[2]
    f = wls(y, v, X, np.zeros(y.shape[0]))
    (trP,) = _trace_terms(X, f, 1)
    return np.maximum(0.0, (f.Q - (k - p)) / trP)


def _he(y, v, X):
    k, p = X.shape[1], X.shape[2]
    ones = np.ones_like(y)
    Ainv = np.linalg.inv(_xtwx(X, ones))
    beta = np.einsum("bij,bj->bi", Ainv, _xt(X, y))
    e = y - _xb(X, beta)
    rss = (e**2).sum(1)
    trPV = v.sum(1) - np.trace(np.matmul(Ainv, _xtwx(X, v)), axis1=1, axis2=2)
    return np.maximum(0.0, (rss - trPV) / (k - p))


def _hs(y, v, X):
    k = X.shape[1]
    f = wls(y, v, X, np.zeros(y.shape[0]))
    return np.maximum(0.0, (f.Q - k) / f.w.sum(1))


def _sj(y, v, X):
    k, p = X.shape[1], X.shape[2]
    tau0 = ((y - y.mean(1, keepdims=True)) ** 2).mean(1)
    f = wls(y, v, X, tau0)
    return tau0 * f.Q / (k - p)


def _bracketed_step(tau2, score, info, lo, hi, prev):
    """A scoring step kept inside the bracket that the score's sign has established.

    Plain Fisher scoring can ping-pong between two points (e.g. y = 0, 1.5, 1.5, ...); metafor
    damps it by step halving. Here a step that leaves the bracket [lo, hi], or that overshoots
    again (the score changed sign on the last step) and jumps past the bracket's midpoint, is
    replaced by bisection. ``lo``, ``hi`` and ``prev`` (the last score) are updated in place.
    """
    np.copyto(lo, tau2, where=score > 0)
    np.copyto(hi, tau2, where=score < 0)
    step = tau2 + score / info
    finite = np.isfinite(hi)
    mid = np.where(finite, 0.5 * (lo + hi), 2.0 * lo + 1e-8)
    inside = (step > lo) & (step < hi)
    overshoot = finite & (np.sign(score) * np.sign(prev) < 0) & (
        np.abs(step - tau2) > np.abs(mid - tau2)
    )
    at_zero = (score < 0) & (lo <= 0) & (step <= 0)
    new = np.where(inside & ~overshoot, step, np.where(at_zero, 0.0, mid))
    np.copyto(prev, score)
    return np.maximum(new, 0.0)


def _scoring_intercept(y, v, start, reml: bool, tol: float, maxiter: int):
    """REML/ML for intercept-only models with plain sums (the hot path of a single fit).

    Fisher scoring while far from the optimum, Newton steps (observed information) near it:
    Fisher scoring alone converges only linearly, Newton quadratically.
    """
    tau2 = start.copy()
    vscale = tol_scale(v)
    newton = np.zeros(tau2.shape, dtype=bool)
    lo, hi = np.zeros_like(tau2), np.full_like(tau2, np.inf)
    prev = np.zeros_like(tau2)
    for _ in range(maxiter):
        w = 1.0 / (v + tau2[:, None])
        sw = w.sum(1)
        mu = (w * y).sum(1) / sw
        Py = w * (y - mu[:, None])
        w2 = w * w
        sw2 = w2.sum(1)
        yPPy = (Py * Py).sum(1)
        if reml:
            trP = sw - sw2 / sw
            trPP = sw2 - 2.0 * (w2 * w).sum(1) / sw + (sw2 / sw) ** 2
        else:
            trP, trPP = sw, sw2
        score = 0.5 * (yPPy - trP)
        fisher = 0.5 * trPP
        if newton.any():
            # observed information: y'PPPy - tr(PP)/2, with PPy = P(Py)
            if reml:
                PPy = w * Py - w * ((w * Py).sum(1) / sw)[:, None]
            else:
                PPy = w * Py
            obs = (Py * PPy).sum(1) - 0.5 * trPP
            info = np.where(newton & (obs > 0), obs, fisher)
        else:
            info = fisher
        new = _bracketed_step(tau2, score, info, lo, hi, prev)
        delta = np.abs(new - tau2)
        scale = np.maximum(new, vscale)
        newton = delta < 1e-3 * scale
        tau2 = new
        if np.all(delta < tol * scale):
            return tau2
    raise ConvergenceError(
        f"{'REML' if reml else 'ML'} Fisher scoring did not converge in {maxiter} iterations"
    )


def _scoring_intercept_1d(y, v, start: float, reml: bool, tol: float, maxiter: int) -> float:
    """The same algorithm as :func:`_scoring_intercept` for one fit, with scalar bookkeeping
    (numpy's per-call overhead dominates at k of a few hundred)."""
    t = float(start)
    vscale = float(np.median(v))
    lo, hi, prev = 0.0, np.inf, 0.0
    newton = False
    dot = np.dot
    for _ in range(maxiter):
        w = 1.0 / (v + t)
        sw = w.sum()
        Py = w * (y - dot(w, y) / sw)
        w2 = w * w
        sw2 = w2.sum()
        yPPy = dot(Py, Py)
        if reml:
            trP = sw - sw2 / sw
            trPP = sw2 - 2.0 * dot(w2, w) / sw + (sw2 / sw) ** 2
        else:
            trP, trPP = sw, sw2
        score = 0.5 * (yPPy - trP)
        info = 0.5 * trPP
        if newton:
            wPy = w * Py
            obs = dot(Py, wPy) - (dot(w, Py) ** 2 / sw if reml else 0.0) - 0.5 * trPP
            if obs > 0:
                info = obs
        if score > 0:
            lo = t
        elif score < 0:
            hi = t
        step = t + score / info
        mid = 0.5 * (lo + hi) if hi < np.inf else 2.0 * lo + 1e-8
        overshoot = hi < np.inf and score * prev < 0 and abs(step - t) > abs(mid - t)
        if lo < step < hi and not overshoot:
            new = step
        elif score < 0 and lo <= 0 and step <= 0:
            new = 0.0
        else:
            new = mid
        new = max(new, 0.0)
        prev = score
        delta = abs(new - t)
        scale = max(new, vscale)
        newton = delta < 1e-3 * scale
        t = new
        if delta < tol * scale:
            return t
    raise ConvergenceError(
        f"{'REML' if reml else 'ML'} Fisher scoring did not converge in {maxiter} iterations"
    )


def _is_intercept_only(X: np.ndarray) -> bool:
    return X.shape[2] == 1 and bool(np.all(X == 1.0))


def _fisher_scoring(y, v, X, start, reml: bool, tol: float, maxiter: int):
    if _is_intercept_only(X):
        if y.shape[0] == 1:
            t = _scoring_intercept_1d(y[0], v[0], start[0], reml, tol, maxiter)
            return np.array([t])
        return _scoring_intercept(y, v, start, reml, tol, maxiter)
    # Fisher scoring far from the optimum, Newton steps (observed information) near it, as in
    # the intercept-only path: halves the iterations of a meta-regression (permutation tests)
    tau2 = start.copy()
    vscale = tol_scale(v)
    lo, hi = np.zeros_like(tau2), np.full_like(tau2, np.inf)
    prev = np.zeros_like(tau2)
    newton = np.zeros(tau2.shape, dtype=bool)
    for _ in range(maxiter):
        f = wls(y, v, X, tau2)
        Py2 = np.einsum("bk,bk->b", f.Py, f.Py)
        if reml:
            trP, trPP = _trace_terms(X, f, 2)
        else:
            trP, trPP = f.w.sum(1), np.einsum("bk,bk->b", f.w, f.w)
        score = 0.5 * (Py2 - trP)
        info = 0.5 * trPP
        if newton.any():
            # observed information y'PPPy - tr(PP)/2, with PPy = P(Py) (W(Py) for ML)
            u = f.w * f.Py
            if reml:
                u = u - f.w * _xb(X, np.einsum("bij,bj->bi", f.Ainv, _xt(X, u)))
            obs = np.einsum("bk,bk->b", f.Py, u) - 0.5 * trPP
            info = np.where(newton & (obs > 0), obs, info)
        new = _bracketed_step(tau2, score, info, lo, hi, prev)
        delta = np.abs(new - tau2)
        scale = np.maximum(new, vscale)
        newton = delta < 1e-3 * scale
        tau2 = new
        if np.all(delta < tol * scale):
            return tau2
    raise ConvergenceError(
        f"{'REML' if reml else 'ML'} Fisher scoring did not converge in {maxiter} iterations"
    )


def solve_Q(y, v, X, target, tol: float = TOL, maxiter: int = MAXITER) -> np.ndarray:
    """Solve the generalised Q equation y'P(tau2)y = target for tau2 >= 0 (batched).

    Q is strictly decreasing in tau2; where Q(0) <= target the root is 0. Safeguarded Newton
    with a bracket (falls back to bisection when a step leaves the bracket). Used for
    Paule-Mandel/EB and for Q-profile confidence intervals.
    """
    B = y.shape[0]
    target = np.broadcast_to(np.asarray(target, float), (B,)).copy()
    lo = np.zeros(B)
    f0 = wls(y, v, X, lo)
    out = np.zeros(B)
    active = f0.Q > target
    if not active.any():
        return out
    # grow an upper bracket where Q(hi) < target
    hi = np.where(active, np.maximum(1.0, 10 * np.var(y, axis=1)), 0.0)
    for _ in range(200):
        fh = wls(y, v, X, hi)
        grow = active & (fh.Q > target)
        if not grow.any():
            break
        hi = np.where(grow, hi * 10.0, hi)
    else:
        raise ConvergenceError("Q-equation: no upper bracket found for tau2")
    tau = lo.copy()
    vscale = tol_scale(v)  # once: a median per iteration cost more than the iteration
    for _ in range(maxiter):
        f = wls(y, v, X, tau)
        g = f.Q - target
        lo = np.where(g > 0, tau, lo)
        hi = np.where(g <= 0, tau, hi)
        deriv = np.einsum("bk,bk->b", f.Py, f.Py)  # -dQ/dtau2 = y'PPy = |Py|^2
        step = tau + g / deriv
        bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(bad, 0.5 * (lo + hi), step)
        new = np.where(active, new, 0.0)
        if np.all(np.abs(new - tau) < tol * np.maximum(new, vscale)):
            return new
        tau = new
    raise ConvergenceError(f"Q-equation for tau2 did not converge in {maxiter} iterations")


def tau2_estimate(
    y: np.ndarray,
    v: np.ndarray,
    X: np.ndarray,
    method: str,
    tol: float = TOL,
    maxiter: int = MAXITER,
) -> np.ndarray:
    """tau^2 for a batch of meta-regressions by one of :data:`TAU2_METHODS`."""
    if method == "DL":
        return _dl(y, v, X)
    if method == "HE":
        return _he(y, v, X)
    if method == "HS":
        return _hs(y, v, X)
    if method == "SJ":
        return _sj(y, v, X)
    if method in ("ML", "REML"):
        return _fisher_scoring(y, v, X, _dl(y, v, X), method == "REML", tol, maxiter)
    if method in ("PM", "EB"):
        k, p = X.shape[1], X.shape[2]
        return solve_Q(y, v, X, float(k - p), tol, maxiter)
    raise ValueError(f"unknown tau2 method {method!r}; use one of {TAU2_METHODS}")


def tau2_qprofile_ci(y, v, X, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Q-profile confidence interval for tau^2 (Viechtbauer 2007, Stat Med 26:37-52,
    doi:10.1002/sim.2514): the tau2 values where the generalised Q equals the chi-square
    quantiles with k - p df."""
    k, p = X.shape[1], X.shape[2]
    a = 1 - level
    # chi-square quantiles by scipy.special (what scipy.stats.chi2.ppf calls; no scipy.stats
    # import, half a second of every kernel's start-up)
    lb = solve_Q(y, v, X, special.chdtri(k - p, a / 2))
    ub = solve_Q(y, v, X, special.chdtri(k - p, 1 - a / 2))
    return lb, ub


def loglik(y, v, X, tau2, reml: bool) -> np.ndarray:
    """Log-likelihood (ML) or restricted log-likelihood (REML), with metafor's constants."""
    k, p = X.shape[1], X.shape[2]
    f = wls(y, v, X, tau2)
    ll = -0.5 * (k * np.log(2 * np.pi) + np.log(v + tau2[:, None]).sum(1) + f.Q)
    if reml:
        # Harville's restricted likelihood, with the + log|X'X|/2 term metafor includes
        A = _xtwx(X, f.w)
        ll = (
            ll
            + 0.5 * p * np.log(2 * np.pi)
            - 0.5 * np.linalg.slogdet(A)[1]
            + 0.5 * np.linalg.slogdet(_xtwx(X, np.ones_like(f.w)))[1]
        )
    return ll
