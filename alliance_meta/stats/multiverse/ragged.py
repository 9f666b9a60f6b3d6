"""Random-effects fits (intercept only, or on one moderator [1, x]) of many data sets of
different sizes at once.

:mod:`alliance_meta.stats.engine` batches fits of one size k; a multiverse chunk's row sets,
their PET/PEESE regressions and trim-and-fill's rounds come in every size. Here the data sets are stacked into one array and every sum is
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


def _settle(old: np.ndarray, new: np.ndarray, done: np.ndarray, tol: float,
            vscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One iteration's values with the data sets that met the engine's criterion (a step below
    tol * max(tau2, median v)) held where they stopped, and the updated mask of those. Each
    data set so takes exactly the iterations it takes alone: its estimate does not depend on
    the other data sets of the stack (a chunk's composition, the Dask split)."""
    new = np.where(done, old, new)
    return new, done | (np.abs(new - old) < tol * np.maximum(new, vscale))


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
    done = np.zeros(B, dtype=bool)
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
        new, done = _settle(tau, new, done, tol, vscale)
        if done.all():
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
    done = np.zeros(tau2.shape, dtype=bool)
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
        raw = engine._bracketed_step(tau2, score, info, lo, hi, prev)
        newton = np.abs(raw - tau2) < 1e-3 * np.maximum(raw, vscale)
        tau2, done = _settle(tau2, raw, done, tol, vscale)
        if done.all():
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


# ---------------------------------------------------------------------------------------------
# meta-regressions on one moderator (the PET and PEESE designs [1, x]), p = 2


