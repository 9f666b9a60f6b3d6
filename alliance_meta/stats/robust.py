"""Cluster-robust variance estimation with the CR2 small-sample correction.

CR2 ("bias-reduced linearization"): Bell & McCaffrey (2002), Survey Methodology 28:169-181;
Pustejovsky & Tipton (2018), J Bus Econ Stat 36:672-683, doi:10.1080/07350015.2016.1247004;
for meta-analysis Tipton (2015), Psychol Methods 20:375-393, doi:10.1037/met0000011. Values agree
with R's clubSandwich ``coef_test(fit, vcov = "CR2", cluster =, test = "Satterthwaite")`` on
metafor fits, whose working model weights are inverse-variance (``inverse_var = TRUE``).

With working covariance Phi (the fitted model's marginal covariance) and W = Phi^-1, the
adjustment matrix of cluster j is A_j = F_j (F_j' R_j F_j)^-1/2 F_j' (Pustejovsky & Tipton's
D_j' B_j^-1/2 D_j with D_j = F_j' the upper Cholesky factor of Phi_j), where Phi_j = F_j F_j' and R_j = Phi_j - X_j M X_j' (M = (X'WX)^-1) is the working covariance of the
cluster's residuals; then V_CR2 = M [sum_j X_j' W_j A_j e_j e_j' A_j' W_j X_j] M.

Satterthwaite df for coefficient q (Bell & McCaffrey 2002; Tipton 2015): with a_j = A_j' W_j X_j M c
and b_j = X_j' a_j, the Gram matrix of the quadratic form is diag(a_j' Phi_j a_j) - B M B', so
df = tr(Gram)^2 / ||Gram||_F^2, computed with p x p matrices only (fast for many clusters).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .cr2 import cr2
from .rma import MetaRegressionResult, RandomEffectsResult, _df_html
from .rma_mv import ThreeLevelResult

__all__ = ["RobustResult", "robust"]


@dataclass(frozen=True, repr=False)
class RobustResult:
    """CR2 cluster-robust tests: ``coef``, ``se``, ``tval``, ``df`` (Satterthwaite), ``pval``,
    ``ci_lb``, ``ci_ub`` per coefficient; ``vcov`` is the CR2 covariance matrix."""

    coef: np.ndarray
    se: np.ndarray
    tval: np.ndarray
    df: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vcov: np.ndarray
    coef_names: tuple
    n_clusters: int
    level: float
    measure: str
    model: str

    @property
    def estimate(self) -> float:
        return float(self.coef[0])

    def summary(self) -> pd.DataFrame:
        out = pd.DataFrame(
            {
                "term": list(self.coef_names),
                "estimate": self.coef,
                "se": self.se,
                "tval": self.tval,
                "df": self.df,
                "pval": self.pval,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
            }
        )
        if self.measure == "ZCOR" and len(self.coef) == 1:
            out["r"] = np.tanh(out["estimate"])
            out["r_ci_lb"] = np.tanh(out["ci_lb"])
            out["r_ci_ub"] = np.tanh(out["ci_ub"])
        return out

    def __repr__(self) -> str:
        return (
            f"<RobustResult CR2 on {self.model}, {self.n_clusters} clusters: estimate = "
            f"{self.coef[0]:.4f} (se {self.se[0]:.4f}, df {self.df[0]:.2f}, p = {self.pval[0]:.3g})>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Cluster-robust (CR2) inference</b> on the {html.escape(self.model)}, "
            f"{self.n_clusters} clusters, Satterthwaite df"
        )
        return f"<div>{head}{_df_html(self.summary())}</div>"


def _model_pieces(fit):
    """y, X, beta, names, and a function giving the working covariance of a set of rows."""
    if isinstance(fit, RandomEffectsResult):
        y, X = fit.yi, np.ones((fit.k, 1))
        beta, names = np.array([fit.estimate]), ("intrcpt",)
        diag = fit.vi + fit.tau2
        return y, X, beta, names, (lambda idx: np.diag(diag[idx])), None, "random-effects model"
    if isinstance(fit, MetaRegressionResult):
        diag = fit.vi + fit.tau2
        return (fit.yi, fit.X, fit.coef, fit.coef_names, (lambda idx: np.diag(diag[idx])), None,
                "meta-regression")
    if isinstance(fit, ThreeLevelResult):
        codes, _ = pd.factorize(pd.Series(list(fit.cluster)), sort=False)
        s1, s2 = fit.sigma2_between, fit.sigma2_within

        def block(idx):
            same = codes[idx][:, None] == codes[idx][None, :]
            return np.diag(fit.vi[idx] + s2) + s1 * same

        return fit.yi, fit.X, fit.coef, fit.coef_names, block, codes, "three-level model"
    raise TypeError(f"robust: unsupported fit of type {type(fit).__name__}")


def robust(fit, cluster: Sequence, level: float | None = None) -> RobustResult:
    """CR2 cluster-robust standard errors with Satterthwaite df for each coefficient.

    Works on :func:`random_effects`, :func:`meta_regression` and :func:`three_level` fits. The
    robust clusters must nest the model's clusters (each sample of a three-level model inside one
    robust cluster), as the working covariance is then block-diagonal by robust cluster.
    """
    y, X, beta, names, block, model_codes, model = _model_pieces(fit)
    level = getattr(fit, "level", 0.95) if level is None else level
    cl = pd.Series(list(cluster))
    if cl.size != y.size:
        raise ValueError(f"robust: cluster has {cl.size} values but the model has {y.size} effects")
    if cl.isna().any():
        raise ValueError("robust: cluster has missing values")
    codes, _ = pd.factorize(cl, sort=False)
    m = codes.max() + 1
    if m < 2:
        raise ValueError("robust: needs at least two clusters")
    if model_codes is not None:
        per_model = pd.Series(codes).groupby(model_codes).nunique()
        if (per_model > 1).any():
            raise ValueError("robust: the model's samples must lie within one robust cluster each")

    def phi(idx: np.ndarray) -> np.ndarray:
        # the blocks of equal-size clusters, stacked: (1, m_s, s, s)
        return np.stack([block(ix) for ix in idx])[None]

    ker = cr2(y, X, codes, phi)
    beta = ker.beta[0]
    V = ker.vcov[0]
    se = np.sqrt(np.diag(V))
    df = ker.satterthwaite()[0]
    tval = beta / se
    pval = 2 * stats.t.sf(np.abs(tval), df)
    crit = stats.t.ppf(1 - (1 - level) / 2, df)
    return RobustResult(
        coef=np.asarray(beta, float), se=se, tval=tval, df=df, pval=pval,
        ci_lb=beta - crit * se, ci_ub=beta + crit * se, vcov=V, coef_names=tuple(names),
        n_clusters=int(m), level=level, measure=getattr(fit, "measure", "GEN"), model=model,
    )
