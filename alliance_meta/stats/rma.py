"""Meta-analytic models: common effect, random effects, meta-regression, subgroups, permutation.

Names follow R's metafor (Viechtbauer 2010, J Stat Softw 36(3), doi:10.18637/jss.v036.i03) with
dots as underscores: ``tau2``, ``I2`` (percent), ``H2``, ``QE``, ``QM``, ``ci_lb``.
Estimates stay on the scale of ``yi`` (Fisher's z for correlations); summaries add r.

tau^2 estimators
----------------
DL   DerSimonian & Laird (1986), Control Clin Trials 7:177-188, doi:10.1016/0197-2456(86)90046-2
HE   Hedges (1983), Psychol Bull 93:388-395, doi:10.1037/0033-2909.93.2.388 (Hedges & Olkin 1985)
HS   Hunter & Schmidt (2004), Methods of meta-analysis, Sage, doi:10.4135/9781412985031
SJ   Sidik & Jonkman (2005), J Biopharm Stat 15:823-838, doi:10.1081/BIP-200067915
ML   Hardy & Thompson (1996), Stat Med 15:619-629, doi:10.1002/(SICI)1097-0258(19960330)15:6<619::AID-SIM188>3.0.CO;2-A
REML Viechtbauer (2005), J Educ Behav Stat 30:261-293, doi:10.3102/10769986030003261
EB   Morris (1983), JASA 78:47-55, doi:10.1080/01621459.1983.10477920; Berkey et al. (1995)
PM   Paule & Mandel (1982), J Res Natl Bur Stand 87:377-385, doi:10.6028/jres.087.022
ML and REML use Fisher scoring (tolerance 1e-12 on tau^2, at most 10,000 iterations); EB and PM
solve the generalised Q equation by safeguarded Newton, to the same tolerance.

Knapp & Hartung (2003), Stat Med 22:2693-2710, doi:10.1002/sim.1482 (``test="knha"``).
Q-profile CI for tau^2: Viechtbauer (2007), Stat Med 26:37-52, doi:10.1002/sim.2514.
I^2 and H^2: Higgins & Thompson (2002), Stat Med 21:1539-1558, doi:10.1002/sim.1186, with the
typical within-study variance (k - p) / tr(P) as in metafor.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import special

from . import engine
from .engine import TAU2_METHODS, ConvergenceError

__all__ = [
    "RandomEffectsResult",
    "MetaRegressionResult",
    "SubgroupResult",
    "PermutationResult",
    "common_effect",
    "random_effects",
    "meta_regression",
    "subgroup_analysis",
    "permutation_test",
    "design_matrix",
    "ConvergenceError",
]

TESTS = ("z", "knha")


# ---------------------------------------------------------------------------------------------
# input checks


def check_yi_vi(yi, vi, who: str, min_k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate effect sizes and sampling variances; return float arrays."""
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise ValueError(f"{who}: yi has {y.size} values but vi has {v.size}")
    for name, a in (("yi", y), ("vi", v)):
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(
                f"{who}: {name} contains missing or infinite values at positions "
                f"{np.flatnonzero(bad)[:10].tolist()}"
            )
    if (v <= 0).any():
        raise ValueError(
            f"{who}: sampling variances vi must be positive; non-positive at positions "
            f"{np.flatnonzero(v <= 0)[:10].tolist()}"
        )
    if y.size < min_k:
        raise ValueError(f"{who}: needs at least {min_k} effect sizes, got k = {y.size}")
    return y, v


def _check_options(method: str, test: str, level: float, who: str) -> None:
    if method not in TAU2_METHODS and method != "FE":
        raise ValueError(f"{who}: unknown method {method!r}; use one of {TAU2_METHODS + ('FE',)}")
    if test not in TESTS:
        raise ValueError(f"{who}: unknown test {test!r}; use 'z' or 'knha'")
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must lie in (0, 1), got {level}")


