"""Cluster-robust inference with the CR2 small-sample correction, for fitted models.

CR2 ("bias-reduced linearization"): Bell & McCaffrey (2002), Survey Methodology 28:169-181;
Pustejovsky & Tipton (2018), J Bus Econ Stat 36:672-683, doi:10.1080/07350015.2016.1247004;
for meta-analysis Tipton (2015), Psychol Methods 20:375-393, doi:10.1037/met0000011. The kernel
(estimator, Satterthwaite df, HTZ test) is :mod:`alliance_meta.stats.cr2`. Values agree with R's
clubSandwich ``coef_test(fit, vcov = "CR2", cluster =, test = "Satterthwaite")`` and
``Wald_test(fit, constraints = constrain_zero(...), vcov = "CR2", test = "HTZ")`` on metafor
fits, whose working weights are inverse-variance (``inverse_var = TRUE``); multiple-constraint
tests follow Tipton & Pustejovsky (2015), J Educ Behav Stat 40:604-634,
doi:10.3102/1076998615606099.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cr2 import CR2, cr2
from .results import CoefResult, coef_fields, df_html
from .rma import MetaRegressionResult, RandomEffectsResult
from .rma_mv import ThreeLevelResult

__all__ = ["RobustResult", "WaldTestResult", "robust"]


@dataclass(frozen=True, repr=False)
class WaldTestResult:
    """Cluster-robust Wald test of H0: the coefficients ``coefs`` are all 0, with the HTZ
    small-sample correction: ``F`` on (``df_num``, ``df_denom``) df, ``pval``; ``Q`` is the
    unadjusted Wald statistic and ``eta`` the Wishart df of the robust covariance."""

    coefs: tuple
    terms: tuple
    F: float
    df_num: int
    df_denom: float
    pval: float
    Q: float
    eta: float
    test: str = "HTZ"

    def __repr__(self) -> str:
        return (f"<WaldTestResult {self.test} of {', '.join(self.terms)} = 0: F({self.df_num}, "
                f"{self.df_denom:.2f}) = {self.F:.4f}, p = {self.pval:.4g}>")

    def _repr_html_(self) -> str:
        return f"<div>{html.escape(repr(self))}</div>"


@dataclass(frozen=True, repr=False, kw_only=True)
class RobustResult(CoefResult):
    """CR2 cluster-robust tests: the coefficient table (t tests with Satterthwaite ``dfs`` per
    coefficient; floats for a one-coefficient model), ``vb`` (alias ``vcov``) the CR2
    covariance matrix; :meth:`wald_test` for several coefficients at once."""

    n_clusters: int
    model: str
    kernel: CR2 = field(repr=False)

    @property
    def vcov(self) -> np.ndarray:
        return self.vb

    @property
    def df(self) -> float | np.ndarray:
        """Satterthwaite df (the same as ``dfs``)."""
        return self.dfs

    def wald_test(self, coefs: Sequence[int] | Sequence[str]) -> WaldTestResult:
        """Robust Wald test that the coefficients ``coefs`` (indices or names) are all 0, with
        clubSandwich's HTZ small-sample F test (``Wald_test(..., test = "HTZ")``)."""
        names = list(self.coef_names)
        idx = []
        for c in coefs:
            if isinstance(c, str):
                if c not in names:
                    raise ValueError(f"wald_test: no coefficient named {c!r}; have {names}")
                idx.append(names.index(c))
            else:
                if not -self.p <= int(c) < self.p:
                    raise ValueError(f"wald_test: coefficient index {c} out of range for "
                                     f"{self.p} coefficients")
                idx.append(int(c) % self.p)
        if not idx or len(set(idx)) != len(idx):
            raise ValueError("wald_test: give one or more distinct coefficients")
        C = np.eye(self.p)[idx]
        terms = [names[i] for i in idx]
        # A coefficient identified by one cluster alone (e.g. a moderator level present in a
        # single sample) has a CR2 variance of ~0 relative to the model-based one: the Wald
        # statistic explodes and HTZ's df are meaningless, so refuse instead of printing it.
        robust_v = np.linalg.eigvalsh(C @ np.asarray(self.kernel.vcov)[0] @ C.T)
        model_v = np.linalg.eigvalsh(C @ np.asarray(self.kernel.bread)[0] @ C.T)
        if robust_v.min() <= 1e-10 * max(model_v.max(), np.finfo(float).tiny):
            raise ValueError(f"wald_test: the cluster-robust covariance of {terms} is singular "
                             "(a coefficient estimated from a single cluster?); the HTZ test is "
                             "undefined")
        h = self.kernel.htz(C)
        if not (np.isfinite(h.F[0]) and h.df_denom[0] > 0):
            raise ValueError(f"wald_test: the HTZ test of {terms} is undefined here "
                             f"(F = {h.F[0]:.4g}, denominator df = {h.df_denom[0]:.4g})")
        return WaldTestResult(
            coefs=tuple(idx), terms=tuple(names[i] for i in idx), F=float(h.F[0]),
            df_num=int(h.df_num), df_denom=float(h.df_denom[0]), pval=float(h.pval[0]),
            Q=float(h.Q[0]), eta=float(h.eta[0]),
        )

    def _title(self) -> str:
        return (f"Cluster-robust (CR2) inference on the {self.model}, {self.n_clusters} "
                f"clusters, Satterthwaite df")

    def summary(self) -> pd.DataFrame:
        out = self.coef_table()
        out.insert(out.columns.get_loc("pval"), "df", np.atleast_1d(self.dfs))
        return out

    def __repr__(self) -> str:
        b, s = np.atleast_1d(self.se), np.atleast_1d(self.dfs)
        return (
            f"<RobustResult CR2 on {self.model}, {self.n_clusters} clusters: estimate = "
            f"{self.beta[0]:.4f} (se {b[0]:.4f}, df {s[0]:.2f}, "
            f"p = {np.atleast_1d(self.pval)[0]:.3g})>"
        )

    def _repr_html_(self) -> str:
        return f"<div><b>{html.escape(self._title())}</b>{df_html(self.summary())}</div>"


