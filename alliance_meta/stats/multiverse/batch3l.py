"""Three-level fits of many data sets at once, for the multiverse.

The likelihood is that of :mod:`alliance_meta.stats.rma_mv` (``rma.mv(yi, vi, random = ~ 1 |
sample/effect)``; Konstantopoulos 2011, Res Synth Methods 2:61-76, doi:10.1002/jrsm.35): per
sample the marginal covariance is diag(v + s2) + s1 11', inverted by Sherman-Morrison. Here the
data sets of a chunk (row sets, and the PET/PEESE designs on them) are stacked into one array and
every per-sample and per-data-set sum is a segment sum, so one Newton iteration of all of them is
a few dozen numpy calls instead of a scipy L-BFGS-B run per data set.

Newton's method on theta = (sigma2_between, sigma2_within) >= 0 with the analytic Hessian of the
(restricted) log-likelihood (Harville 1977, JASA 72:320-338, doi:10.1080/01621459.1977.10480998):
H_ij = 1/2 tr(P V_i P V_j) - y'P V_i P V_j P y (V^-1 for P in the trace under ML), V_1 = Z Z'
(samples), V_2 = I; Fisher scoring (the trace term alone) where -H is not positive definite,
halving the step while the likelihood decreases; a component at 0 whose gradient points below 0
stays at 0. It stops at the criterion of rma_mv's polish (gradient below 1e-10 max(1, k)), so the
estimates equal three_level's to rounding. A data set that does not get there is marked, and
the caller fits it with rma_mv's optimiser.
"""

from __future__ import annotations

import numpy as np

LOG2PI = float(np.log(2 * np.pi))


