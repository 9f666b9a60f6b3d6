"""Step-function selection models (Vevea & Hedges 1995; metafor's ``selmodel``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from .. import engine, inference
from ..results import CoefResult, coef_fields, df_html
from ..rma import MetaRegressionResult, RandomEffectsResult
from ..rma_mv import ThreeLevelResult
from ._common import _html_block, _low_power_note, _r_cols

__all__ = ["SelectionModelResult", "selection_model"]


@dataclass(frozen=True, repr=False, kw_only=True)
class SelectionModelResult(CoefResult):
    """A step-function selection model fitted by maximum likelihood.

    The coefficient table (``beta``/``coef``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``,
    ``vb``; z tests) holds the adjusted coefficients: for a model without moderators one row, so
    ``estimate`` etc. are floats (the adjusted pooled effect); ``coef_se`` is ``se`` as an array.
    ``tau2``,
    ``se_tau2``; ``delta``: the relative selection weight of each p-value interval (the first,
    p <= steps[0], fixed at 1), ``se_delta`` (NaN for the fixed one); ``steps``: the upper
    cut-points of the intervals (the last is 1); ``k_per_interval``: the number of observed
    p-values in each; ``LRT``, ``LRT_df``, ``LRT_p``: likelihood-ratio test of H0: all delta = 1
    against the unadjusted model fitted by ML (``logLik_unadjusted``).
    SEs come from the inverse of the observed information (Hessian of the log-likelihood).
    """

    tau2: float
    se_tau2: float
    delta: np.ndarray
    se_delta: np.ndarray
    steps: tuple
    k_per_interval: np.ndarray
    LRT: float
    LRT_df: int
    LRT_p: float
    logLik: float
    logLik_unadjusted: float
    k: int
    alternative: str
    note: str = ""

    @property
    def coef_se(self) -> np.ndarray:
        """Standard errors of all coefficients, as an array."""
        return np.atleast_1d(np.asarray(self.se, dtype=float))

    def summary(self) -> pd.DataFrame:
        row = {"model": f"step-function selection model (steps {', '.join(map(str, self.steps))})",
               "k": self.k, "estimate": self.beta[0], "se": self.coef_se[0],
               "zval": np.atleast_1d(self.statistic)[0], "pval": np.atleast_1d(self.pval)[0],
               "ci_lb": np.atleast_1d(self.ci_lb)[0], "ci_ub": np.atleast_1d(self.ci_ub)[0],
               "tau2": self.tau2,
               "LRT": self.LRT, "LRT_df": self.LRT_df, "LRT_p": self.LRT_p}
        return pd.DataFrame([_r_cols(row, self.measure)])

    def selection_weights(self) -> pd.DataFrame:
        """One row per p-value interval: bounds, number of studies, delta and its SE."""
        lo = (0.0,) + self.steps[:-1]
        return pd.DataFrame({"p_lb": lo, "p_ub": self.steps, "k": self.k_per_interval,
                             "delta": self.delta, "se_delta": self.se_delta})

    def __repr__(self) -> str:
        d = ", ".join(f"{x:.3f}" for x in self.delta[1:])
        return (f"<SelectionModelResult k = {self.k}: estimate = {self.beta[0]:.4f} "
                f"[{np.atleast_1d(self.ci_lb)[0]:.4f}, {np.atleast_1d(self.ci_ub)[0]:.4f}], tau2 = {self.tau2:.4f}, delta = {d}; "
                f"LRT = {self.LRT:.3f} (df {self.LRT_df}, p = {self.LRT_p:.4g})>")

    def _repr_html_(self) -> str:
        return (_html_block("Step-function selection model (Vevea & Hedges 1995)",
                            self.summary(), self.note)
                + f"<div>{df_html(self.selection_weights())}</div>")


class _StepLik:
    """Log-likelihood of the step-function selection model and its gradient.

    Parameters theta = (beta (p), tau2 (if random), delta_2..delta_c). With mu = X beta,
    s^2 = vi + tau2, the cut-points alpha_j on the one-sided p-value scale are cut-points
    c_ij = sqrt(vi) * Phi^-1(1 - alpha_j) on the y scale; P_ij = Pr(alpha_{j-1} < p_i <= alpha_j)
    = Phi((c_i,j-1 - mu_i)/s_i) - Phi((c_ij - mu_i)/s_i) and A_i = sum_j delta_j P_ij. The
    log-likelihood is sum_i [log delta_j(i) + log phi((y_i - mu_i)/s_i) - log s_i - log A_i]
    (Vevea & Hedges 1995, eq. 4). Two-sided p-values add the mirrored interval.
    """

    def __init__(self, y, v, X, alphas, two_sided: bool, random: bool):
        self.y, self.v, self.X = y, v, X
        self.k, self.p = X.shape
        self.random = random
        self.c = alphas.size
        sei = np.sqrt(v)
        q = stats.norm.isf(alphas / 2 if two_sided else alphas)  # (c,), last is -inf or 0
        E = np.empty((self.k, self.c + 1))
        E[:, 0] = np.inf
        E[:, 1:] = sei[:, None] * q[None, :]
        if not two_sided:
            E[:, -1] = -np.inf
        else:
            E[:, -1] = 0.0
        self.E = E
        self.two_sided = two_sided
        z = y / sei
        pv = inference.pvalue(z) if two_sided else inference.pvalue(z, side="greater")
        self.j = np.searchsorted(alphas, pv, side="left")
        self.j = np.minimum(self.j, self.c - 1)
        self.n = np.bincount(self.j, minlength=self.c)

    def split(self, theta):
        p = self.p
        beta = theta[:p]
        tau2 = theta[p] if self.random else 0.0
        delta = np.r_[1.0, theta[p + (1 if self.random else 0):]]
        return beta, tau2, delta

    def _pieces(self, B):
        F = special.ndtr(B)
        phi = np.where(np.isfinite(B), np.exp(-0.5 * np.where(np.isfinite(B), B, 0) ** 2)
                       / np.sqrt(2 * np.pi), 0.0)
        phiB = np.where(np.isfinite(B), phi * np.where(np.isfinite(B), B, 0), 0.0)
        return F, phi, phiB

    def value_grad(self, theta):
        beta, tau2, delta = self.split(theta)
        y, v, X = self.y, self.v, self.X
        mu = X @ beta
        s2 = v + tau2
        s = np.sqrt(s2)
        B = (self.E - mu[:, None]) / s[:, None]
        F, phi, phiB = self._pieces(B)
        P = F[:, :-1] - F[:, 1:]
        dPm = (-phi[:, :-1] + phi[:, 1:]) / s[:, None]  # dP/dmu
        dPt = (-phiB[:, :-1] + phiB[:, 1:]) / (2 * s2[:, None])  # dP/dtau2
        if self.two_sided:
            B2 = (-self.E - mu[:, None]) / s[:, None]
            F2, phi2, phiB2 = self._pieces(B2)
            P = P + F2[:, 1:] - F2[:, :-1]
            dPm = dPm + (-phi2[:, 1:] + phi2[:, :-1]) / s[:, None]
            dPt = dPt + (-phiB2[:, 1:] + phiB2[:, :-1]) / (2 * s2[:, None])
        A = P @ delta
        r = y - mu
        ll = (np.log(delta[self.j]).sum() - 0.5 * (np.log(2 * np.pi * s2) + r**2 / s2).sum()
              - np.log(A).sum())
        g_mu = r / s2 - (dPm @ delta) / A
        grads = [X.T @ g_mu]
        if self.random:
            grads.append([(-0.5 / s2 + 0.5 * r**2 / s2**2 - (dPt @ delta) / A).sum()])
        grads.append(self.n[1:] / delta[1:] - (P[:, 1:] / A[:, None]).sum(0))
        return float(ll), np.concatenate([np.atleast_1d(np.asarray(g, float)) for g in grads])

    def hessian(self, theta):
        n = theta.size
        H = np.empty((n, n))
        for i in range(n):
            h = 1e-5 * max(abs(theta[i]), 1e-2)
            tp, tm = theta.copy(), theta.copy()
            tp[i] += h
            tm[i] -= h
            H[:, i] = (self.value_grad(tp)[1] - self.value_grad(tm)[1]) / (2 * h)
        return 0.5 * (H + H.T)


def selection_model(res, steps: Sequence[float] = (0.025,), alternative: str = "greater",
                    delta_max: float = 100.0) -> SelectionModelResult:
    """Step-function selection model (Vevea & Hedges 1995), as metafor's
    ``selmodel(res, type="stepfun", steps=steps, alternative=alternative)``.

    Vevea & Hedges (1995), Psychometrika 60:419-435, doi:10.1007/BF02294384; Hedges (1992),
    Stat Sci 7:246-255, doi:10.1214/ss/1177011364. With one cut-point at one-sided p = .025
    (the default) this is the three-parameter selection model (3PSM; McShane, Boeckenholt &
    Hansen 2016, Perspect Psychol Sci 11:730-749, doi:10.1177/1745691616662243; Carter et al.
    2019, AMPPS 2:115-144, doi:10.1177/2515245919847196).

    The one-sided p-values p_i = 1 - Phi(yi / sqrt(vi)) (``alternative="greater"``; Phi(z) for
    "less"; 2(1 - Phi(|z|)) for "two.sided") fall into intervals (0, a1], (a1, a2], ..., (., 1]
    whose relative likelihood of publication is delta_j (delta_1 = 1). The model of ``res``
    (random effects, common effect, or a meta-regression) is fitted jointly with the deltas by
    maximum likelihood (whatever ``res.method``), L-BFGS-B with the analytic gradient
    (tau^2 >= 0, 0 < delta <= ``delta_max``, metafor's default bound 100) polished by Newton steps
    to a gradient below 1e-9; SEs from the Hessian (central differences of the analytic
    gradient). The likelihood-ratio test compares with the unadjusted model fitted by ML.

    Raises ValueError if an interval holds no observed p-value (its delta is not estimable) or
    there are too few effects for the number of parameters.
    """
    who = "selection_model"
    if isinstance(res, ThreeLevelResult):
        raise ValueError(f"{who}: not available for three-level models (the likelihood assumes "
                         f"independent effects)")
    if not isinstance(res, (RandomEffectsResult, MetaRegressionResult)):
        raise TypeError(f"{who}: needs a fitted model, got {type(res).__name__}")
    if alternative not in ("greater", "less", "two.sided"):
        raise ValueError(f"{who}: alternative must be 'greater', 'less' or 'two.sided'")
    a = np.unique(np.asarray(list(steps), float))
    if a.size == 0 or np.any((a <= 0) | (a > 1)):
        raise ValueError(f"{who}: steps must lie in (0, 1], got {list(steps)}")
    if a[-1] < 1:
        a = np.r_[a, 1.0]
    y, v = res.yi, res.vi
    X = np.ones((y.size, 1)) if isinstance(res, RandomEffectsResult) else res.X
    k, p = X.shape
    random = res.method != "FE"
    sgn = -1.0 if alternative == "less" else 1.0
    lik = _StepLik(sgn * y, v, X, a, alternative == "two.sided", random)
    bounds = np.r_[0.0, a]
    empty = np.flatnonzero(lik.n == 0)
    if empty.size:
        iv = ", ".join(f"({bounds[j]:g}, {bounds[j + 1]:g}]" for j in empty)
        raise ValueError(
            f"{who}: no observed p-value falls in the interval(s) {iv}, so their selection "
            f"weight cannot be estimated; choose other steps (p-values per interval: "
            f"{lik.n.tolist()})")
    npar = p + int(random) + a.size - 1
    if k <= npar:
        raise ValueError(f"{who}: k = {k} effect sizes are too few for {npar} parameters")
    # unadjusted ML fit: starting values and the null of the LRT
    Yb, Vb, Xb = (sgn * y)[None], v[None], X[None]
    t0 = engine.tau2_estimate(Yb, Vb, Xb, "ML") if random else np.zeros(1)
    b0 = engine.wls(Yb, Vb, Xb, t0).beta[0]
    ll0 = float(engine.loglik(Yb, Vb, Xb, t0, reml=False)[0])
    theta = np.r_[b0, t0 if random else [], np.ones(a.size - 1)]
    lb = np.r_[np.full(p, -np.inf), [0.0] if random else [], np.full(a.size - 1, 1e-10)]
    ub = np.r_[np.full(p, np.inf), [np.inf] if random else [], np.full(a.size - 1, delta_max)]

    def f(th):
        ll, g = lik.value_grad(th)
        return -ll, -g

    sol = optimize.minimize(f, theta, jac=True, method="L-BFGS-B", bounds=list(zip(lb, ub, strict=True)),
                            options={"ftol": 1e-15, "gtol": 1e-11, "maxiter": 5000})
    theta = np.clip(sol.x, lb, ub)
    for _ in range(50):  # Newton polish on the parameters off their bounds
        ll, g = lik.value_grad(theta)
        at_lb = (theta <= lb) & (g < 0)
        at_ub = (theta >= ub) & (g > 0)
        free = ~(at_lb | at_ub)
        if np.all(np.abs(g[free]) < 1e-9 * max(1.0, k)):
            break
        H = lik.hessian(theta)[np.ix_(free, free)]
        try:
            step = -np.linalg.solve(H, g[free])
        except np.linalg.LinAlgError:
            break
        new = theta.copy()
        new[free] = np.clip(theta[free] + step, lb[free], ub[free])
        if lik.value_grad(new)[0] < ll - 1e-10 * max(1.0, abs(ll)):
            break  # not an ascent step: keep the optimiser's solution
        theta = new
    ll, g = lik.value_grad(theta)
    free = ~(((theta <= lb) & (g < 0)) | ((theta >= ub) & (g > 0)))
    if np.any(np.abs(g[free]) > 1e-5 * max(1.0, k)):
        raise engine.ConvergenceError(f"{who}: the likelihood maximisation did not converge "
                                    f"(gradient {np.abs(g[free]).max():.2g})")
    cov = np.full((theta.size, theta.size), np.nan)
    H = -lik.hessian(theta)
    try:
        cov[np.ix_(free, free)] = np.linalg.inv(H[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        pass
    ses = np.sqrt(np.where(np.diag(cov) > 0, np.diag(cov), np.nan))
    beta = sgn * theta[:p]
    bse = ses[:p]
    tau2 = float(theta[p]) if random else 0.0
    se_tau2 = float(ses[p]) if random else float("nan")
    delta = np.r_[1.0, theta[p + int(random):]]
    se_delta = np.r_[np.nan, ses[p + int(random):]]
    vb = sgn**2 * cov[:p, :p]  # sign flips of beta leave its covariance unchanged
    LRT = max(0.0, 2 * (ll - ll0))
    note = _low_power_note(k, "the selection model")
    if np.any(lik.n < 4):
        few = (note + " " if note else "") + (
            f"Some p-value intervals hold fewer than 4 effects ({lik.n.tolist()}): their "
            f"selection weights are poorly estimated.")
        note = few
    table = coef_fields(beta, vb, "z", res.level, se=bse)
    return SelectionModelResult(
        **table, coef_names=(("intrcpt",) if isinstance(res, RandomEffectsResult)
                             else res.coef_names),
        test="z", level=res.level, measure=res.measure, tau2=tau2,
        se_tau2=se_tau2, delta=delta, se_delta=se_delta, steps=tuple(float(x) for x in a),
        k_per_interval=lik.n.copy(), LRT=LRT, LRT_df=int(a.size - 1),
        LRT_p=inference.chi2_sf(LRT, a.size - 1), logLik=ll, logLik_unadjusted=ll0, k=k,
        alternative=alternative, note=note,
    )
