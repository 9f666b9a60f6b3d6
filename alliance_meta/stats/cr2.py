"""The CR2 cluster-robust variance kernel, batched, with Satterthwaite df and the HTZ Wald test.

CR2 ("bias-reduced linearization"): Bell & McCaffrey (2002), Survey Methodology 28:169-181;
Pustejovsky & Tipton (2018), J Bus Econ Stat 36:672-683, doi:10.1080/07350015.2016.1247004;
for meta-analysis Tipton (2015), Psychol Methods 20:375-393, doi:10.1037/met0000011, and for
multiple-constraint tests Tipton & Pustejovsky (2015), J Educ Behav Stat 40:604-634,
doi:10.3102/1076998615606099. The weights are the inverse of the working covariance Phi (the
fitted model's marginal covariance), as clubSandwich does for metafor fits (``inverse_var``).

With W = Phi^-1, M = (X'WX)^-1 and the upper Cholesky factor F_j' of Phi_j, the adjustment of
cluster j is A_j = F_j (F_j' R_j F_j)^-1/2 F_j' where R_j = Phi_j - X_j M X_j' is the working
covariance of its residuals; V_CR2 = M [sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j] M.

Small-sample inference needs, per cluster, only two p x p matrices (kept in :class:`CR2`):
Q_j = N_j' Phi_j N_j and Z_j = X_j' N_j with N_j = A_j' W_j X_j. For a constraint matrix C
(q x p), P_j = N_j M C' and, under the working model, the q x q blocks of the variance estimator
C V_CR2 C' have covariances built from D_j = P_j' Phi_j P_j = C M Q_j M C' and
B_j = X_j' P_j = Z_j M C' (because X'WPhiWX = M^-1). Satterthwaite df of one coefficient is the
q = 1 case; the HTZ test matches the total variance of the normalised estimator to a Wishart
(Tipton & Pustejovsky 2015, "approximate Hotelling T^2 with Z"). Every sum over pairs of clusters
is written as traces of p x p matrices, so the cost is linear in the number of clusters.

API (arrays carry a leading batch axis B; a single fit is B = 1):

- ``cr2(y, X, cluster, phi)`` -> :class:`CR2` with ``beta`` (B, p), ``bread`` (B, p, p) =
  M, ``vcov`` (B, p, p) = V_CR2, ``se`` (B, p), ``n_clusters``, and the per-cluster ``Q``, ``Z``.
  ``y`` (k,) or (B, k); ``X`` (k, p) or (B, k, p); ``cluster`` codes (k,); ``phi`` the working
  covariance: (k,) or (B, k) diagonal variances (e.g. ``v + tau2``), (B, k, k) full matrices
  (only within-cluster entries are used; pass ``phi[None]`` for one), or a callable ``phi(idx)`` that returns the
  blocks (B or 1, m_s, s, s) of the clusters whose row indices are ``idx`` (m_s, s).
- ``CR2.satterthwaite(coefs=None)`` -> (B, len(coefs)) df of single coefficients.
- ``CR2.htz(C)`` -> :class:`HTZTest` (``Q``, ``F``, ``df_num``, ``df_denom``, ``pval``,
  ``eta``; arrays of shape (B,)) for H0: C beta = 0.
- ``cr2_intercept(y, v, X, tau2, codes)`` -> (beta0, se0, df0): the batch of diagonal-working-
  covariance fits that the multiverse needs (coefficient 0 only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

__all__ = ["CR2", "HTZTest", "cr2", "cr2_intercept", "inv_sqrt_psd"]


def inv_sqrt_psd(B: np.ndarray) -> np.ndarray:
    """Symmetric inverse square root of a stack of PSD matrices (pseudo-inverse on the null
    space, as clubSandwich's ``matrix_power(., -1/2)``)."""
    w, Q = np.linalg.eigh(B)
    tol = 1e-12 * np.maximum(1.0, np.abs(w).max(axis=-1, keepdims=True))
    inv = np.where(w > tol, 1.0 / np.sqrt(np.where(w > tol, w, 1.0)), 0.0)
    return np.einsum("...ij,...j,...kj->...ik", Q, inv, Q)


@dataclass(frozen=True)
class HTZTest:
    """Wald test of C beta = 0 with the HTZ small-sample correction (arrays of shape (B,))."""

    Q: np.ndarray  # Wald statistic (C b)' (C V C')^-1 (C b)
    F: np.ndarray
    df_num: int
    df_denom: np.ndarray
    pval: np.ndarray
    eta: np.ndarray  # Wishart degrees of freedom of C V_CR2 C'


@dataclass(frozen=True)
class CR2:
    """CR2 pieces of a batch of fits; see the module docstring."""

    beta: np.ndarray  # (B, p)
    bread: np.ndarray  # (B, p, p): M = (X'WX)^-1, the model-based covariance
    vcov: np.ndarray  # (B, p, p): V_CR2
    Q: np.ndarray  # (B, m, p, p): N_j' Phi_j N_j
    Z: np.ndarray  # (B, m, p, p): X_j' N_j
    n_clusters: int

    @property
    def se(self) -> np.ndarray:
        return np.sqrt(np.diagonal(self.vcov, axis1=1, axis2=2))

    def _eta(self, C: np.ndarray) -> np.ndarray:
        """Wishart df of C V_CR2 C' matched on total variance (clubSandwich's HTZ; for q = 1 the
        Satterthwaite df of Bell & McCaffrey 2002)."""
        M = self.bread
        q = C.shape[0]
        MC = M @ C.T  # (B, p, q)
        D = np.einsum("bpi,bmpr,brj->bmij", MC, self.Q, MC)  # C M Q_j M C'
        Bj = self.Z @ MC[:, None]  # (B, m, p, q): Z_j M C'
        # E = sum_j b_sj b_tj' for every (s, t): (B, q, q, p, p)
        E = np.einsum("bmis,bmjt->bstij", Bj, Bj)
        BMB = np.einsum("bmis,bij,bmjt->bmst", Bj, M, Bj)  # B_j' M B_j
        Omega = D.sum(1) - BMB.sum(1)
        Om = inv_sqrt_psd(Omega)
        # normalise: D_j -> Om D_j Om, B_j -> B_j Om, E_st -> sum over Om weights
        D = Om[:, None] @ D @ Om[:, None]
        BMB = Om[:, None] @ BMB @ Om[:, None]
        E = np.einsum("bsu,butij,btv->bsvij", Om, E, Om)
        ME = np.einsum("bij,bstjk->bstik", M, E)  # M E_st
        # T1 = sum_j ||D_j||^2 - 2 sum_j <D_j, B_j'MB_j> + sum_st tr(M E_st M E_st)
        t1 = ((D**2).sum((1, 2, 3)) - 2 * (D * BMB).sum((1, 2, 3))
              + np.einsum("bstij,bstji->b", ME, ME))
        # T2 = sum_j tr(D_j)^2 - 2 sum_j tr(D_j) tr(B_j'MB_j) + sum_st tr(M E_st M E_ts)
        trD = np.trace(D, axis1=2, axis2=3)
        trK = np.trace(BMB, axis1=2, axis2=3)
        t2 = (trD**2).sum(1) - 2 * (trD * trK).sum(1) + np.einsum("bstij,btsji->b", ME, ME)
        with np.errstate(divide="ignore", invalid="ignore"):
            return q * (q + 1) / (t1 + t2)

    def satterthwaite(self, coefs: Sequence[int] | None = None) -> np.ndarray:
        """Satterthwaite df of each coefficient in ``coefs`` (default all): (B, len(coefs))."""
        p = self.beta.shape[1]
        coefs = range(p) if coefs is None else coefs
        return np.stack([self._eta(np.eye(p)[[c]]) for c in coefs], axis=1)

    def htz(self, C: np.ndarray) -> HTZTest:
        """HTZ test of C beta = 0 (Tipton & Pustejovsky 2015), as clubSandwich's
        ``Wald_test(..., vcov = "CR2", test = "HTZ")``: F = (eta - q + 1) / (eta q) * Q on
        (q, eta - q + 1) df."""
        C = np.atleast_2d(np.asarray(C, float))
        q = C.shape[0]
        Cb = self.beta @ C.T  # (B, q)
        CVC = C @ self.vcov @ C.T
        Qs = np.einsum("bi,bi->b", Cb, np.linalg.solve(CVC, Cb[..., None])[..., 0])
        eta = self._eta(C)
        delta = np.maximum((eta - q + 1) / eta, 0.0)
        F = delta * Qs / q
        df_denom = eta - q + 1
        return HTZTest(Q=Qs, F=F, df_num=q, df_denom=df_denom,
                       pval=special.fdtrc(q, df_denom, F), eta=eta)


def _cluster_groups(codes: np.ndarray) -> list[np.ndarray]:
    """Row indices of the clusters, one (m_s, s) array per cluster size s."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    sizes = np.diff(np.r_[starts, sc.size])
    return [order[starts[sizes == s][:, None] + np.arange(s)[None, :]] for s in np.unique(sizes)]


def _phi_blocks(phi) -> tuple[Callable[[np.ndarray], np.ndarray], np.ndarray | None]:
    """(block function, diagonal variances (B, k) when Phi is diagonal, else None)."""
    if callable(phi):
        return phi, None
    phi = np.asarray(phi, float)
    if phi.ndim in (1, 2):  # diagonal variances, (k,) or (B, k)
        d = np.atleast_2d(phi)
        return (lambda idx: d[:, idx][..., :, None] * np.eye(idx.shape[1])), d
    if phi.ndim == 3:  # full matrices (B, k, k)
        return (lambda idx: phi[:, idx[:, :, None], idx[:, None, :]]), None
    raise ValueError(f"cr2: phi must have 1 to 3 dimensions, got {phi.ndim}")


def cr2(y: np.ndarray, X: np.ndarray, cluster: Sequence, phi) -> CR2:
    """CR2 estimator for a batch of weighted least-squares fits with W = Phi^-1 (see module
    docstring for the shapes). ``cluster`` may be any labels; the working covariance must be
    block-diagonal by cluster (clusters nest the model's random effects)."""
    cl = np.asarray(cluster) if isinstance(cluster, np.ndarray) else None
    if cl is not None and cl.dtype.kind in "iu":
        codes = cl  # integer codes need no factorising (the multiverse's hot path)
    else:
        codes = np.asarray(pd.factorize(pd.Series(list(cluster)), sort=False)[0])
    X = np.asarray(X, float)
    X = X[None] if X.ndim == 2 else X
    y = np.atleast_2d(np.asarray(y, float))
    B = max(X.shape[0], y.shape[0])
    X = np.broadcast_to(X, (B, *X.shape[1:]))
    y = np.broadcast_to(y, (B, y.shape[1]))
    k, p = X.shape[1:]
    if codes.size != k:
        raise ValueError(f"cr2: cluster has {codes.size} values but the model has {k} effects")
    blocks, diag = _phi_blocks(phi)
    groups = _cluster_groups(codes)
    m = sum(g.shape[0] for g in groups)
    # per group: Phi blocks and their inverses; the bread needs all of them first
    parts = []
    XtWX = np.zeros((B, p, p))
    XtWy = np.zeros((B, p))
    for idx in groups:
        Xs = X[:, idx, :]  # (B, m_s, s, p)
        if diag is None:
            P = np.broadcast_to(blocks(idx), (B, *idx.shape, idx.shape[1]))
            WX = np.linalg.solve(P, Xs)
        else:  # diagonal working covariance: no blocks, no factorisation
            P = np.broadcast_to(diag, (B, k))[:, idx]  # (B, m_s, s)
            WX = Xs / P[..., None]
        XtWX += np.einsum("bmsp,bmsq->bpq", Xs, WX)
        XtWy += np.einsum("bmsp,bms->bp", WX, y[:, idx])
        parts.append((idx, P, Xs, WX))
    M = np.linalg.inv(XtWX)
    beta = np.einsum("bpq,bq->bp", M, XtWy)
    e = y - np.einsum("bkp,bp->bk", X, beta)
    meat = np.zeros((B, p, p))
    Qj = np.empty((B, m, p, p))
    Zj = np.empty((B, m, p, p))
    at = 0
    for idx, P, Xs, WX in parts:
        R = -np.einsum("bmip,bpq,bmjq->bmij", Xs, M, Xs)
        if diag is None:
            R += P
            F = np.linalg.cholesky(P)
            Ft = np.swapaxes(F, -1, -2)
            A = F @ inv_sqrt_psd(Ft @ R @ F) @ Ft
        else:
            R[..., np.arange(idx.shape[1]), np.arange(idx.shape[1])] += P
            sq = np.sqrt(P)
            G = sq[..., :, None] * R * sq[..., None, :]
            A = sq[..., :, None] * inv_sqrt_psd(G) * sq[..., None, :]
        N = np.swapaxes(A, -1, -2) @ WX  # (B, m_s, s, p): A_j' W_j X_j
        u = np.einsum("bmsp,bms->bmp", N, e[:, idx])  # X_j' W_j A_j e_j
        meat += np.einsum("bmp,bmq->bpq", u, u)
        sl = slice(at, at + idx.shape[0])
        PN = P @ N if diag is None else P[..., None] * N
        Qj[:, sl] = np.swapaxes(N, -1, -2) @ PN
        Zj[:, sl] = np.swapaxes(Xs, -1, -2) @ N
        at += idx.shape[0]
    V = M @ meat @ M
    return CR2(beta=beta, bread=M, vcov=V, Q=Qj, Z=Zj, n_clusters=int(m))


def cr2_intercept(y: np.ndarray, v: np.ndarray, X: np.ndarray, tau2: np.ndarray,
                  codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CR2 estimate, SE and Satterthwaite df of the first coefficient for a batch of B random-
    effects (meta-)regressions on the same effects y, v with working covariance diag(v + tau2_b)
    and designs X (B, k, p). Returns three (B,) arrays."""
    X = np.asarray(X, float)
    tau2 = np.asarray(tau2, float).reshape(-1)
    res = cr2(y, X, codes, np.asarray(v, float)[None, :] + tau2[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        df = res.satterthwaite([0])[:, 0]
    return res.beta[:, 0], res.se[:, 0], df