class ThreeLevelBatch:
    """Data sets (y, v, X, sample codes), each sorted by sample, stacked; X of one width p."""

    def __init__(self, sets: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                 reml: bool):
        self.reml = reml
        self.y = np.concatenate([s[0] for s in sets])
        self.v = np.concatenate([s[1] for s in sets])
        self.X = np.concatenate([s[2] for s in sets])
        self.p = self.X.shape[1]
        ks = np.array([s[0].size for s in sets])
        self.k = ks
        self.rs = np.r_[0, np.cumsum(ks)[:-1]]  # first row of each data set
        cstarts, ms = [], []
        for s, r0 in zip(sets, self.rs, strict=True):
            c = s[3]
            st = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
            cstarts.append(st + r0)
            ms.append(st.size)
        self.cs = np.concatenate(cstarts)  # first row of each sample
        self.m = np.array(ms)
        self.ms = np.r_[0, np.cumsum(ms)[:-1]]  # first sample of each data set
        n, M = self.y.size, self.cs.size
        step = np.zeros(n, dtype=np.int64)
        step[self.cs[1:]] = 1
        self.rc = np.cumsum(step)  # sample of each row
        self.pr = np.repeat(np.arange(len(sets)), ks)  # data set of each row
        self.pc = np.repeat(np.arange(len(sets)), ms)  # data set of each sample
        del M
        XX = self.X[:, :, None] * self.X[:, None, :]
        self.XtX_logdet = np.linalg.slogdet(self._ps(XX))[1]

    # segment sums: rows -> samples, rows -> data sets, samples -> data sets
    def _cs(self, a):
        return np.add.reduceat(a, self.cs, axis=0)

    def _ps(self, a):
        return np.add.reduceat(a, self.rs, axis=0)

    def _ms(self, a):
        return np.add.reduceat(a, self.ms, axis=0)

    def _state(self, theta: np.ndarray, hessian: bool) -> dict:
        """Log-likelihood, gradient and (optionally) Hessian and Fisher information at theta
        (B, 2), with the GLS estimates."""
        rc, pr = self.rc, self.pr
        s1 = theta[self.pc, 0]
        d = self.v + theta[pr, 1]
        di = 1.0 / d
        S = self._cs(di)
        c = s1 / (1.0 + s1 * S)
        cr = c[rc]

        def vinv(Z):
            if Z.ndim == 2:
                Zd = Z * di[:, None]
                return Zd - di[:, None] * (cr[:, None] * self._cs(Zd)[rc])
            Zd = Z * di
            return Zd - di * cr * self._cs(Zd)[rc]

        X, y = self.X, self.y
        G = vinv(X)
        A = self._ps(X[:, :, None] * G[:, None, :])
        Ainv = np.linalg.inv(A)
        beta = np.einsum("bij,bj->bi", Ainv, self._ps(G * y[:, None]))
        e = y - np.einsum("ni,ni->n", X, beta[pr])
        Py = vinv(e)  # P y = V^-1 e
        logdetV = self._ps(np.log(d)) + self._ms(np.log1p(s1 * S))
        quad = self._ps(e * Py)
        k, p = self.k, self.p
        if self.reml:
            ll = -0.5 * ((k - p) * LOG2PI + logdetV + np.linalg.slogdet(A)[1]
                         - self.XtX_logdet + quad)
        else:
            ll = -0.5 * (k * LOG2PI + logdetV + quad)
        u = S / (1.0 + s1 * S)  # 1'V_j^-1 1 per sample
        S2 = self._cs(di**2)
        H = self._cs(G)  # 1'V_j^-1 X_j per sample (M, p)
        HtH = self._ms(H[:, :, None] * H[:, None, :])
        GtG = self._ps(G[:, :, None] * G[:, None, :])
        tr1 = self._ms(u)
        tr2 = self._ps(di) - self._ms(c * S2)
        if self.reml:
            tr1 = tr1 - np.einsum("bij,bji->b", Ainv, HtH)
            tr2 = tr2 - np.einsum("bij,bji->b", Ainv, GtG)
        zPy = self._cs(Py)
        grad = 0.5 * np.stack([self._ms(zPy**2) - tr1, self._ps(Py * Py) - tr2], axis=1)
        out = {"ll": ll, "grad": grad, "beta": beta, "Ainv": Ainv}
        if not hessian:
            return out
        # trace terms tr(P V_i P V_j) (V^-1 for P under ML)
        q = di / (1.0 + s1 * S)[rc]  # V^-1 Z, nonzero in each row's own sample
        S3 = self._cs(di**3)
        T11 = self._ms(u**2)
        T12 = self._ps(q**2)
        T22 = self._ps(di**2) - 2 * self._ms(c * S3) + self._ms(c**2 * S2**2)
        if self.reml:
            AH, AG = Ainv @ HtH, Ainv @ GtG
            hAh = np.einsum("mi,mij,mj->m", H, Ainv[self.pc], H)
            T11 = T11 - 2 * self._ms(u * hAh) + np.einsum("bij,bji->b", AH, AH)
            gAh = np.einsum("ni,nij,nj->n", G, Ainv[pr], H[rc])
            T12 = T12 - 2 * self._ps(q * gAh) + np.einsum("bij,bji->b", AH, AG)
            GVG = self._ps(G[:, :, None] * vinv(G)[:, None, :])
            T22 = T22 - 2 * np.einsum("bij,bji->b", Ainv, GVG) + np.einsum("bij,bji->b", AG, AG)
        fisher = 0.5 * np.stack([np.stack([T11, T12], 1), np.stack([T12, T22], 1)], 1)

        def P(a):
            return vinv(a) - np.einsum("ni,ni->n", G, np.einsum(
                "bij,bj->bi", Ainv, self._ps(G * a[:, None]))[pr])

        a1, a2 = zPy[rc], Py
        Pa1, Pa2 = P(a1), P(a2)
        Q = np.stack([np.stack([self._ps(a1 * Pa1), self._ps(a1 * Pa2)], 1),
                      np.stack([self._ps(a2 * Pa1), self._ps(a2 * Pa2)], 1)], 1)
        out["fisher"] = fisher
        out["hess"] = fisher - Q
        return out

    def fit(self, maxiter: int = 100) -> tuple[np.ndarray, np.ndarray, dict]:
        """Maximise every data set's likelihood; returns theta (B, 2), converged (B,) and the
        state (estimates, gradient) at theta. Start as rma_mv: both components var(y) / 4."""
        y_var = np.array([np.var(self.y[r0 : r0 + k])
                          for r0, k in zip(self.rs, self.k, strict=True)])
        theta = np.repeat(np.maximum(y_var / 4, 1e-4)[:, None], 2, axis=1)
        tol = 1e-10 * np.maximum(1.0, self.k)
        dead = np.zeros(self.k.size, dtype=bool)
        st = self._state(theta, True)
        for _ in range(maxiter):
            conv = _converged(theta, st["grad"], tol)
            live = ~conv & ~dead
            if not live.any():
                break
            step = _step(theta, st)
            t, todo = 1.0, live.copy()
            for _ in range(40):  # halve the step while the likelihood decreases
                cand = np.where(todo[:, None], np.maximum(theta + t * step, 0.0), theta)
                cs = self._state(cand, True)
                good = todo & (cs["ll"] >= st["ll"] - 1e-12 * np.abs(st["ll"]))
                theta = np.where(good[:, None], cand, theta)
                st = _merge(st, cs, good)
                todo &= ~good
                if not todo.any():
                    break
                t /= 2
            dead |= todo  # no ascent step: left to rma_mv's optimiser
        return theta, _converged(theta, st["grad"], tol), st