def design_matrix(mods: pd.DataFrame, formula: str) -> pd.DataFrame:
    """Model matrix from a formula (formulaic), intercept first, with clear errors for NaN."""
    from formulaic import model_matrix

    if not isinstance(mods, pd.DataFrame):
        raise TypeError("mods must be a pandas DataFrame")
    f = formula.strip()
    if not f.startswith("~"):
        f = "~ " + f
    used = [c for c in mods.columns if c in f]
    for c in used:
        miss = mods[c].isna().to_numpy()
        if miss.any():
            rows = np.flatnonzero(miss)[:10].tolist()
            raise ValueError(f"moderator column {c!r} has missing values at rows {rows}")
    mm = model_matrix(f, mods, na_action="raise")
    X = pd.DataFrame(np.asarray(mm, dtype=float), columns=list(mm.columns), index=mods.index)
    if np.linalg.matrix_rank(X.to_numpy()) < X.shape[1]:
        raise ValueError(f"the design matrix of {formula!r} is not of full rank (redundant moderators)")
    return X


# ---------------------------------------------------------------------------------------------
# the shared fit (batched; one fit is a batch of one)


@dataclass
class _Fit:
    beta: np.ndarray  # (B, p)
    vb: np.ndarray  # (B, p, p)
    tau2: np.ndarray  # (B,)
    QE: np.ndarray  # (B,)
    trP_fe: np.ndarray  # (B,)
    s2w: np.ndarray  # (B,) Knapp-Hartung scale (1 under z)


def _fit_batch(Y, V, X, method: str, test: str, tau2=None) -> _Fit:
    """Fit B meta-regressions at once. Y, V: (B, k); X: (B, k, p)."""
    B, k = Y.shape
    p = X.shape[2]
    zero = np.zeros(B)
    fe = engine.wls(Y, V, X, zero)
    (trP_fe,) = engine._trace_terms(X, fe, 1)
    if tau2 is not None:
        t2 = np.broadcast_to(np.asarray(tau2, float), (B,)).copy()
    elif method == "FE":
        t2 = zero
    else:
        t2 = engine.tau2_estimate(Y, V, X, method)
    f = fe if method == "FE" and tau2 is None else engine.wls(Y, V, X, t2)
    vb = f.Ainv
    s2w = np.ones(B)
    if test == "knha":
        if k - p < 1:
            raise ValueError("Knapp-Hartung adjustment needs k > p")
        s2w = f.Q / (k - p)
        vb = vb * s2w[:, None, None]
    return _Fit(beta=f.beta, vb=vb, tau2=t2, QE=fe.Q, trP_fe=trP_fe, s2w=s2w)


# scipy.special's distribution functions: the same values as scipy.stats without its
# per-call overhead (which dominated a single fit).
def _crit(test: str, level: float, df: float) -> float:
    q = 1 - (1 - level) / 2
    return float(special.ndtri(q) if test == "z" else special.stdtrit(df, q))


def _pvals(stat, test: str, df: float):
    a = -np.abs(stat)
    return 2 * (special.ndtr(a) if test == "z" else special.stdtr(df, a))


def _chi2_sf(x, df):
    return special.chdtrc(df, x)


def _het(tau2, QE, trP_fe, k, p, method):
    if method == "FE":
        I2 = np.where(QE > 0, np.maximum(0.0, 100 * (QE - (k - p)) / QE), 0.0)
        H2 = QE / (k - p) if k > p else np.full_like(QE, np.nan)
        return I2, H2
    vt = (k - p) / trP_fe  # typical within-study variance
    return 100 * tau2 / (vt + tau2), tau2 / vt + 1


def _fmt(x, d=4) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (int, np.integer)):
        return str(x)
    if isinstance(x, (float, np.floating)):
        if x != 0 and abs(x) < 10 ** (-d):
            return f"{x:.2e}"
        return f"{x:.{d}f}"
    return html.escape(str(x))


def _df_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda x: _fmt(x), escape=True, border=0)


# ---------------------------------------------------------------------------------------------
# random / common effect