class Stack2(Stack):
    """Data sets (y_b, v_b, x_b) stacked, each with the design [1, x_b]."""

    def __init__(self, ys: list[np.ndarray], vs: list[np.ndarray], xs: list[np.ndarray]):
        super().__init__(ys, vs)
        self.x = np.concatenate(xs)

    def _A(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """X'WX per data set as its three distinct entries."""
        return self.S(w), self.S(w * self.x), self.S(w * self.x * self.x)

    def fit(self, tau2: np.ndarray) -> dict:
        """WLS at tau2: w, coefficients (B, 2), (X'WX)^-1 entries, residuals, Py, Q."""
        x, seg = self.x, self.seg
        w = 1.0 / (self.v + tau2[seg])
        a, b, c = self._A(w)
        det = a * c - b * b
        i00, i01, i11 = c / det, -b / det, a / det
        r0, r1 = self.S(w * self.y), self.S(w * x * self.y)
        b0, b1 = i00 * r0 + i01 * r1, i01 * r0 + i11 * r1
        e = self.y - b0[seg] - b1[seg] * x
        Py = w * e
        return {"w": w, "beta": np.stack([b0, b1], 1), "Ainv": (i00, i01, i11), "e": e,
                "Py": Py, "Q": self.S(e * Py)}

    def _tr(self, Ainv, w_pow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ainv X'W^jX as a 2 x 2 product's entries (m00, m01, m10, m11)."""
        i00, i01, i11 = Ainv
        a, b, c = self._A(w_pow)
        return (i00 * a + i01 * b, i00 * b + i01 * c, i01 * a + i11 * b, i01 * b + i11 * c)

    def traces(self, f: dict, order: int):
        """tr(P) and, for order 2, tr(PP) (the engine's _trace_terms)."""
        w = f["w"]
        m = self._tr(f["Ainv"], w * w)
        trP = self.S(w) - (m[0] + m[3])
        if order == 1:
            return trP, None
        m3 = self._tr(f["Ainv"], w * w * w)
        trMM = m[0] * m[0] + 2 * m[1] * m[2] + m[3] * m[3]
        return trP, self.S(w * w) - 2.0 * (m3[0] + m3[3]) + trMM


def _dl2(st: Stack2) -> np.ndarray:
    f = st.fit(np.zeros(st.k.size))
    trP, _ = st.traces(f, 1)
    return np.maximum(0.0, (f["Q"] - (st.k - 2)) / trP)


def _sj2(st: Stack2) -> np.ndarray:
    ybar = st.S(st.y) / st.k
    tau0 = st.S((st.y - ybar[st.seg]) ** 2) / st.k
    return tau0 * st.fit(tau0)["Q"] / (st.k - 2)


def _pm2(st: Stack2, tol: float = engine.TOL, maxiter: int = engine.MAXITER) -> np.ndarray:
    target = (st.k - 2).astype(float)
    B = st.k.size
    lo = np.zeros(B)
    active = st.fit(lo)["Q"] > target
    out = np.zeros(B)
    if not active.any():
        return out
    ybar = st.S(st.y) / st.k
    var_y = st.S((st.y - ybar[st.seg]) ** 2) / st.k
    hi = np.where(active, np.maximum(1.0, 10 * var_y), 0.0)
    for _ in range(200):
        grow = active & (st.fit(hi)["Q"] > target)
        if not grow.any():
            break
        hi = np.where(grow, hi * 10.0, hi)
    else:
        raise engine.ConvergenceError("Q-equation: no upper bracket found for tau2")
    vscale = st.median_v()
    tau = lo.copy()
    done = np.zeros(B, dtype=bool)
    for _ in range(maxiter):
        f = st.fit(tau)
        g = f["Q"] - target
        lo = np.where(g > 0, tau, lo)
        hi = np.where(g <= 0, tau, hi)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = tau + g / st.S(f["Py"] * f["Py"])
        bad = ~np.isfinite(step) | (step <= lo) | (step >= hi)
        new = np.where(active, np.where(bad, 0.5 * (lo + hi), step), 0.0)
        new, done = _settle(tau, new, done, tol, vscale)
        if done.all():
            return new
        tau = new
    raise engine.ConvergenceError("Q-equation for tau2 did not converge")


def _scoring2(st: Stack2, reml: bool, tol: float = engine.TOL,
              maxiter: int = engine.MAXITER) -> np.ndarray:
    tau2 = _dl2(st)
    vscale = st.median_v()
    lo, hi = np.zeros_like(tau2), np.full_like(tau2, np.inf)
    prev = np.zeros_like(tau2)
    done = np.zeros(tau2.shape, dtype=bool)
    newton = np.zeros(tau2.shape, dtype=bool)
    S, seg, x = st.S, st.seg, st.x
    for _ in range(maxiter):
        f = st.fit(tau2)
        w, Py = f["w"], f["Py"]
        Py2 = S(Py * Py)
        if reml:
            trP, trPP = st.traces(f, 2)
        else:
            trP, trPP = S(w), S(w * w)
        score = 0.5 * (Py2 - trP)
        info = 0.5 * trPP
        if newton.any():
            u = w * Py
            if reml:
                i00, i01, i11 = f["Ainv"]
                r0, r1 = S(u), S(x * u)
                c0, c1 = i00 * r0 + i01 * r1, i01 * r0 + i11 * r1
                u = u - w * (c0[seg] + c1[seg] * x)
            obs = S(Py * u) - 0.5 * trPP
            info = np.where(newton & (obs > 0), obs, info)
        raw = engine._bracketed_step(tau2, score, info, lo, hi, prev)
        newton = np.abs(raw - tau2) < 1e-3 * np.maximum(raw, vscale)
        tau2, done = _settle(tau2, raw, done, tol, vscale)
        if done.all():
            return tau2
    raise engine.ConvergenceError("Fisher scoring did not converge")


def tau2_reg(st: Stack2, method: str) -> tuple[np.ndarray, list[Exception | None]]:
    """As :func:`tau2` for the meta-regressions on [1, x]."""
    B = st.k.size
    ok: list[Exception | None] = [None] * B
    try:
        if method == "FE":
            return np.zeros(B), ok
        if method == "DL":
            return _dl2(st), ok
        if method == "SJ":
            return _sj2(st), ok
        if method == "PM":
            return _pm2(st), ok
        if method in ("REML", "ML"):
            return _scoring2(st, method == "REML"), ok
    except Exception:  # noqa: BLE001 - one at a time below: only the failing sets are lost
        pass
    out, errs = np.full(B, np.nan), list(ok)
    for b in range(B):
        sl = slice(st.starts[b], st.starts[b] + st.k[b])
        X = np.column_stack([np.ones(st.k[b]), st.x[sl]])[None]
        try:
            out[b] = engine.tau2_estimate(st.y[sl][None], st.v[sl][None], X, method)[0]
        except Exception as e:  # noqa: BLE001 - the caller records the reason
            errs[b] = e
    return out, errs
