"""Univariate meta-analytic models: common effect, random effects and meta-regression.

Names follow R's metafor (Viechtbauer 2010, J Stat Softw 36(3), doi:10.18637/jss.v036.i03) with
dots as underscores: ``tau2``, ``I2`` (percent), ``H2``, ``QE``, ``QM``, ``ci_lb``.
Estimates stay on the scale of ``yi`` (Fisher's z for correlations); summaries add r.
Subgroup fits live in :mod:`.subgroup`, permutation tests in :mod:`.permutation`; both are
re-exported here.

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

Knapp & Hartung (2003), Stat Med 22:2693-2710, doi:10.1002/sim.1482 (``test="knha"``, or
``test="t"``, metafor's newer name for the same adjustment in ``rma.uni``).
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

from . import engine, inference
from .engine import TAU2_METHODS, ConvergenceError
from .results import CoefResult, coef_fields, df_html, fmt

__all__ = [
    "RandomEffectsResult",
    "MetaRegressionResult",
    "common_effect",
    "random_effects",
    "meta_regression",
    "design_matrix",
    "ConvergenceError",
]

TESTS = inference.TESTS
# kept for modules that import the old private names
_df_html, _fmt = df_html, fmt


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
    inference.check_test(test, who)
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must lie in (0, 1), got {level}")


def redundant_columns(X: np.ndarray, names: Sequence[str]) -> list[str]:
    """Names of the columns that are linear combinations of the columns before them."""
    out, rank = [], 0
    for j in range(X.shape[1]):
        r = np.linalg.matrix_rank(X[:, : j + 1])
        if r == rank:
            out.append(str(names[j]))
        rank = r
    return out


def check_design(X: np.ndarray, names: Sequence[str], who: str, what: str = "") -> None:
    """Raise a ValueError naming the non-finite or redundant columns of a design matrix."""
    bad = [str(n) for n, ok in zip(names, np.isfinite(X).all(axis=0), strict=True) if not ok]
    if bad:
        raise ValueError(f"{who}: the design matrix{what} has missing or infinite values in "
                         f"column(s) {bad}")
    if np.linalg.matrix_rank(X) < X.shape[1]:
        red = redundant_columns(X, names)
        raise ValueError(
            f"{who}: the design matrix{what} is not of full rank: column(s) {red} are linear "
            f"combinations of earlier columns (redundant or constant moderators, or a level "
            f"that coincides with another); drop or recode them"
        )


def design_matrix(mods: pd.DataFrame, formula: str) -> pd.DataFrame:
    """Model matrix from a formula (formulaic), intercept first.

    Raises a ValueError naming the column(s) when a variable of the formula has missing or
    non-finite values, and when the design is rank-deficient. The variables checked are those
    formulaic parses from the formula (``Formula(f).required_variables``), so a column whose
    name merely occurs inside another name or a function call is not mistaken for one.
    """
    from formulaic import Formula, model_matrix

    if not isinstance(mods, pd.DataFrame):
        raise TypeError("mods must be a pandas DataFrame")
    f = formula.strip()
    if not f.startswith("~"):
        f = "~ " + f
    used = sorted(v for v in Formula(f).required_variables if v in mods.columns)
    problems = []
    for c in used:
        col = mods[c]
        miss = col.isna().to_numpy()
        if miss.any():
            problems.append(f"{c!r} has missing values at rows {np.flatnonzero(miss)[:10].tolist()}")
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            inf = np.isinf(col.to_numpy(dtype=float, na_value=0.0))
            if inf.any():
                problems.append(
                    f"{c!r} has infinite values at rows {np.flatnonzero(inf)[:10].tolist()}")
    if problems:
        raise ValueError(f"moderator column(s) in {formula!r}: " + "; ".join(problems))
    mm = model_matrix(f, mods, na_action="raise")
    X = pd.DataFrame(np.asarray(mm, dtype=float), columns=list(mm.columns), index=mods.index)
    check_design(X.to_numpy(), list(X.columns), "design_matrix", f" of {formula!r}")
    return X


def has_intercept(names: Sequence[str]) -> bool:
    """Whether the first design column is the intercept (formulaic's "Intercept", ours
    "intrcpt"); models without one test all coefficients in QM and report no R^2 (metafor)."""
    return len(names) > 0 and str(names[0]) in ("Intercept", "intrcpt")


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


def _fit_batch(Y, V, X, method: str, test: str, tau2=None, need_het: bool = True) -> _Fit:
    """Fit B meta-regressions at once. Y, V: (B, k); X: (B, k, p). ``need_het=False`` skips the
    common-effect fit that only QE, I^2 and H^2 need (permutation tests)."""
    B, k = Y.shape
    p = X.shape[2]
    zero = np.zeros(B)
    if need_het or method == "FE":
        fe = engine.wls(Y, V, X, zero)
        (trP_fe,) = engine._trace_terms(X, fe, 1)
        QE = fe.Q
    else:
        fe, trP_fe, QE = None, np.full(B, np.nan), np.full(B, np.nan)
    if tau2 is not None:
        t2 = np.broadcast_to(np.asarray(tau2, float), (B,)).copy()
    elif method == "FE":
        t2 = zero
    else:
        t2 = engine.tau2_estimate(Y, V, X, method)
    f = fe if method == "FE" and tau2 is None else engine.wls(Y, V, X, t2)
    vb = f.Ainv
    s2w = np.ones(B)
    if inference.uses_t(test):
        if k - p < 1:
            raise ValueError("Knapp-Hartung adjustment needs k > p")
        s2w = f.Q / (k - p)
        vb = vb * s2w[:, None, None]
    return _Fit(beta=f.beta, vb=vb, tau2=t2, QE=QE, trP_fe=trP_fe, s2w=s2w)


def _het(tau2, QE, trP_fe, k, p, method):
    if method == "FE":
        I2 = np.where(QE > 0, np.maximum(0.0, 100 * (QE - (k - p)) / QE), 0.0)
        H2 = QE / (k - p) if k > p else np.full_like(QE, np.nan)
        return I2, H2
    vt = (k - p) / trP_fe  # typical within-study variance
    return 100 * tau2 / (vt + tau2), tau2 / vt + 1


# ---------------------------------------------------------------------------------------------
# random / common effect


@dataclass(frozen=True, repr=False, kw_only=True)
class RandomEffectsResult(CoefResult):
    """A fitted random-effects (or common-effect) model without moderators.

    The coefficient table (:class:`~alliance_meta.stats.results.CoefResult`) has one row, so
    ``estimate`` (metafor's ``b``), ``se``, ``zval``/``tval``, ``pval``, ``ci_lb``, ``ci_ub`` are
    floats. Also: ``pi_lb``, ``pi_ub``, ``tau2``, ``tau2_ci_lb``, ``tau2_ci_ub`` (Q-profile),
    ``I2`` (percent), ``H2``, ``Q`` (= ``QE``), ``Q_p``, ``k``, ``dfs`` (k - 1 under
    Knapp-Hartung, else inf). :meth:`summary` adds r for ``measure="ZCOR"``.
    """

    pi_lb: float
    pi_ub: float
    tau2: float
    I2: float
    H2: float
    Q: float
    Q_p: float
    k: int
    method: str
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
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

    def _model_name(self) -> str:
        return "common effect" if self.method == "FE" else f"random effects ({self.method})"

    def summary(self) -> pd.DataFrame:
        """One tidy row: estimate, se, statistic, pval, CI and PI (and r columns for ZCOR)."""
        row = {"model": self._model_name(), "k": self.k, "estimate": self.estimate, "se": self.se,
               self.stat_name: self.statistic, "pval": self.pval, "ci_lb": self.ci_lb,
               "ci_ub": self.ci_ub, "pi_lb": self.pi_lb, "pi_ub": self.pi_ub}
        if self.measure == "ZCOR":
            row.update(r=np.tanh(self.estimate), r_ci_lb=np.tanh(self.ci_lb),
                       r_ci_ub=np.tanh(self.ci_ub), r_pi_lb=np.tanh(self.pi_lb),
                       r_pi_ub=np.tanh(self.pi_ub))
        row.update(tau2=self.tau2, tau2_ci_lb=self.tau2_ci_lb, tau2_ci_ub=self.tau2_ci_ub,
                   I2=self.I2, H2=self.H2, Q=self.Q, Q_p=self.Q_p)
        return pd.DataFrame([row])

    def _title(self) -> str:
        return f"{self._model_name()}, k = {self.k}"

    def __repr__(self) -> str:
        s = self.summary().iloc[0]
        r = f", r = {s['r']:.3f} [{s['r_ci_lb']:.3f}, {s['r_ci_ub']:.3f}]" if "r" in s else ""
        return (
            f"<{type(self).__name__} {s['model']}, k = {self.k}: estimate = {self.estimate:.4f} "
            f"(se {self.se:.4f}, p = {self.pval:.3g}){r}; tau2 = {self.tau2:.4f}, "
            f"I2 = {self.I2:.1f}%, Q = {self.Q:.2f} (p = {self.Q_p:.3g})>"
        )


def _uni_result(y, v, method, test, level, measure, tau2=None) -> RandomEffectsResult:
    k = y.size
    Y, V, X = y[None], v[None], np.ones((1, k, 1))
    f = _fit_batch(Y, V, X, method, test, tau2)
    dfs = float(k - 1) if inference.uses_t(test) else float("inf")
    table = coef_fields(f.beta[0], f.vb[0], test, level, dfs)
    b, se = float(table["beta"][0]), float(table["se"][0])
    crit = inference.crit(level, dfs)
    t2 = float(f.tau2[0])
    pi_se = np.sqrt(se**2 + t2)
    I2, H2 = _het(f.tau2, f.QE, f.trP_fe, k, 1, method)
    Q = float(f.QE[0])
    Q_p = inference.chi2_sf(Q, k - 1) if k > 1 else float("nan")
    return RandomEffectsResult(
        **table, coef_names=("intrcpt",), test=test, level=level, measure=measure,
        pi_lb=b - crit * pi_se, pi_ub=b + crit * pi_se, tau2=t2, I2=float(I2[0]),
        H2=float(H2[0]), Q=Q, Q_p=Q_p, k=k, method=method, yi=y, vi=v,
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
    test : "z" (normal) or "knha" / "t" (Knapp & Hartung 2003: t with k - 1 df and scaled SE).
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


@dataclass(frozen=True, repr=False, kw_only=True)
class MetaRegressionResult(CoefResult):
    """A fitted mixed-effects meta-regression (metafor's ``rma(yi, vi, mods=)``).

    The coefficient table (``beta``/``coef``, ``se``, ``zval``/``tval``, ``pval``, ``ci_lb``,
    ``ci_ub``, ``vb``) is ordered as the design matrix columns (intercept first, names in
    ``coef_names``). ``QM``/``QM_p`` is the omnibus test of all coefficients but the intercept,
    or of all coefficients in a model without intercept (as metafor's default ``btt``); an F on
    ``QM_df`` = (m, k - p) under Knapp-Hartung. ``QE``/``QE_p`` tests residual heterogeneity,
    ``tau2`` is the residual heterogeneity and ``R2`` the pseudo-R^2 in percent (Raudenbush
    2009): 100 * (tau2_0 - tau2) / tau2_0, floored at 0; NaN for a model without intercept,
    where it has no meaning (metafor does not report it).
    """

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
    method: str
    yi: np.ndarray = field(repr=False)
    vi: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    formula: str = ""
    logLik: float = float("nan")

    @property
    def intercept(self) -> bool:
        """Whether the model has an intercept (its first coefficient)."""
        return has_intercept(self.coef_names)

    def heterogeneity(self) -> pd.DataFrame:
        """Omnibus and residual-heterogeneity tests in one tidy row."""
        return pd.DataFrame([{
            "k": self.k, "QM": self.QM, "QM_df": "/".join(str(int(d)) for d in self.QM_df),
            "QM_p": self.QM_p, "QE": self.QE, "QE_df": self.k - self.p, "QE_p": self.QE_p,
            "tau2": self.tau2, "I2": self.I2, "R2": self.R2,
        }])

    def predict(self, newX) -> pd.DataFrame:
        """Predicted values (and r for ZCOR) with CI for rows of a design matrix."""
        Xn = np.atleast_2d(np.asarray(newX, float))
        pred = Xn @ self.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", Xn, self.vb, Xn))
        crit = inference.crit(self.level, self.dfs)
        out = pd.DataFrame(
            {"pred": pred, "se": se, "ci_lb": pred - crit * se, "ci_ub": pred + crit * se}
        )
        if self.measure == "ZCOR":
            for c in ("pred", "ci_lb", "ci_ub"):
                out["r_" + c] = np.tanh(out[c])
        return out

    def _title(self) -> str:
        return f"Meta-regression {self.formula} ({self.method}), k = {self.k}"

    def __repr__(self) -> str:
        r2 = "" if np.isnan(self.R2) else f", R2 = {self.R2:.1f}%"
        return (
            f"<MetaRegressionResult {self.formula or ''} ({self.method}, test={self.test}), "
            f"k = {self.k}: QM = {self.QM:.3f} (p = {self.QM_p:.3g}), tau2 = {self.tau2:.4f}"
            f"{r2}>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Meta-regression</b> {html.escape(self.formula)} ({self.method}, "
            f"test = {self.test}), k = {self.k}"
        )
        return f"<div>{head}{df_html(self.summary())}{df_html(self.heterogeneity())}</div>"


def qm_coefficients(names: Sequence[str]) -> np.ndarray:
    """metafor's default ``btt``: every coefficient but the intercept, or all of them when the
    model has no intercept (or the intercept is its only coefficient)."""
    p = len(names)
    return np.arange(1, p) if has_intercept(names) and p > 1 else np.arange(p)


def _reg_from_fit(f: _Fit, b: int, y, v, X, names, method, test, level, measure, formula,
                  tau2_0: float | None) -> MetaRegressionResult:
    k, p = X.shape
    dfs = float(k - p) if inference.uses_t(test) else float("inf")
    table = coef_fields(f.beta[b], f.vb[b], test, level, dfs)
    QM, QM_p, QM_df = inference.wald_test(table["beta"], table["vb"], qm_coefficients(names), dfs)
    QE = float(f.QE[b])
    I2, H2 = _het(f.tau2[b : b + 1], f.QE[b : b + 1], f.trP_fe[b : b + 1], k, p, method)
    t2 = float(f.tau2[b])
    if tau2_0 is None or method == "FE" or not has_intercept(names):
        R2 = float("nan")
    else:
        R2 = 0.0 if tau2_0 <= 0 else max(0.0, 100 * (tau2_0 - t2) / tau2_0)
    return MetaRegressionResult(
        **table, coef_names=tuple(names), test=test, level=level, measure=measure, QM=QM,
        QM_p=QM_p, QM_df=tuple(int(d) for d in QM_df), QE=QE, QE_p=inference.chi2_sf(QE, k - p),
        tau2=t2, I2=float(I2[0]), H2=float(H2[0]), R2=R2, k=k, method=method, yi=y, vi=v, X=X,
        formula=formula,
    )


def _mods_matrix(mods, formula: str | None, who: str) -> tuple[np.ndarray, list[str], str]:
    """Design matrix, column names and formula text from a DataFrame + formula or a matrix."""
    if formula is not None:
        Xdf = design_matrix(mods if isinstance(mods, pd.DataFrame) else pd.DataFrame(mods), formula)
        return Xdf.to_numpy(), list(Xdf.columns), formula
    M = np.asarray(mods, dtype=float)
    M = M[:, None] if M.ndim == 1 else M
    cols = ([str(c) for c in mods.columns] if isinstance(mods, pd.DataFrame)
            else [f"mod{j + 1}" for j in range(M.shape[1])])
    X = np.column_stack([np.ones(len(M)), M])
    check_design(X, ["intrcpt", *cols], who, " (mods)")
    return X, ["intrcpt", *cols], ""


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
    ``"~ C(modality) + year"``; ``"~ 0 + C(format)"`` fits one mean per level, and QM then tests
    them all), or a numeric design matrix without formula (an intercept column is added in
    front). Coefficients are ordered as the design matrix columns, intercept first.
    Tests: Wald-type z and chi-square QM, or Knapp & Hartung (2003) t and F ("knha" or "t").
    Missing or non-finite moderators and redundant columns raise a ValueError naming them.
    """
    who = "meta_regression"
    _check_options(method, test, level, who)
    y, v = check_yi_vi(yi, vi, who)
    if mods is None:
        raise ValueError("meta_regression: give mods (a DataFrame with a formula, or a matrix)")
    X, names, formula = _mods_matrix(mods, formula, who)
    if X.shape[0] != y.size:
        raise ValueError(f"{who}: mods has {X.shape[0]} rows but yi has {y.size}")
    k, p = X.shape
    if k - p < 1:
        raise ValueError(f"{who}: k = {k} effects cannot fit {p} coefficients with residual df")
    f = _fit_batch(y[None], v[None], X[None], method, test)
    tau2_0 = None
    if method != "FE" and has_intercept(names):
        tau2_0 = float(engine.tau2_estimate(y[None], v[None], np.ones((1, k, 1)), method)[0])
    res = _reg_from_fit(f, 0, y, v, X, names, method, test, level, measure, formula, tau2_0)
    if method in ("ML", "REML", "FE"):
        ll = float(engine.loglik(y[None], v[None], X[None], f.tau2, method == "REML")[0])
        object.__setattr__(res, "logLik", ll)
    return res


# subgroups and permutation tests have their own modules (which import this one); reached here
# on first use so that ``from alliance_meta.stats.rma import subgroup_analysis`` keeps working
# whichever module is imported first
_MOVED = {"PermutationResult": ".permutation", "permutation_test": ".permutation",
          "SubgroupResult": ".subgroup", "subgroup_analysis": ".subgroup"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name], __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