@dataclass(frozen=True, repr=False)
class RandomEffectsResult:
    """A fitted random-effects (or common-effect) model without moderators.

    Attributes follow metafor: ``estimate`` (metafor's ``b``), ``se``, ``zval`` (a t value
    under Knapp-Hartung), ``pval``, ``ci_lb``, ``ci_ub``, ``pi_lb``, ``pi_ub``, ``tau2``,
    ``tau2_ci_lb``, ``tau2_ci_ub`` (Q-profile), ``I2`` (percent), ``H2``, ``Q`` (= ``QE``),
    ``Q_p``, ``k``. Estimates are on the scale of ``yi``; :meth:`summary` adds r for
    ``measure="ZCOR"``.
    """

    estimate: float
    se: float
    zval: float
    pval: float
    ci_lb: float
    ci_ub: float
    pi_lb: float
    pi_ub: float
    tau2: float
    I2: float
    H2: float
    Q: float
    Q_p: float
    k: int
    method: str
    test: str
    level: float
    measure: str
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    dfs: float = float("inf")
    labels: tuple = ()
    tau2_fixed: bool = False

    @cached_property
    def logLik(self) -> float:
        """(Restricted) log-likelihood at the estimate, for ML, REML and FE fits (else NaN)."""
        if self.method not in ("ML", "REML", "FE"):
            return float("nan")
        X = np.ones((1, self.k, 1))
        return float(engine.loglik(self.yi[None], self.vi[None], X, np.array([self.tau2]),
                                 self.method == "REML")[0])

    @cached_property
    def _tau2_ci(self) -> tuple[float, float]:
        # computed on first use: two root solves cost more than the fit itself
        if self.method == "FE" or self.tau2_fixed:
            return float("nan"), float("nan")
        lb, ub = engine.tau2_qprofile_ci(self.yi[None], self.vi[None], np.ones((1, self.k, 1)),
                                       self.level)
        return float(lb[0]), float(ub[0])

    @property
    def tau2_ci_lb(self) -> float:
        """Lower bound of the Q-profile CI for tau^2 (Viechtbauer 2007)."""
        return self._tau2_ci[0]

    @property
    def tau2_ci_ub(self) -> float:
        """Upper bound of the Q-profile CI for tau^2 (Viechtbauer 2007)."""
        return self._tau2_ci[1]

    @property
    def QE(self) -> float:
        return self.Q

    @property
    def QE_p(self) -> float:
        return self.Q_p

    @property
    def tau(self) -> float:
        return float(np.sqrt(self.tau2))

    @property
    def weights(self) -> np.ndarray:
        """Model weights in percent (metafor's ``weights()``)."""
        w = 1.0 / (self.vi + self.tau2)
        return 100 * w / w.sum()

    @property
    def r(self) -> float:
        """The pooled estimate back-transformed to r (only for measure ZCOR)."""
        self._need_zcor()
        return float(np.tanh(self.estimate))

    def _need_zcor(self):
        if self.measure != "ZCOR":
            raise ValueError("back-transformation to r applies only to measure='ZCOR'")

    def summary(self) -> pd.DataFrame:
        """One tidy row: estimate, se, statistic, pval, CI and PI (and r columns for ZCOR)."""
        row = {
            "model": "common effect" if self.method == "FE" else f"random effects ({self.method})",
            "k": self.k,
            "estimate": self.estimate,
            "se": self.se,
            "zval" if self.test == "z" else "tval": self.zval,
            "pval": self.pval,
            "ci_lb": self.ci_lb,
            "ci_ub": self.ci_ub,
            "pi_lb": self.pi_lb,
            "pi_ub": self.pi_ub,
        }
        if self.measure == "ZCOR":
            row.update(
                r=np.tanh(self.estimate),
                r_ci_lb=np.tanh(self.ci_lb),
                r_ci_ub=np.tanh(self.ci_ub),
                r_pi_lb=np.tanh(self.pi_lb),
                r_pi_ub=np.tanh(self.pi_ub),
            )
        row.update(
            tau2=self.tau2,
            tau2_ci_lb=self.tau2_ci_lb,
            tau2_ci_ub=self.tau2_ci_ub,
            I2=self.I2,
            H2=self.H2,
            Q=self.Q,
            Q_p=self.Q_p,
        )
        return pd.DataFrame([row])

    def __repr__(self) -> str:
        s = self.summary().iloc[0]
        r = f", r = {s['r']:.3f} [{s['r_ci_lb']:.3f}, {s['r_ci_ub']:.3f}]" if "r" in s else ""
        return (
            f"<{type(self).__name__} {s['model']}, k = {self.k}: estimate = {self.estimate:.4f} "
            f"(se {self.se:.4f}, p = {self.pval:.3g}){r}; tau2 = {self.tau2:.4f}, "
            f"I2 = {self.I2:.1f}%, Q = {self.Q:.2f} (p = {self.Q_p:.3g})>"
        )

    def _repr_html_(self) -> str:
        s = self.summary()
        head = f"<b>{html.escape(str(s['model'][0]))}</b>, k = {self.k}, test = {self.test}"
        return f"<div>{head}{_df_html(s)}</div>"


