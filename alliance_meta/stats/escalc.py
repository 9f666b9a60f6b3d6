"""Effect sizes: correlations, Fisher's z, and conversions from reported statistics.

Everything here is plain numpy and works element-wise on arrays. Conversions return r on the
scale of the statistic as printed; the study's ``sign`` (positive = stronger alliance goes with
better outcome) is applied by :func:`to_r`.

References
----------
Fisher, R. A. (1921). On the probable error of a coefficient of correlation deduced from a small
    sample. Metron, 1, 3-32.
Rosenthal, R. (1991). Meta-analytic procedures for social research. Sage. doi:10.4135/9781412984997
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). Introduction to
    meta-analysis. Wiley. doi:10.1002/9780470743386 (eq. 7.5; ch. 24 for composites)
Peterson, R. A., & Brown, S. P. (2005). On the use of beta coefficients in meta-analysis. Journal
    of Applied Psychology, 90(1), 175-181. doi:10.1037/0021-9010.90.1.175
Aloe, A. M., & Thompson, C. G. (2013). The synthesis of partial effect sizes. Journal of the
    Society for Social Work and Research, 4(4), 390-405. doi:10.5243/jsswr.2013.24
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = [
    "fisher_z",
    "z_to_r",
    "r_from_t",
    "r_from_F",
    "r_from_d",
    "r_from_chi2",
    "r_from_beta",
    "to_r",
    "aggregate",
    "STAT_TYPES",
]

STAT_TYPES = ("r", "t", "F", "d", "chi2", "beta")


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=float)


def fisher_z(r, n) -> tuple[np.ndarray, np.ndarray]:
    """Fisher's r-to-z transform: ``yi = atanh(r)``, ``vi = 1 / (n - 3)`` (Fisher 1921).

    Raises ``ValueError`` for |r| >= 1, n <= 3 or NaN, naming the offending position.
    """
    r, n = np.broadcast_arrays(_arr(r), _arr(n))
    bad = ~np.isfinite(r) | (np.abs(r) >= 1)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"fisher_z: r must lie strictly between -1 and 1 (position {i}: r={r.ravel()[i]})")
    bad = ~np.isfinite(n) | (n <= 3)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"fisher_z: n must be greater than 3 (position {i}: n={n.ravel()[i]})")
    return np.arctanh(r), 1.0 / (n - 3.0)


def z_to_r(z):
    """Back-transform Fisher's z to r (``tanh``); scalars stay scalars."""
    out = np.tanh(_arr(z))
    return float(out) if out.ndim == 0 else out


def r_from_t(t, df):
    """r = t / sqrt(t^2 + df) (Rosenthal 1991). With the residual df of a model with covariates
    this is the partial r (Aloe & Thompson 2013)."""
    t, df = _arr(t), _arr(df)
    return t / np.sqrt(t**2 + df)


def r_from_F(F, df):
    """r = sqrt(F / (F + df)) for an F(1, df) (Rosenthal 1991); the direction comes from ``sign``."""
    F, df = _arr(F), _arr(df)
    return np.sqrt(F / (F + df))


def r_from_d(d, n1=None, n2=None):
    """Point-biserial r from Cohen's d: r = d / sqrt(d^2 + a), a = (n1+n2)^2/(n1 n2), a = 4 when
    group sizes are unknown (Borenstein et al. 2009, eq. 7.5)."""
    d = _arr(d)
    if n1 is None or n2 is None:
        a = np.full_like(d, 4.0)
    else:
        n1, n2 = _arr(n1), _arr(n2)
        a = np.where(np.isfinite(n1) & np.isfinite(n2), (n1 + n2) ** 2 / (n1 * n2), 4.0)
    return d / np.sqrt(d**2 + a)


def r_from_chi2(chi2, n):
    """phi = sqrt(chi2 / n) for a 1-df chi-square (Rosenthal 1991); direction from ``sign``."""
    return np.sqrt(_arr(chi2) / _arr(n))


def r_from_beta(beta):
    """Approximate r from a standardised beta (Peterson & Brown 2005): r = .98 beta + .05 lambda,
    with lambda = 1 when beta >= 0 and 0 when beta < 0.

    ``beta`` must be on the ALIGNED scale (positive = stronger alliance goes with better outcome):
    the .05 shifts r towards the positive direction of the meta-analysis, so it must not depend
    on how a study happened to score its outcome. :func:`to_r` aligns before converting.
    Approximate; the authors recommend it only for |beta| <= .5.
    """
    b = _arr(beta)
    return 0.98 * b + 0.05 * (b >= 0)


