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
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, stats

from .rma import _df_html, check_yi_vi, design_matrix

__all__ = ["ThreeLevelResult", "three_level"]


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


@dataclass(frozen=True, repr=False)
class ThreeLevelResult:
    """A fitted three-level model (metafor's ``rma.mv`` with ``random = ~ 1 | sample/effect``).

    ``coef``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub`` are arrays in design-matrix order;
    ``estimate`` etc. are the intercept's values (the pooled effect of an intercept-only model).
    ``sigma2_between`` (between samples) and ``sigma2_within`` (between effects within a sample)
    are metafor's ``sigma2[1]`` and ``sigma2[2]``; ``I2_between``/``I2_within`` (percent) use the
    typical sampling variance of Higgins & Thompson (2002) (Cheung 2014, eq. 14).
    """

    coef: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vb: np.ndarray
    coef_names: tuple
    sigma2_between: float
    sigma2_within: float
    QE: float
    QE_p: float
    QM: float
    QM_p: float
    I2_between: float
    I2_within: float
    logLik: float
    k: int
    n_clusters: int
    method: str
    test: str
    level: float
    measure: str
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    cluster: np.ndarray = field(repr=False)
    dfs: float = float("inf")

    @property
    def sigma2(self) -> np.ndarray:
        return np.array([self.sigma2_between, self.sigma2_within])

    @property
    def estimate(self) -> float:
        return float(self.coef[0])

    @property
    def p(self) -> int:
        return self.coef.size

    def working_cov_blocks(self):
        """(row indices, covariance block) per model cluster; used by :func:`robust`."""
        codes, _ = pd.factorize(pd.Series(list(self.cluster)), sort=False)
        for j in range(codes.max() + 1):
            idx = np.flatnonzero(codes == j)
            B = np.diag(self.vi[idx] + self.sigma2_within) + self.sigma2_between
            yield idx, B

    def summary(self) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "term": list(self.coef_names),
                "estimate": self.coef,
                "se": self.se,
                "zval" if self.test == "z" else "tval": self.zval,
                "pval": self.pval,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
            }
        )
        if self.measure == "ZCOR" and self.p == 1:
            out["r"] = np.tanh(out["estimate"])
            out["r_ci_lb"] = np.tanh(out["ci_lb"])
            out["r_ci_ub"] = np.tanh(out["ci_ub"])
        return out

    def variance_components(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "component": ["between samples (level 3)", "within samples (level 2)"],
                "sigma2": [self.sigma2_between, self.sigma2_within],
                "I2": [self.I2_between, self.I2_within],
            }
        )

    def __repr__(self) -> str:
        return (
            f"<ThreeLevelResult ({self.method}), k = {self.k} in {self.n_clusters} samples: "
            f"estimate = {self.estimate:.4f} (se {self.se[0]:.4f}), sigma2 = "
            f"{self.sigma2_between:.4f} / {self.sigma2_within:.4f}>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Three-level model</b> ({html.escape(self.method)}), k = {self.k} effects in "
            f"{self.n_clusters} samples; QE = {self.QE:.2f} (p = {self.QE_p:.3g})"
        )
        return f"<div>{head}{_df_html(self.summary())}{_df_html(self.variance_components())}</div>"