def _uni_result(y, v, method, test, level, measure, tau2=None) -> RandomEffectsResult:
    k = y.size
    Y, V, X = y[None], v[None], np.ones((1, k, 1))
    f = _fit_batch(Y, V, X, method, test, tau2)
    b, se = float(f.beta[0, 0]), float(np.sqrt(f.vb[0, 0, 0]))
    dfs = float(k - 1) if test == "knha" else float("inf")
    # se = 0 only under Knapp-Hartung with identical estimates (Q = 0): z is undefined there
    zval = b / se if se > 0 else (float("nan") if b == 0 else float(np.sign(b)) * np.inf)
    crit = _crit(test, level, dfs)
    t2 = float(f.tau2[0])
    pi_se = np.sqrt(se**2 + t2)
    I2, H2 = _het(f.tau2, f.QE, f.trP_fe, k, 1, method)
    Q = float(f.QE[0])
    Q_p = float(_chi2_sf(Q, k - 1)) if k > 1 else float("nan")
    return RandomEffectsResult(
        estimate=b,
        se=se,
        zval=zval,
        pval=float(_pvals(zval, test, dfs)),
        ci_lb=b - crit * se,
        ci_ub=b + crit * se,
        pi_lb=b - crit * pi_se,
        pi_ub=b + crit * pi_se,
        tau2=t2,
        I2=float(I2[0]),
        H2=float(H2[0]),
        Q=Q,
        Q_p=Q_p,
        k=k,
        method=method,
        test=test,
        level=level,
        measure=measure,
        yi=y,
        vi=v,
        dfs=dfs,
        tau2_fixed=tau2 is not None,
    )


def random_effects(
    yi: Sequence[float],
    vi: Sequence[float],
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    measure: str = "ZCOR",
    tau2: float | None = None,
    labels: Sequence | None = None,
) -> RandomEffectsResult:
    """Random-effects model (metafor's ``rma(yi, vi, method=, test=)``).

    Parameters
    ----------
    yi, vi : effect sizes and their sampling variances (Fisher's z and 1/(n-3) for r).
    method : tau^2 estimator, one of DL, HE, HS, SJ, ML, REML, EB, PM (see module docstring
        for the papers), or FE for the common-effect model.
    test : "z" (normal) or "knha" (Knapp & Hartung 2003: t with k - 1 df and scaled SE).
    level : confidence level of the CI, PI and the Q-profile CI for tau^2.
    measure : "ZCOR" (back-transform to r in summaries) or "GEN".
    tau2 : fix tau^2 at this value instead of estimating it.
    labels : study labels (used by forest plots and leave-one-out tables).
    """
    who = "random_effects" if method != "FE" else "common_effect"
    _check_options(method, test, level, who)
    y, v = check_yi_vi(yi, vi, who, min_k=1 if method == "FE" else 2)
    res = _uni_result(y, v, method, test, level, measure, tau2)
    if labels is not None:
        labels = tuple(str(x) for x in labels)
        if len(labels) != y.size:
            raise ValueError(f"{who}: {len(labels)} labels for {y.size} effects")
        object.__setattr__(res, "labels", labels)
    return res


def common_effect(
    yi: Sequence[float],
    vi: Sequence[float],
    test: str = "z",
    level: float = 0.95,
    measure: str = "ZCOR",
) -> RandomEffectsResult:
    """Common-effect (fixed-effect) model: inverse-variance weighted mean (metafor ``method="FE"``;
    Hedges & Olkin 1985). Heterogeneity: I^2 = (Q - df)/Q and H^2 = Q/df (Higgins & Thompson 2002)."""
    return random_effects(yi, vi, method="FE", test=test, level=level, measure=measure)


# ---------------------------------------------------------------------------------------------
# meta-regression