def _model_pieces(fit):
    """y, X, names, a function giving the working covariance of a set of rows, the model's
    clusters (or None) and a label."""
    if isinstance(fit, RandomEffectsResult):
        diag = fit.vi + fit.tau2
        return (fit.yi, np.ones((fit.k, 1)), ("intrcpt",), (lambda idx: np.diag(diag[idx])),
                None, "random-effects model")
    if isinstance(fit, MetaRegressionResult):
        diag = fit.vi + fit.tau2
        return (fit.yi, fit.X, fit.coef_names, (lambda idx: np.diag(diag[idx])), None,
                "meta-regression")
    if isinstance(fit, ThreeLevelResult):
        codes, _ = pd.factorize(pd.Series(list(fit.cluster)), sort=False)
        s1, s2 = fit.sigma2_between, fit.sigma2_within

        def block(idx):
            same = codes[idx][:, None] == codes[idx][None, :]
            return np.diag(fit.vi[idx] + s2) + s1 * same

        return fit.yi, fit.X, fit.coef_names, block, codes, "three-level model"
    raise TypeError(f"robust: unsupported fit of type {type(fit).__name__}")


def robust(fit, cluster: Sequence, level: float | None = None) -> RobustResult:
    """CR2 cluster-robust standard errors with Satterthwaite df for each coefficient.

    Works on :func:`random_effects`, :func:`meta_regression` and :func:`three_level` fits. The
    robust clusters must nest the model's clusters (each sample of a three-level model inside one
    robust cluster), as the working covariance is then block-diagonal by robust cluster.
    """
    y, X, names, block, model_codes, model = _model_pieces(fit)
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
    table = coef_fields(ker.beta[0], ker.vcov[0], "t", level, ker.satterthwaite()[0])
    return RobustResult(
        **table, coef_names=tuple(names), test="t", level=level,
        measure=getattr(fit, "measure", "GEN"), n_clusters=int(m), model=model, kernel=ker,
    )