def three_level(
    yi: Sequence[float],
    vi: Sequence[float],
    cluster: Sequence,
    mods: pd.DataFrame | None = None,
    formula: str | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    measure: str = "ZCOR",
) -> ThreeLevelResult:
    """Fit the three-level model by REML or ML (metafor's
    ``rma.mv(yi, vi, mods=, random = ~ 1 | cluster/effect, method=, test=)``).

    ``test="t"`` uses t with k - p df, as metafor's ``test="t"``.
    """
    who = "three_level"
    if method not in ("REML", "ML"):
        raise ValueError(f"{who}: method must be 'REML' or 'ML', got {method!r}")
    if test not in ("z", "t"):
        raise ValueError(f"{who}: test must be 'z' or 't', got {test!r}")
    y0, v0 = check_yi_vi(yi, vi, who, min_k=3)
    cl = np.asarray(list(cluster), dtype=object)
    if cl.size != y0.size:
        raise ValueError(f"{who}: cluster has {cl.size} values but yi has {y0.size}")
    if pd.isna(pd.Series(cl)).any():
        raise ValueError(f"{who}: cluster has missing values")
    if mods is not None and formula is not None:
        Xdf = design_matrix(mods, formula)
        X0, names = Xdf.to_numpy(), list(Xdf.columns)
    elif mods is not None:
        M = np.asarray(mods, float)
        M = M[:, None] if M.ndim == 1 else M
        X0 = np.column_stack([np.ones(y0.size), M])
        names = ["intrcpt"] + [f"mod{j + 1}" for j in range(M.shape[1])]
    else:
        X0, names = np.ones((y0.size, 1)), ["intrcpt"]
    bl = _Blocks(cl)
    if bl.m < 2:
        raise ValueError(f"{who}: needs at least two clusters")
    o = bl.order
    y, v, X = y0[o], v0[o], X0[o]
    k, p = X.shape
    reml = method == "REML"
    XtX_logdet = float(np.linalg.slogdet(X.T @ X)[1])

    def negll(theta):
        pc = _pieces(theta, y, v, X, bl, reml, XtX_logdet)
        return -_loglik(pc, k, p, reml, XtX_logdet), -pc.grad

    start = np.full(2, max(np.var(y) / 4, 1e-4))
    sol = optimize.minimize(
        negll, start, jac=True, method="L-BFGS-B", bounds=[(0, None), (0, None)],
        options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 10_000},
    )
    theta = np.maximum(sol.x, 0.0)
    # Newton polish on the free parameters
    for _ in range(50):
        g = _pieces(theta, y, v, X, bl, reml, XtX_logdet).grad
        free = ~((theta <= 0) & (g <= 0))
        if np.all(np.abs(g[free]) < 1e-10 * max(1.0, k)):
            break
        H = np.zeros((2, 2))
        for j in range(2):
            h = 1e-6 * max(theta[j], 1e-4)
            tp, tm = theta.copy(), theta.copy()
            tp[j] += h
            tm[j] = max(tm[j] - h, 0.0)
            gp = _pieces(tp, y, v, X, bl, reml, XtX_logdet).grad
            gm = _pieces(tm, y, v, X, bl, reml, XtX_logdet).grad
            H[:, j] = (gp - gm) / (tp[j] - tm[j])
        Hf = H[np.ix_(free, free)]
        try:
            step = -np.linalg.solve(Hf, g[free])
        except np.linalg.LinAlgError:
            break
        new = theta.copy()
        new[free] = np.maximum(theta[free] + step, 0.0)
        if np.all(np.abs(new - theta) < 1e-14 * np.maximum(1.0, theta)):
            theta = new
            break
        theta = new
    pc = _pieces(theta, y, v, X, bl, reml, XtX_logdet)
    gfree = pc.grad[~((theta <= 0) & (pc.grad <= 0))]
    if not sol.success and np.any(np.abs(gfree) > 1e-6 * max(1.0, k)):
        from .engine import ConvergenceError

        raise ConvergenceError(f"{who}: optimiser did not converge ({sol.message})")
    ll = _loglik(pc, k, p, reml, XtX_logdet)
    beta, vb = pc.beta, pc.Ainv
    se = np.sqrt(np.diag(vb))
    zval = beta / se
    dfs = float(k - p) if test == "t" else float("inf")
    a = 1 - level
    crit = stats.norm.ppf(1 - a / 2) if test == "z" else stats.t.ppf(1 - a / 2, dfs)
    pval = 2 * (stats.norm.sf(np.abs(zval)) if test == "z" else stats.t.sf(np.abs(zval), dfs))
    # residual heterogeneity (sampling variances only), as metafor's QE
    w = 1.0 / v
    Xw = X * w[:, None]
    bfe = np.linalg.solve(X.T @ Xw, Xw.T @ y)
    QE = float(((y - X @ bfe) ** 2 * w).sum())
    if p > 1:
        btt = np.arange(1, p)
        QM = float(beta[btt] @ np.linalg.solve(vb[np.ix_(btt, btt)], beta[btt]))
        if test == "t":
            QM /= btt.size
            QM_p = float(stats.f.sf(QM, btt.size, k - p))
        else:
            QM_p = float(stats.chi2.sf(QM, btt.size))
    else:
        QM = float(zval[0] ** 2)
        QM_p = float(pval[0])
    ww = 1.0 / v0
    vt = (k - 1) * ww.sum() / (ww.sum() ** 2 - (ww**2).sum())
    tot = theta.sum() + vt
    back = np.empty_like(o)
    back[o] = np.arange(k)
    return ThreeLevelResult(
        coef=beta,
        se=se,
        zval=zval,
        pval=pval,
        ci_lb=beta - crit * se,
        ci_ub=beta + crit * se,
        vb=vb,
        coef_names=tuple(names),
        sigma2_between=float(theta[0]),
        sigma2_within=float(theta[1]),
        QE=QE,
        QE_p=float(stats.chi2.sf(QE, k - p)),
        QM=QM,
        QM_p=QM_p,
        I2_between=float(100 * theta[0] / tot),
        I2_within=float(100 * theta[1] / tot),
        logLik=float(ll),
        k=k,
        n_clusters=bl.m,
        method=method,
        test=test,
        level=level,
        measure=measure,
        yi=y0,
        vi=v0,
        X=X0,
        cluster=cl,
        dfs=dfs,
    )