@dataclass(frozen=True, repr=False)
class MetaRegressionResult:
    """A fitted mixed-effects meta-regression (metafor's ``rma(yi, vi, mods=)``).

    ``coef``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub`` are arrays ordered as the design
    matrix columns (intercept first, names in ``coef_names``); ``QM``/``QM_p`` is the omnibus test
    of all coefficients but the intercept (an F with ``QM_df`` under Knapp-Hartung), ``QE``/``QE_p``
    the test for residual heterogeneity, ``tau2`` the residual heterogeneity and ``R2`` the
    pseudo-R^2 in percent (Raudenbush 2009): 100 * (tau2_0 - tau2) / tau2_0, floored at 0.
    """

    coef: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vb: np.ndarray
    coef_names: tuple
    QM: float
    QM_p: float
    QM_df: tuple
    QE: float
    QE_p: float
    tau2: float
    I2: float
    H2: float
    R2: float
    k: int
    p: int
    method: str
    test: str
    level: float
    measure: str
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    formula: str = ""
    dfs: float = float("inf")
    logLik: float = float("nan")

    def summary(self) -> pd.DataFrame:
        """One row per coefficient: term, estimate, se, statistic, pval, ci_lb, ci_ub."""
        return pd.DataFrame(
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

    def heterogeneity(self) -> pd.DataFrame:
        """Omnibus and residual-heterogeneity tests in one tidy row."""
        return pd.DataFrame(
            [
                {
                    "k": self.k,
                    "QM": self.QM,
                    "QM_df": "/".join(str(int(d)) for d in self.QM_df),
                    "QM_p": self.QM_p,
                    "QE": self.QE,
                    "QE_df": self.k - self.p,
                    "QE_p": self.QE_p,
                    "tau2": self.tau2,
                    "I2": self.I2,
                    "R2": self.R2,
                }
            ]
        )

    def predict(self, newX) -> pd.DataFrame:
        """Predicted values (and r for ZCOR) with CI for rows of a design matrix."""
        Xn = np.atleast_2d(np.asarray(newX, float))
        pred = Xn @ self.coef
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vb, Xn))
        crit = _crit(self.test, self.level, self.dfs)
        out = pd.DataFrame(
            {"pred": pred, "se": se, "ci_lb": pred - crit * se, "ci_ub": pred + crit * se}
        )
        if self.measure == "ZCOR":
            for c in ("pred", "ci_lb", "ci_ub"):
                out["r_" + c] = np.tanh(out[c])
        return out

    def __repr__(self) -> str:
        return (
            f"<MetaRegressionResult {self.formula or ''} ({self.method}, test={self.test}), "
            f"k = {self.k}: QM = {self.QM:.3f} (p = {self.QM_p:.3g}), tau2 = {self.tau2:.4f}, "
            f"R2 = {self.R2:.1f}%>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Meta-regression</b> {html.escape(self.formula)} ({self.method}, "
            f"test = {self.test}), k = {self.k}"
        )
        return f"<div>{head}{_df_html(self.summary())}{_df_html(self.heterogeneity())}</div>"


def _reg_from_fit(f: _Fit, b: int, y, v, X, names, method, test, level, measure, formula,
                  tau2_0: float | None) -> MetaRegressionResult:
    k, p = X.shape
    dfs = float(k - p) if test == "knha" else float("inf")
    beta, vb = f.beta[b], f.vb[b]
    se = np.sqrt(np.diag(vb))
    zval = beta / se
    crit = _crit(test, level, dfs)
    btt = np.arange(1, p) if p > 1 else np.arange(0, 1)
    m = btt.size
    QM = float(beta[btt] @ np.linalg.solve(vb[np.ix_(btt, btt)], beta[btt]))
    if test == "knha":
        QM = QM / m
        QM_p = float(special.fdtrc(m, k - p, QM))
        QM_df = (m, k - p)
    else:
        QM_p = float(_chi2_sf(QM, m))
        QM_df = (m,)
    QE = float(f.QE[b])
    I2, H2 = _het(f.tau2[b : b + 1], f.QE[b : b + 1], f.trP_fe[b : b + 1], k, p, method)
    t2 = float(f.tau2[b])
    if tau2_0 is None or method == "FE":
        R2 = float("nan")
    else:
        R2 = 0.0 if tau2_0 <= 0 else max(0.0, 100 * (tau2_0 - t2) / tau2_0)
    return MetaRegressionResult(
        coef=beta.copy(),
        se=se,
        zval=zval,
        pval=_pvals(zval, test, dfs),
        ci_lb=beta - crit * se,
        ci_ub=beta + crit * se,
        vb=vb.copy(),
        coef_names=tuple(names),
        QM=QM,
        QM_p=QM_p,
        QM_df=QM_df,
        QE=QE,
        QE_p=float(_chi2_sf(QE, k - p)),
        tau2=t2,
        I2=float(I2[0]),
        H2=float(H2[0]),
        R2=R2,
        k=k,
        p=p,
        method=method,
        test=test,
        level=level,
        measure=measure,
        yi=y,
        vi=v,
        X=X,
        formula=formula,
        dfs=dfs,
    )