def to_r(stat_type, stat_value, n, df=None, n1=None, n2=None, sign=None) -> np.ndarray:
    """Convert reported statistics to r, element-wise, then multiply by ``sign``.

    ``stat_type`` is one of :data:`STAT_TYPES` per element. F and chi2 must be >= 0 (their
    direction is carried by ``sign`` alone). A beta is aligned first (multiplied by ``sign``)
    and converted on the aligned scale (:func:`r_from_beta`), so two studies with the same
    aligned beta get the same r whichever direction their outcome was scored in.
    """
    st = np.asarray(stat_type, dtype=object).ravel()
    val = _arr(stat_value).ravel()
    n_ = _arr(n).ravel()
    size = st.size

    def _opt(x):
        return np.full(size, np.nan) if x is None else _arr(x).ravel()

    df_, n1_, n2_ = _opt(df), _opt(n1), _opt(n2)
    sg = np.ones(size) if sign is None else _arr(sign).ravel()
    out = np.full(size, np.nan)
    for kind, fn in (
        ("r", lambda m: val[m]),
        ("t", lambda m: r_from_t(val[m], df_[m])),
        ("F", lambda m: r_from_F(val[m], df_[m])),
        ("d", lambda m: r_from_d(val[m], n1_[m], n2_[m])),
        ("chi2", lambda m: r_from_chi2(val[m], n_[m])),
        ("beta", lambda m: r_from_beta(val[m] * sg[m])),  # already aligned: not signed below
    ):
        m = st == kind
        if m.any():
            out[m] = fn(m)
    unknown = ~np.isin(st, STAT_TYPES)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise ValueError(f"to_r: unknown stat_type {st[i]!r} at position {i}; use one of {STAT_TYPES}")
    return np.where(st == "beta", out, out * sg)


def aggregate(
    yi: Sequence[float],
    vi: Sequence[float],
    cluster: Sequence,
    rho: float = 0.5,
) -> pd.DataFrame:
    """Combine dependent effects of one sample into one composite (Borenstein et al. 2009, ch. 24).

    The composite is the unweighted mean of the m effects, with variance
    ``(1/m)^2 * (sum(v_i) + sum_{i != j} rho * sqrt(v_i v_j))`` under an assumed common
    inter-correlation ``rho`` (default .5). Equals metafor's
    ``aggregate(..., struct="CS", rho=rho, weighted=FALSE)``.

    Returns a DataFrame with one row per cluster (in order of first appearance): cluster, yi, vi, m.
    """
    y, v = _arr(yi), _arr(vi)
    if not -1 <= rho <= 1:
        raise ValueError(f"aggregate: rho must lie in [-1, 1], got {rho}")
    codes, uniq = pd.factorize(pd.Series(list(cluster)), sort=False)
    m = np.bincount(codes).astype(float)
    sy = np.bincount(codes, weights=y)
    s = np.sqrt(v)
    ss = np.bincount(codes, weights=s)
    sv = np.bincount(codes, weights=v)
    # sum_{i != j} sqrt(v_i v_j) = (sum sqrt v)^2 - sum v
    var = (sv + rho * (ss**2 - sv)) / m**2
    return pd.DataFrame({"cluster": uniq, "yi": sy / m, "vi": var, "m": m.astype(int)})


def partial_r_to_z(r, n, n_covariates) -> tuple[np.ndarray, np.ndarray]:
    """Fisher's z of a partial correlation and its sampling variance, as metafor's
    ``escalc(measure = "ZPCOR")``: ``yi = atanh(r)``, ``vi = 1 / (n - m - 1)`` with
    ``m = n_covariates + 1`` predictors (alliance and its covariates), i.e.
    ``vi = 1 / (n - n_covariates - 2)``, the residual df of the model (Aloe & Thompson 2013).

    Raises ``ValueError`` for |r| >= 1 or a non-positive residual df, naming the position.
    """
    r, n, q = np.broadcast_arrays(_arr(r), _arr(n), _arr(n_covariates))
    dfr = n - q - 2.0
    bad = ~np.isfinite(r) | (np.abs(r) >= 1) | ~np.isfinite(dfr) | (dfr <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad.ravel())[0])
        raise ValueError(f"partial_r_to_z: need |r| < 1 and n - n_covariates - 2 > 0 (position {i}: "
                         f"r={r.ravel()[i]}, n={n.ravel()[i]}, n_covariates={q.ravel()[i]})")
    return np.arctanh(r), 1.0 / dfr
