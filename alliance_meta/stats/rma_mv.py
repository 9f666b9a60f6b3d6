"""Three-level meta-analysis: effects (level 2) nested in independent samples (level 3).

Model (Konstantopoulos 2011, Res Synth Methods 2:61-76, doi:10.1002/jrsm.35; Cheung 2014,
Psychol Methods 19:211-229, doi:10.1037/a0032968; Van den Noortgate et al. 2013, Behav Res
Methods 45:576-594, doi:10.3758/s13428-012-0261-6):

    y_ij = x_ij' beta + u_j + w_ij + e_ij,  u_j ~ N(0, sigma2_between), w_ij ~ N(0, sigma2_within),
    e_ij ~ N(0, v_ij)

which is metafor's ``rma.mv(yi, vi, random = ~ 1 | sample/effect)``. The marginal covariance of a
sample is diag(v + sigma2_within) + sigma2_between * 11', so its inverse and determinant have
closed forms (Sherman-Morrison) and one likelihood evaluation costs O(k): 100,000 samples fit in
seconds. (Restricted) likelihood maximised with L-BFGS-B on the analytic gradient, then polished by
Newton steps on the analytic gradient (finite-difference Hessian) to a gradient below 1e-10.

As metafor's ``rma.mv``: prediction interval (``predict.rma.mv``), profile-likelihood CIs for both
variance components (``confint.rma.mv``), t tests with ``dfs="residual"`` (k - p) or
``dfs="contain"`` (l - p, l the number of samples for a coefficient constant within samples,
else the number of effects), the omnibus QM (chi-square, or F on (m, min df)), and I^2 per level
with the typical sampling variance (k - p) / tr(P), P = W - WX(X'WX)^-1X'W, W = diag(1/v)
(metafor's "I^2 for multilevel and multivariate models"; Nakagawa & Santos 2012, Evol Ecol
26:1253-1274, doi:10.1007/s10682-012-9555-5). Pseudo-R^2 per level is the proportional reduction
of each variance component relative to the intercept-only model (Raudenbush 2009, as metafor's
R^2 for ``rma``; per level as in Cheung 2014), truncated at 0.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import optimize, special

from . import inference
from .engine import ConvergenceError
from .results import CoefResult, coef_fields, df_html
from .rma import _mods_matrix, check_yi_vi, has_intercept, qm_coefficients

__all__ = ["ThreeLevelResult", "three_level"]

DFS = ("residual", "contain")
FALLBACK_MESSAGE = (
    "every sample contributes one effect, so the between-sample and within-sample variances are "
    "not separately identifiable (metafor's rma.mv splits their sum arbitrarily); fitted as a "
    "random-effects model: sigma2_between holds the total heterogeneity (tau^2) and "
    "sigma2_within is fixed at 0"
)


class _Blocks:
    """Rows sorted by cluster, with reduceat offsets."""

    def __init__(self, cluster):
        codes, uniq = pd.factorize(pd.Series(list(cluster)), sort=False)
        self.order = np.argsort(codes, kind="stable")
        sc = codes[self.order]
        self.starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
        self.codes_sorted = sc
        self.labels = uniq
        self.m = self.starts.size
        # cluster index (0..m-1, in sorted order) of every sorted row
        step = np.zeros(sc.size, dtype=np.int64)
        step[self.starts[1:]] = 1
        self.rank = np.cumsum(step)

    def sum(self, a):
        return np.add.reduceat(a, self.starts, axis=0)


@dataclass
class _ThreeLevelPieces:
    beta: np.ndarray
    Ainv: np.ndarray
    e: np.ndarray
    Py: np.ndarray  # V^-1 e (ML) ; for REML P y = V^-1 e as well
    logdetV: float
    logdetA: float
    quad: float
    grad: np.ndarray


def _pieces(theta, y, v, X, bl: _Blocks, reml: bool, XtX_logdet: float) -> _ThreeLevelPieces:
    s1, s2 = theta
    d = v + s2
    di = 1.0 / d
    S = bl.sum(di)  # per cluster sum of 1/d
    c = s1 / (1.0 + s1 * S)
    rank = bl.rank
    cr = c[rank]

    def vinv(Z):
        Zd = Z * (di[:, None] if Z.ndim == 2 else di)
        uZ = bl.sum(Zd)
        return Zd - (di[:, None] * (cr[:, None] * uZ[rank]) if Z.ndim == 2 else di * cr * uZ[rank])

    G = vinv(X)  # V^-1 X
    A = X.T @ G
    Ainv = np.linalg.inv(A)
    beta = Ainv @ (G.T @ y)
    e = y - X @ beta
    Py = vinv(e)
    quad = float(e @ Py)
    logdetV = float(np.log(d).sum() + np.log1p(s1 * S).sum())
    logdetA = float(np.linalg.slogdet(A)[1])
    # gradient of the (restricted) log-likelihood
    S2 = bl.sum(di**2)
    tr_Vinv_V1 = float((S - c * S**2).sum())  # sum_j 1'V_j^-1 1
    tr_Vinv = float(di.sum() - (c * S2).sum())
    q1 = float((bl.sum(Py) ** 2).sum())
    q2 = float(Py @ Py)
    if reml:
        Gs = bl.sum(G)  # 1'V_j^-1 X_j per cluster (m, p)
        tr1 = tr_Vinv_V1 - float(np.einsum("ij,ji->", Ainv, Gs.T @ Gs))
        tr2 = tr_Vinv - float(np.einsum("ij,ji->", Ainv, G.T @ G))
    else:
        tr1, tr2 = tr_Vinv_V1, tr_Vinv
    grad = 0.5 * np.array([q1 - tr1, q2 - tr2])
    return _ThreeLevelPieces(beta, Ainv, e, Py, logdetV, logdetA, quad, grad)


def _loglik(pc: _ThreeLevelPieces, k: int, p: int, reml: bool, XtX_logdet: float) -> float:
    if reml:
        return -0.5 * (
            (k - p) * np.log(2 * np.pi) + pc.logdetV + pc.logdetA - XtX_logdet + pc.quad
        )
    return -0.5 * (k * np.log(2 * np.pi) + pc.logdetV + pc.quad)



class _Problem:
    """The (restricted) likelihood of one data set, sorted by cluster, as a function of
    theta = (sigma2_between, sigma2_within)."""

    def __init__(self, y, v, X, bl: _Blocks, reml: bool):
        self.y, self.v, self.X, self.bl, self.reml = y, v, X, bl, reml
        self.k, self.p = X.shape
        self.XtX_logdet = float(np.linalg.slogdet(X.T @ X)[1])

    def pieces(self, theta) -> _ThreeLevelPieces:
        return _pieces(theta, self.y, self.v, self.X, self.bl, self.reml, self.XtX_logdet)

    def loglik(self, theta) -> float:
        return _loglik(self.pieces(theta), self.k, self.p, self.reml, self.XtX_logdet)

    def fit(self, fixed: dict[int, float] | None = None, start=None) -> tuple[np.ndarray, bool]:
        """Maximise over the components not in ``fixed`` (index -> value); returns (theta,
        converged). L-BFGS-B on the analytic gradient, then Newton steps on the free ones."""
        fixed = fixed or {}
        free = np.array([j not in fixed for j in range(2)])
        theta = np.zeros(2)
        for j, val in fixed.items():
            theta[j] = val
        s0 = max(np.var(self.y) / 4, 1e-4)
        x0 = np.full(int(free.sum()), s0) if start is None else np.asarray(start, float)[free]

        def negll(x):
            t = theta.copy()
            t[free] = x
            pc = self.pieces(t)
            return -_loglik(pc, self.k, self.p, self.reml, self.XtX_logdet), -pc.grad[free]

        if not free.any():
            return theta, True
        if start is not None:
            # warm start (profile likelihood): Newton steps alone usually suffice; accept them
            # only when they reach a stationary point that is no worse than the start
            t0 = theta.copy()
            t0[free] = np.maximum(x0, 0.0)
            t = self._polish(t0.copy(), free)
            g = self.pieces(t).grad
            act = free & ~((t <= 0) & (g <= 0))
            if (np.all(np.abs(g[act]) < 1e-10 * max(1.0, self.k))
                    and self.loglik(t) >= self.loglik(t0)):
                return t, True
        sol = optimize.minimize(
            negll, x0, jac=True, method="L-BFGS-B", bounds=[(0, None)] * int(free.sum()),
            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
        )
        theta[free] = np.maximum(sol.x, 0.0)
        theta = self._polish(theta, free)
        g = self.pieces(theta).grad
        act = free & ~((theta <= 0) & (g <= 0))
        ok = bool(sol.success) or bool(np.all(np.abs(g[act]) < 1e-6 * max(1.0, self.k)))
        return theta, ok

    def _polish(self, theta: np.ndarray, free: np.ndarray) -> np.ndarray:
        for _ in range(50):
            g = self.pieces(theta).grad
            act = free & ~((theta <= 0) & (g <= 0))
            if np.all(np.abs(g[act]) < 1e-10 * max(1.0, self.k)):
                break
            H = np.zeros((2, 2))
            for j in np.flatnonzero(act):
                h = 1e-6 * max(theta[j], 1e-4)
                tp, tm = theta.copy(), theta.copy()
                tp[j] += h
                tm[j] = max(tm[j] - h, 0.0)
                H[:, j] = (self.pieces(tp).grad - self.pieces(tm).grad) / (tp[j] - tm[j])
            try:
                step = -np.linalg.solve(H[np.ix_(act, act)], g[act])
            except np.linalg.LinAlgError:
                break
            new = theta.copy()
            new[act] = np.maximum(theta[act] + step, 0.0)
            done = np.all(np.abs(new - theta) < 1e-14 * np.maximum(1.0, theta))
            theta = new
            if done:
                break
        return theta

    def profile_ci(self, j: int, theta_hat: np.ndarray, level: float,
                   fixed_other: float | None = None) -> tuple[float, float]:
        """Profile-likelihood CI of component j (metafor's ``confint.rma.mv``): the values whose
        profile log-likelihood lies within qchisq(level, 1) / 2 of the maximum. The other
        component is re-estimated at every value (or held at ``fixed_other``)."""
        other = 1 - j
        ll_max = self.loglik(theta_hat)
        target = ll_max - 0.5 * float(special.chdtri(1, 1 - level))
        last = theta_hat.copy()

        def prof(s: float) -> float:
            nonlocal last
            fx = {j: s} if fixed_other is None else {j: s, other: fixed_other}
            t, _ = self.fit(fx, start=last)
            last = t
            return self.loglik(t) - target

        s_hat = float(theta_hat[j])
        lo = 0.0
        if s_hat > 0 and prof(0.0) < 0:
            last = theta_hat.copy()
            lo = optimize.brentq(prof, 0.0, s_hat, xtol=1e-14, rtol=1e-12, maxiter=500)
        last = theta_hat.copy()
        step = max(s_hat, 1e-3 * max(np.var(self.y), 1e-8))
        hi, cap = s_hat + step, 1e6 * max(np.var(self.y), s_hat, 1e-8)
        while prof(hi) > 0:
            if hi > cap:
                return lo, float("nan")  # the profile never drops far enough: no upper bound
            hi, step = hi + 2 * step, 2 * step
        last = theta_hat.copy()
        ub = optimize.brentq(prof, s_hat, hi, xtol=1e-14, rtol=1e-12, maxiter=500)
        return float(lo), float(ub)


@dataclass(frozen=True, repr=False, kw_only=True)
class ThreeLevelResult(CoefResult):
    """A fitted three-level model (metafor's ``rma.mv`` with ``random = ~ 1 | sample/effect``).

    The coefficient table (:class:`~alliance_meta.stats.results.CoefResult`): floats for an
    intercept-only model, arrays in design-matrix order with moderators; ``dfs`` per coefficient
    (inf under z). ``sigma2_between`` (between samples) and ``sigma2_within`` (between effects
    within a sample) are metafor's ``sigma2[1]`` and ``sigma2[2]``; ``I2_between``, ``I2_within``
    and ``I2`` are percent (module docstring); ``R2_between``/``R2_within`` the pseudo-R^2 per
    level in percent (NaN without moderators or without intercept; the intercept-only refit
    they need runs on first access); ``pi_lb``/``pi_ub`` the
    prediction interval of the intercept-only model (``predict.rma.mv``; NaN with moderators).
    ``QM``, ``QM_p``, ``QM_df`` test every coefficient but the intercept (all of them without
    intercept): chi-square under z, F on (m, min df) under t. ``fallback`` is True when every
    sample has one effect and the model was fitted as random effects (``fallback_message``).
    :meth:`confint` gives profile-likelihood CIs of the two variance components.
    """

    sigma2_between: float
    sigma2_within: float
    QE: float
    QE_p: float
    QM: float
    QM_p: float
    QM_df: tuple
    I2_between: float
    I2_within: float
    pi_lb: float
    pi_ub: float
    logLik: float
    k: int
    n_clusters: int
    method: str
    dfs_method: str
    fallback: bool = False
    fallback_message: str = ""
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    cluster: np.ndarray = field(repr=False)

    @cached_property
    def _R2(self) -> tuple[float, float]:
        # computed on first use: the intercept-only refit costs as much as the fit itself
        if self.p == 1 or not has_intercept(list(self.coef_names)):
            return float("nan"), float("nan")
        bl = _Blocks(self.cluster)
        o = bl.order
        th0, _ = _Problem(self.yi[o], self.vi[o], np.ones((self.k, 1)), bl,
                          self.method == "REML").fit({1: 0.0} if self.fallback else None)
        theta = self.sigma2
        return tuple(float("nan") if self.fallback and j == 1 else
                     0.0 if th0[j] <= 0 else max(0.0, 100 * (th0[j] - theta[j]) / th0[j])
                     for j in range(2))

    @property
    def R2_between(self) -> float:
        """Pseudo-R^2 of the between-sample variance (percent; module docstring)."""
        return self._R2[0]

    @property
    def R2_within(self) -> float:
        """Pseudo-R^2 of the within-sample variance (percent; NaN under the fallback)."""
        return self._R2[1]

    @property
    def sigma2(self) -> np.ndarray:
        return np.array([self.sigma2_between, self.sigma2_within])

    @property
    def tau2(self) -> float:
        """Total heterogeneity sigma2_between + sigma2_within (the variance a prediction adds)."""
        return self.sigma2_between + self.sigma2_within

    @property
    def I2(self) -> float:
        """Total I^2 (percent): both levels together."""
        return self.I2_between + self.I2_within

    def working_cov_blocks(self):
        """(row indices, covariance block) per model cluster; used by :func:`robust`."""
        codes, _ = pd.factorize(pd.Series(list(self.cluster)), sort=False)
        for j in range(codes.max() + 1):
            idx = np.flatnonzero(codes == j)
            B = np.diag(self.vi[idx] + self.sigma2_within) + self.sigma2_between
            yield idx, B

    def confint(self, level: float | None = None) -> pd.DataFrame:
        """Profile-likelihood CIs of ``sigma2_between`` and ``sigma2_within`` (metafor's
        ``confint.rma.mv``): DataFrame indexed by component with ``estimate``, ``ci_lb``,
        ``ci_ub``. Under the fallback the within-sample row is NaN (not identifiable). An upper
        bound that the profile never reaches is NaN. Computed once per level (dozens of
        refits; a run's tables, report and site all ask for it) and returned as a copy."""
        level = self.level if level is None else level
        cache = self.__dict__.setdefault("_confint_by_level", {})  # the result is otherwise immutable
        if level not in cache:
            cache[level] = self._confint(level)
        return cache[level].copy()

    def _confint(self, level: float) -> pd.DataFrame:
        bl = _Blocks(self.cluster)
        o = bl.order
        prob = _Problem(self.yi[o], self.vi[o], self.X[o], bl, self.method == "REML")
        theta = self.sigma2
        rows = {}
        if self.fallback:
            rows["sigma2_between"] = (theta[0], *prob.profile_ci(0, theta, level, fixed_other=0.0))
            rows["sigma2_within"] = (float("nan"),) * 3
        else:
            for j, name in enumerate(("sigma2_between", "sigma2_within")):
                rows[name] = (theta[j], *prob.profile_ci(j, theta, level))
        return pd.DataFrame.from_dict(rows, orient="index", columns=["estimate", "ci_lb", "ci_ub"])

    def variance_components(self) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "component": ["between samples (level 3)", "within samples (level 2)"],
                "sigma2": [self.sigma2_between, self.sigma2_within],
                "I2": [self.I2_between, self.I2_within],
            }
        )
        if self.p > 1:
            out["R2"] = [self.R2_between, self.R2_within]
        return out

    def _title(self) -> str:
        return (f"Three-level model ({self.method}), k = {self.k} effects in {self.n_clusters} "
                f"samples")

    def __repr__(self) -> str:
        est = ", ".join(f"{b:.4f}" for b in self.beta)
        return (
            f"<ThreeLevelResult ({self.method}), k = {self.k} in {self.n_clusters} samples: "
            f"estimate = {est}, sigma2 = {self.sigma2_between:.4f} / {self.sigma2_within:.4f}"
            f"{' (random-effects fallback)' if self.fallback else ''}>"
        )

    def _repr_html_(self) -> str:
        t = "z" if self.test == "z" else f"t, dfs = {self.dfs_method}"
        head = (
            f"<b>{html.escape(self._title())}</b>, test = {html.escape(t)}; QE = {self.QE:.2f} "
            f"(p = {self.QE_p:.3g})"
        )
        if self.p > 1:
            head += f"; QM = {self.QM:.2f} on {self.QM_df} df (p = {self.QM_p:.3g})"
        note = f"<p><i>{html.escape(self.fallback_message)}</i></p>" if self.fallback else ""
        return (f"<div>{head}{note}{df_html(self.summary())}"
                f"{df_html(self.variance_components())}</div>")


def _contain_dfs(X: np.ndarray, bl: _Blocks) -> np.ndarray:
    """metafor's ``dfs="contain"`` for ``~ 1 | sample/effect``: a column constant within every
    sample is contained in the sample level (l = number of samples), any other column in the
    effect level (l = k); df = l - p. ``X`` is sorted by cluster."""
    k, p = X.shape
    lo = np.minimum.reduceat(X, bl.starts, axis=0)
    hi = np.maximum.reduceat(X, bl.starts, axis=0)
    within_constant = np.all(lo == hi, axis=0)
    return np.where(within_constant, bl.m, k).astype(float) - p


def three_level(
    yi: Sequence[float],
    vi: Sequence[float],
    cluster: Sequence,
    mods: pd.DataFrame | np.ndarray | None = None,
    formula: str | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    measure: str = "ZCOR",
    dfs: str = "residual",
    sigma2_init: Sequence[float] | None = None,
) -> ThreeLevelResult:
    """Fit the three-level model by REML or ML (metafor's
    ``rma.mv(yi, vi, mods=, random = ~ 1 | cluster/effect, method=, test=, dfs=)``).

    ``test="t"`` uses t (and F for QM) with ``dfs="residual"`` (k - p) or ``dfs="contain"``
    (see :func:`_contain_dfs`); ``dfs="contain"`` implies ``test="t"``, as in metafor. ``mods``
    is a DataFrame with ``formula`` or a numeric matrix (an intercept is added in front).
    When every sample has one effect, the model is fitted as random effects and says so
    (``fallback``; see :data:`FALLBACK_MESSAGE`). ``sigma2_init`` (metafor's
    ``control = list(sigma2.init = )``) starts the optimiser at (sigma2_between,
    sigma2_within), e.g. a fit to a superset of the data: Newton steps from there, accepted only
    at the same stationarity criterion as a cold start (else the cold start runs), make the
    refits of leave-one-out and cumulative analyses several times faster.
    """
    who = "three_level"
    if method not in ("REML", "ML"):
        raise ValueError(f"{who}: method must be 'REML' or 'ML', got {method!r}")
    if test not in ("z", "t"):
        raise ValueError(f"{who}: test must be 'z' or 't', got {test!r}")
    if dfs not in DFS:
        raise ValueError(f"{who}: dfs must be one of {DFS}, got {dfs!r}")
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must lie in (0, 1), got {level}")
    test = "t" if dfs == "contain" else test
    y0, v0 = check_yi_vi(yi, vi, who, min_k=3)
    cl = np.asarray(list(cluster), dtype=object)
    if cl.size != y0.size:
        raise ValueError(f"{who}: cluster has {cl.size} values but yi has {y0.size}")
    if pd.isna(pd.Series(cl)).any():
        raise ValueError(f"{who}: cluster has missing values")
    if mods is not None:
        X0, names, _ = _mods_matrix(mods, formula, who)
        if X0.shape[0] != y0.size:
            raise ValueError(f"{who}: mods has {X0.shape[0]} rows but yi has {y0.size}")
    else:
        X0, names = np.ones((y0.size, 1)), ["intrcpt"]
    bl = _Blocks(cl)
    if bl.m < 2:
        raise ValueError(f"{who}: needs at least two clusters")
    o = bl.order
    y, v, X = y0[o], v0[o], X0[o]
    k, p = X.shape
    if k - p < 1:
        raise ValueError(f"{who}: k = {k} effects cannot fit {p} coefficients with residual df")
    reml = method == "REML"
    fallback = bl.m == k
    prob = _Problem(y, v, X, bl, reml)
    start = None
    if sigma2_init is not None:
        start = np.asarray(sigma2_init, dtype=float)
        if start.shape != (2,) or not np.all(np.isfinite(start)) or np.any(start < 0):
            raise ValueError(f"{who}: sigma2_init must be two finite values >= 0, got "
                             f"{sigma2_init!r}")
    theta, ok = prob.fit({1: 0.0} if fallback else None, start=start)
    if not ok:
        raise ConvergenceError(f"{who}: optimiser did not converge")
    pc = prob.pieces(theta)
    ll = _loglik(pc, k, p, reml, prob.XtX_logdet)
    if test == "z":
        ddf = np.full(p, np.inf)
    else:
        ddf = np.full(p, float(k - p)) if dfs == "residual" else _contain_dfs(X, bl)
    table = coef_fields(pc.beta, pc.Ainv, test, level, ddf)
    btt = qm_coefficients(names)
    QM, QM_p, QM_df = inference.wald_test(table["beta"], table["vb"], btt, float(ddf[btt].min()))
    # residual heterogeneity (sampling variances only), as metafor's QE
    w = 1.0 / v
    Xw = X * w[:, None]
    XtWX_inv = np.linalg.inv(X.T @ Xw)
    bfe = XtWX_inv @ (Xw.T @ y)
    QE = float(((y - X @ bfe) ** 2 * w).sum())
    # typical sampling variance (k - p) / tr(P) of the I^2 for multilevel models
    trP = float(w.sum() - np.einsum("ij,ji->", XtWX_inv, Xw.T @ Xw))
    tot = theta.sum() + (k - p) / trP
    pi_lb = pi_ub = float("nan")
    if p == 1:
        c = inference.crit(level, ddf[0])
        half = c * np.sqrt(pc.Ainv[0, 0] + theta.sum())
        pi_lb, pi_ub = float(pc.beta[0] - half), float(pc.beta[0] + half)
    return ThreeLevelResult(
        **table,
        coef_names=tuple(names),
        test=test,
        level=level,
        measure=measure,
        sigma2_between=float(theta[0]),
        sigma2_within=float(theta[1]),
        QE=QE,
        QE_p=inference.chi2_sf(QE, k - p),
        QM=QM,
        QM_p=QM_p,
        QM_df=(int(QM_df[0]), *QM_df[1:]),
        I2_between=float(100 * theta[0] / tot),
        I2_within=float(100 * theta[1] / tot),
        pi_lb=pi_lb,
        pi_ub=pi_ub,
        logLik=float(ll),
        k=k,
        n_clusters=bl.m,
        method=method,
        dfs_method=dfs if test == "t" else "",
        fallback=fallback,
        fallback_message=FALLBACK_MESSAGE if fallback else "",
        yi=y0,
        vi=v0,
        X=X0,
        cluster=cl,
    )
