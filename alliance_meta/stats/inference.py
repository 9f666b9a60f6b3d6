"""Critical values, p-values and Wald tests: the one place every model takes them from.

A test is either the normal ("z") or a t with ``dfs`` degrees of freedom ("t", or "knha" for
Knapp & Hartung 2003, Stat Med 22:2693-2710, doi:10.1002/sim.1482, which metafor's newer
``test="t"`` names the same way for ``rma.uni``). Functions take ``dfs`` directly: ``inf`` means
the normal, so callers pass ``dfs = inf`` under ``test="z"``. Omnibus tests follow metafor's
``QM``: a chi-square on ``m`` df under z, an F on (``m``, ``dfs``) with ``QM / m`` under t.

scipy.special's distribution functions give the same values as scipy.stats without its per-call
overhead, which dominated a single small fit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

__all__ = [
    "TESTS",
    "check_test",
    "uses_t",
    "stat_name",
    "crit",
    "pvalue",
    "chi2_sf",
    "f_sf",
    "wald_test",
]

TESTS = ("z", "knha", "t")


def check_test(test: str, who: str, allowed: tuple[str, ...] = TESTS) -> str:
    """Return ``test`` if it is one of ``allowed``; otherwise raise a ValueError naming ``who``."""
    if test not in allowed:
        raise ValueError(f"{who}: unknown test {test!r}; use one of {allowed}")
    return test


def uses_t(test: str) -> bool:
    """True for t-based tests ("knha", "t"): statistics are t values with ``dfs`` df."""
    return test != "z"


def stat_name(test: str) -> str:
    """Column name of the test statistic: ``zval`` under z, ``tval`` under t (as metafor prints)."""
    return "tval" if uses_t(test) else "zval"


def crit(level: float, dfs=np.inf):
    """Two-sided critical value for a ``level`` CI: normal when ``dfs`` is infinite, else t.

    ``dfs`` may be an array (one df per coefficient, as with Satterthwaite df); the result then
    is an array of the same shape, otherwise a Python float.
    """
    q = 1 - (1 - level) / 2
    if np.ndim(dfs) == 0:  # the common case, kept cheap: one fit is ~0.1 ms
        d = float(dfs)
        return float(special.ndtri(q) if math.isinf(d) else special.stdtrit(d, q))
    d = np.asarray(dfs, dtype=float)
    inf = np.isinf(d)
    return np.where(inf, special.ndtri(q), special.stdtrit(np.where(inf, 1.0, d), q))


def _lower(x, dfs):
    """P(T <= x) for the normal (``dfs`` infinite) or t distribution, elementwise."""
    if np.ndim(dfs) == 0:
        d = float(dfs)
        return special.ndtr(x) if math.isinf(d) else special.stdtr(d, x)
    d = np.asarray(dfs, dtype=float)
    inf = np.isinf(d)
    return np.where(inf, special.ndtr(x), special.stdtr(np.where(inf, 1.0, d), x))


def pvalue(stat, dfs=np.inf, side: str = "two-sided"):
    """p-value of a z (``dfs`` infinite) or t statistic; ``side`` is "two-sided", "greater" or
    "less". Works elementwise on arrays; a scalar input gives a Python float."""
    if side == "two-sided":
        out = 2 * _lower(-np.abs(stat), dfs)
    elif side == "greater":
        out = _lower(-np.asarray(stat, dtype=float), dfs)
    elif side == "less":
        out = _lower(np.asarray(stat, dtype=float), dfs)
    else:
        raise ValueError(f"pvalue: side must be 'two-sided', 'greater' or 'less', got {side!r}")
    return float(out) if np.ndim(out) == 0 else out


def chi2_sf(x, df):
    """Upper tail of the chi-square distribution (float for scalar input)."""
    out = special.chdtrc(df, x)
    return float(out) if np.ndim(out) == 0 else out


def f_sf(x, df1, df2):
    """Upper tail of the F distribution (float for scalar input)."""
    out = special.fdtrc(df1, df2, x)
    return float(out) if np.ndim(out) == 0 else out


def wald_test(beta, vb, btt, dfs=np.inf) -> tuple[float, float, tuple]:
    """Omnibus Wald test of the coefficients ``btt`` (metafor's ``QM``, ``QMp``, ``QMdf``).

    ``QM = b' V^-1 b`` over the chosen coefficients; chi-square on m df when ``dfs`` is infinite,
    else ``QM / m`` referred to F(m, dfs). Returns (QM, QM_p, QM_df) with QM_df = (m,) or
    (m, dfs).
    """
    idx = np.atleast_1d(np.asarray(btt, dtype=int))
    if idx.size == 0:
        raise ValueError("wald_test: no coefficients to test")
    b = np.asarray(beta, dtype=float)[idx]
    V = np.asarray(vb, dtype=float)[np.ix_(idx, idx)]
    m = idx.size
    QM = float(b @ np.linalg.solve(V, b))
    if np.isinf(dfs):
        return QM, chi2_sf(QM, m), (m,)
    QM /= m
    return QM, f_sf(QM, m, float(dfs)), (m, float(dfs))