def meta_regression(
    yi: Sequence[float],
    vi: Sequence[float],
    mods: pd.DataFrame | np.ndarray | None = None,
    formula: str | None = None,
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    measure: str = "ZCOR",
) -> MetaRegressionResult:
    """Mixed-effects meta-regression (metafor's ``rma(yi, vi, mods=~..., method=, test=)``).

    ``mods`` is a DataFrame with ``formula`` (formulaic/patsy syntax, e.g.
    ``"~ C(modality) + year"``), or a numeric design matrix without formula (an intercept column
    is added in front). Coefficients are ordered as the design matrix columns, intercept first.
    Tests: Wald-type z and chi-square QM, or Knapp & Hartung (2003) t and F.
    """
    who = "meta_regression"
    _check_options(method, test, level, who)
    y, v = check_yi_vi(yi, vi, who)
    if mods is None:
        raise ValueError("meta_regression: give mods (a DataFrame with a formula, or a matrix)")
    if formula is not None:
        Xdf = design_matrix(mods if isinstance(mods, pd.DataFrame) else pd.DataFrame(mods), formula)
        X, names = Xdf.to_numpy(), list(Xdf.columns)
    else:
        M = np.asarray(mods, dtype=float)
        M = M[:, None] if M.ndim == 1 else M
        if not np.isfinite(M).all():
            raise ValueError("meta_regression: mods contains missing or infinite values")
        X = np.column_stack([np.ones(len(M)), M])
        names = ["intrcpt"] + (
            [str(c) for c in mods.columns] if isinstance(mods, pd.DataFrame)
            else [f"mod{j + 1}" for j in range(M.shape[1])]
        )
        formula = ""
    if X.shape[0] != y.size:
        raise ValueError(f"{who}: mods has {X.shape[0]} rows but yi has {y.size}")
    k, p = X.shape
    if k - p < 1:
        raise ValueError(f"{who}: k = {k} effects cannot fit {p} coefficients with residual df")
    f = _fit_batch(y[None], v[None], X[None], method, test)
    tau2_0 = None
    if method != "FE":
        tau2_0 = float(engine.tau2_estimate(y[None], v[None], np.ones((1, k, 1)), method)[0])
    res = _reg_from_fit(f, 0, y, v, X, names, method, test, level, measure, formula or "", tau2_0)
    if method in ("ML", "REML", "FE"):
        ll = float(engine.loglik(y[None], v[None], X[None], f.tau2, method == "REML")[0])
        object.__setattr__(res, "logLik", ll)
    return res


# ---------------------------------------------------------------------------------------------
# subgroups


@dataclass(frozen=True, repr=False)
class SubgroupResult:
    """Separate random-effects fits per subgroup and the test of subgroup differences.

    ``Q_between`` (metafor's QM of a common-effect model on the subgroup estimates) has
    ``df_between`` = groups - 1 degrees of freedom (Borenstein et al. 2009, ch. 19).
    """

    groups: dict
    Q_between: float
    df_between: int
    Q_between_p: float
    moderator: str
    measure: str

    def summary(self) -> pd.DataFrame:
        rows = []
        for g, res in self.groups.items():
            s = res.summary()
            s.insert(0, "subgroup", g)
            rows.append(s)
        return pd.concat(rows, ignore_index=True)

    def __repr__(self) -> str:
        return (
            f"<SubgroupResult by {self.moderator}: {len(self.groups)} groups, Q_between = "
            f"{self.Q_between:.3f} (df = {self.df_between}, p = {self.Q_between_p:.3g})>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Subgroups by {html.escape(self.moderator)}</b>: Q<sub>between</sub> = "
            f"{self.Q_between:.3f} (df = {self.df_between}, p = {_fmt(self.Q_between_p)})"
        )
        return f"<div>{head}{_df_html(self.summary())}</div>"