def _converged(theta: np.ndarray, g: np.ndarray, tol: np.ndarray) -> np.ndarray:
    """rma_mv's criterion: every component off the bound (or at 0 with an ascending
    gradient) has |gradient| below tol."""
    act = ~((theta <= 0) & (g <= 0))
    return np.all(~act | (np.abs(g) < tol[:, None]), axis=1)


def _step(theta: np.ndarray, st: dict) -> np.ndarray:
    """Newton step on the free components (-H where positive definite, else the Fisher
    information), solved in closed form for 2 x 2; components held at 0 do not move."""
    g = st["grad"]
    act = ~((theta <= 0) & (g <= 0))
    gg = np.where(act, g, 0.0)
    both = act[:, 0] & act[:, 1]

    def masked(M):
        M = M.copy()
        M[:, 0, 1] = np.where(both, M[:, 0, 1], 0.0)
        M[:, 1, 0] = np.where(both, M[:, 1, 0], 0.0)
        for j in range(2):
            M[:, j, j] = np.where(act[:, j], M[:, j, j], 1.0)
        return M

    negH, F = masked(-st["hess"]), masked(st["fisher"])
    det_h = negH[:, 0, 0] * negH[:, 1, 1] - negH[:, 0, 1] * negH[:, 1, 0]
    pd_h = (negH[:, 0, 0] > 0) & (negH[:, 1, 1] > 0) & (det_h > 0)
    M = np.where(pd_h[:, None, None], negH, F)
    det = M[:, 0, 0] * M[:, 1, 1] - M[:, 0, 1] * M[:, 1, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        s0 = (M[:, 1, 1] * gg[:, 0] - M[:, 0, 1] * gg[:, 1]) / det
        s1 = (M[:, 0, 0] * gg[:, 1] - M[:, 1, 0] * gg[:, 0]) / det
    step = np.stack([s0, s1], axis=1)
    bad = ~np.isfinite(step).all(axis=1) | (det <= 0)
    if bad.any():  # a degenerate information: a small gradient step
        step[bad] = gg[bad] / np.maximum(np.abs(np.diagonal(F[bad], axis1=1, axis2=2)), 1e-12)
    return np.where(act, step, 0.0)


def _merge(a: dict, b: dict, take: np.ndarray) -> dict:
    """Per data set: b's entries where ``take``, else a's."""
    out = {}
    for key, x in a.items():
        sh = (-1,) + (1,) * (x.ndim - 1)
        out[key] = np.where(take.reshape(sh), b[key], x)
    return out


def prefit(items: list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]], methods
           ) -> list[dict]:
    """The three-level fits of a chunk's row sets in one batch per estimator and design width:
    ``items`` holds per row set (y, v, sample codes, whether PET-PEESE is wanted). Returns per
    row set a dict method -> {"theta", "beta", "var"} of the intercept-only model, plus "pp"
    (theta of the PET and PEESE regressions, (2, 2)) where wanted. A row set or fit absent
    from the dict (one effect per sample, too few effects, not converged here) is left to
    rma_mv's optimiser, which also gives the reason when it fails."""
    out: list[dict] = [{} for _ in items]
    eligible = []
    for i, (y, _, codes, _) in enumerate(items):
        m = np.unique(codes).size
        if y.size >= 3 and 2 <= m < y.size:
            eligible.append(i)
    if not eligible:
        return out
    sorted_ = {}
    for i in eligible:
        y, v, codes, _ = items[i]
        o = np.argsort(codes, kind="stable")
        sorted_[i] = (y[o], v[o], codes[o])
    for method in methods:
        if method not in ("REML", "ML"):
            continue
        reml = method == "REML"
        sets = [(y, v, np.ones((y.size, 1)), c) for y, v, c in (sorted_[i] for i in eligible)]
        theta, ok, st = ThreeLevelBatch(sets, reml).fit()
        for j, i in enumerate(eligible):
            if ok[j]:
                out[i][method] = {"theta": theta[j], "beta": float(st["beta"][j, 0]),
                                  "var": float(st["Ainv"][j, 0, 0])}
        pp = [i for i in eligible if items[i][3] and method in out[i]]
        if not pp:
            continue
        sets = []
        for i in pp:
            y, v, c = sorted_[i]
            one = np.ones(y.size)
            sets += [(y, v, np.column_stack([one, np.sqrt(v)]), c),
                     (y, v, np.column_stack([one, v]), c)]
        theta, ok, _ = ThreeLevelBatch(sets, reml).fit()
        for j, i in enumerate(pp):
            if ok[2 * j] and ok[2 * j + 1]:
                out[i][method]["pp"] = theta[2 * j : 2 * j + 2]
    return out