def subgroup_analysis(
    yi, vi, groups, method: str = "REML", test: str = "z", level: float = 0.95,
    measure: str = "ZCOR", min_k: int = 2, moderator: str = "group",
) -> SubgroupResult:
    """Random-effects model per subgroup (separate tau^2) and Q-between test of the subgroup
    estimates (Borenstein et al. 2009, ch. 19, "separate estimates of tau^2").

    Subgroups with fewer than ``min_k`` effects are left out of the test; the result says so
    through the group list.
    """
    y, v = check_yi_vi(yi, vi, "subgroup_analysis")
    g = pd.Series(list(groups)).astype(str).to_numpy()
    if g.size != y.size:
        raise ValueError(f"subgroup_analysis: groups has {g.size} values but yi has {y.size}")
    fits = {}
    for lev in pd.unique(g):
        m = g == lev
        if m.sum() >= min_k:
            fits[lev] = random_effects(y[m], v[m], method, test, level, measure)
    if len(fits) < 2:
        raise ValueError("subgroup_analysis: needs at least two subgroups with enough effects")
    est = np.array([r.estimate for r in fits.values()])
    se = np.array([r.se for r in fits.values()])
    ce = random_effects(est, se**2, method="FE", measure="GEN")
    return SubgroupResult(
        groups=fits, Q_between=ce.Q, df_between=len(fits) - 1, Q_between_p=ce.Q_p,
        moderator=moderator, measure=measure,
    )


# ---------------------------------------------------------------------------------------------
# permutation test


@dataclass(frozen=True, repr=False)
class PermutationResult:
    """Permutation p-values for a meta-regression (Higgins & Thompson 2004, Stat Med
    23:1663-1682, doi:10.1002/sim.1752; Viechtbauer et al. 2015, Psychol Methods 20:360-374,
    doi:10.1037/met0000023). p = (1 + #{perm >= observed}) / (1 + n_perm) (Phipson & Smyth 2010)."""

    QM: float
    QM_p: float
    coef_names: tuple
    zval: np.ndarray
    pval: np.ndarray
    n_perm: int
    seed: int | None

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"term": list(self.coef_names), "zval": self.zval, "pval_perm": self.pval}
        )

    def __repr__(self) -> str:
        return f"<PermutationResult {self.n_perm} permutations: QM p = {self.QM_p:.4f}>"

    def _repr_html_(self) -> str:
        head = f"<b>Permutation test</b> ({self.n_perm} permutations): QM p = {self.QM_p:.4f}"
        return f"<div>{head}{_df_html(self.summary())}</div>"


def permutation_test(
    reg: MetaRegressionResult, n_perm: int = 1000, seed: int | None = 0, batch: int = 250
) -> PermutationResult:
    """Permutation test of a meta-regression: rows of the moderator matrix are shuffled against
    (yi, vi), every permuted model is refitted with the same estimator and test, all at once
    (batched Fisher scoring)."""
    if not isinstance(reg, MetaRegressionResult):
        raise TypeError("permutation_test needs a MetaRegressionResult")
    if reg.p < 2:
        raise ValueError("permutation_test: the model has no moderators to permute")
    rng = np.random.default_rng(seed)
    y, v, X = reg.yi, reg.vi, reg.X
    k, p = X.shape
    btt = np.arange(1, p)
    QM_all, Z_all = [], []
    done = 0
    while done < n_perm:
        nb = min(batch, n_perm - done)
        idx = np.argsort(rng.random((nb, k)), axis=1)
        Xb = X[idx]
        f = _fit_batch(np.broadcast_to(y, (nb, k)), np.broadcast_to(v, (nb, k)), Xb,
                       reg.method, reg.test)
        se = np.sqrt(np.einsum("bii->bi", f.vb))
        Z_all.append(f.beta / se)
        sub = f.vb[:, btt][:, :, btt]
        bb = f.beta[:, btt]
        qm = np.einsum("bi,bi->b", bb, np.linalg.solve(sub, bb[..., None])[..., 0])
        QM_all.append(qm / btt.size if reg.test == "knha" else qm)
        done += nb
    QM_perm = np.concatenate(QM_all)
    Z = np.concatenate(Z_all)
    tol = 1e-10 * max(1.0, abs(reg.QM))
    QM_p = (1 + np.sum(QM_perm >= reg.QM - tol)) / (1 + n_perm)
    pv = (1 + np.sum(np.abs(Z) >= np.abs(reg.zval) - 1e-10, axis=0)) / (1 + n_perm)
    return PermutationResult(
        QM=reg.QM, QM_p=float(QM_p), coef_names=reg.coef_names, zval=reg.zval, pval=pv,
        n_perm=n_perm, seed=seed,
    )
