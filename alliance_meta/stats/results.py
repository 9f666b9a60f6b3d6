"""One result base for every model that has coefficients.

:class:`CoefResult` holds metafor's coefficient table (``beta``, ``se``, ``zval``/``tval``,
``pval``, ``ci_lb``, ``ci_ub``, ``vb``, ``dfs``) and gives every model the same ``summary()``
columns (``term``, ``estimate``, ``se``, ``zval`` or ``tval`` as the test says, ``pval``,
``ci_lb``, ``ci_ub``; plus ``r``, ``r_ci_lb``, ``r_ci_ub`` for ``measure="ZCOR"``) and a notebook
``_repr_html_``.

Types follow the number of coefficients, never the model: with ONE coefficient ``estimate``,
``se``, ``zval``/``tval``, ``pval``, ``ci_lb``, ``ci_ub`` (and ``dfs``) are Python floats; with
several they are float arrays ordered as ``coef_names``. ``beta`` (alias ``coef``) is always an
array and ``vb`` always a (p, p) matrix, as in metafor.

Subclasses are frozen dataclasses that add their own fields (keyword-only) and may override
:meth:`summary`, :meth:`_title` and ``__repr__``; :func:`coef_fields` fills the table from
``beta`` and ``vb``.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import inference

__all__ = ["CoefResult", "coef_fields", "fmt", "df_html"]

_INTERCEPT_NAMES = ("intrcpt", "Intercept", "intercept", "estimate")


def fmt(x, d: int = 4) -> str:
    """Format a number for HTML tables (scientific notation below 10^-d, blank for NaN)."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (int, np.integer)):
        return str(x)
    if isinstance(x, (float, np.floating)):
        if x != 0 and abs(x) < 10 ** (-d):
            return f"{x:.2e}"
        return f"{x:.{d}f}"
    return html.escape(str(x))


def df_html(df: pd.DataFrame) -> str:
    """A DataFrame as a plain HTML table with :func:`fmt` numbers."""
    return df.to_html(index=False, float_format=lambda x: fmt(x), escape=True, border=0)


def _as_table_value(a):
    """A Python float for one coefficient, else a float array (the one-type rule)."""
    if isinstance(a, float):
        return a
    arr = np.asarray(a, dtype=float)
    if arr.size == 1:
        return float(arr.reshape(-1)[0])
    return arr.reshape(-1).copy()


def coef_fields(beta, vb, test: str, level: float, dfs=np.inf, se=None) -> dict:
    """The coefficient-table fields of :class:`CoefResult` from estimates and their covariance.

    ``dfs`` is a scalar (inf under z) or one df per coefficient. ``se`` may be given when it is
    not ``sqrt(diag(vb))`` (never the case today; kept for robust variants). A zero SE gives a
    NaN statistic for a zero estimate and an infinite one otherwise (identical studies under
    Knapp-Hartung).
    """
    b = np.array(beta, dtype=float, ndmin=1)
    V = np.array(vb, dtype=float, ndmin=2)
    s = np.sqrt(np.diagonal(V)) if se is None else np.array(se, dtype=float, ndmin=1)
    d = dfs if inference.uses_t(test) else np.inf
    if (s > 0).all():
        stat = b / s
    else:  # only where se = 0: NaN for a zero estimate, else +-inf
        stat = np.where(b == 0, np.nan, np.sign(b) * np.inf)
        pos = s > 0
        stat[pos] = b[pos] / s[pos]
    c = inference.crit(level, d)
    return {"beta": b, "se": s, "statistic": stat, "pval": inference.pvalue(stat, d),
            "ci_lb": b - c * s, "ci_ub": b + c * s, "vb": V, "dfs": d}


@dataclass(frozen=True, repr=False, kw_only=True)
class CoefResult:
    """Coefficient table shared by every model (see the module docstring for the types).

    Fields: ``beta`` (p,), ``se``, ``statistic`` (z or t values; read them as ``zval`` or
    ``tval``), ``pval``, ``ci_lb``, ``ci_ub``, ``vb`` (p, p), ``dfs`` (inf under z), ``coef_names``,
    ``test`` ("z", "knha" or "t"), ``level``, ``measure``.
    """

    beta: np.ndarray
    se: float | np.ndarray
    statistic: float | np.ndarray
    pval: float | np.ndarray
    ci_lb: float | np.ndarray
    ci_ub: float | np.ndarray
    vb: np.ndarray
    dfs: float | np.ndarray = float("inf")
    coef_names: tuple = ("intrcpt",)
    test: str = "z"
    level: float = 0.95
    measure: str = "GEN"

    def __post_init__(self) -> None:
        # one coefficient -> Python floats, several -> arrays; frozen, hence object.__setattr__
        b = np.array(self.beta, dtype=float, ndmin=1).reshape(-1)
        set_ = object.__setattr__
        set_(self, "beta", b)
        set_(self, "vb", np.asarray(self.vb, dtype=float).reshape(b.size, b.size))
        for name in ("se", "statistic", "pval", "ci_lb", "ci_ub"):
            set_(self, name, _as_table_value(getattr(self, name)))
        d = self.dfs
        set_(self, "dfs", float(d) if np.ndim(d) == 0 else _as_table_value(d))
        if len(self.coef_names) != b.size:
            set_(self, "coef_names", tuple(f"b{j}" for j in range(b.size))
                 if b.size > 1 else ("intrcpt",))

    # -- names ----------------------------------------------------------------------------
    @property
    def coef(self) -> np.ndarray:
        """Alias of ``beta`` (always an array, ordered as ``coef_names``)."""
        return self.beta

    @property
    def estimate(self) -> float | np.ndarray:
        """The estimate(s): a float for one coefficient, else an array."""
        return _as_table_value(self.beta)

    @property
    def zval(self) -> float | np.ndarray:
        """The test statistic (a t value under ``test="knha"``/``"t"``, as metafor's ``zval``)."""
        return self.statistic

    @property
    def tval(self) -> float | np.ndarray:
        """The test statistic (same values as ``zval``; named for t-based tests)."""
        return self.statistic

    @property
    def stat_name(self) -> str:
        """``"zval"`` or ``"tval"``: the column name of the statistic in :meth:`summary`."""
        return inference.stat_name(self.test)

    @property
    def p(self) -> int:
        """Number of coefficients."""
        return int(self.beta.size)

    # -- tables ---------------------------------------------------------------------------
    def _r_rows(self) -> np.ndarray:
        """Rows whose estimate is a pooled Fisher z (so tanh gives an r): the only coefficient,
        the intercept, or every coefficient of a model without intercept (cell means)."""
        names = self.coef_names
        if self.p == 1 or names[0] not in _INTERCEPT_NAMES:
            return np.ones(self.p, dtype=bool)
        return np.array([n in _INTERCEPT_NAMES for n in names])

    def coef_table(self) -> pd.DataFrame:
        """One row per coefficient: term, estimate, se, zval/tval, pval, ci_lb, ci_ub, and r,
        r_ci_lb, r_ci_ub for ``measure="ZCOR"`` (NaN for slopes, which are not correlations)."""
        col = lambda a: np.atleast_1d(np.asarray(a, dtype=float))  # noqa: E731
        out = pd.DataFrame(
            {
                "term": list(self.coef_names),
                "estimate": self.beta,
                "se": col(self.se),
                self.stat_name: col(self.statistic),
                "pval": col(self.pval),
                "ci_lb": col(self.ci_lb),
                "ci_ub": col(self.ci_ub),
            }
        )
        if self.measure == "ZCOR":
            rows = self._r_rows()
            for c_out, c_in in (("r", "estimate"), ("r_ci_lb", "ci_lb"), ("r_ci_ub", "ci_ub")):
                out[c_out] = np.where(rows, np.tanh(out[c_in].to_numpy()), np.nan)
        return out

    def summary(self) -> pd.DataFrame:
        """Tidy coefficient table (see :meth:`coef_table`); subclasses add their own columns."""
        return self.coef_table()

    def _title(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        rows = ", ".join(
            f"{n} = {b:.4f} (se {s:.4f}, p = {pv:.3g})"
            for n, b, s, pv in zip(self.coef_names, self.beta, np.atleast_1d(self.se),
                                   np.atleast_1d(self.pval), strict=True)
        )
        return f"<{type(self).__name__} test = {self.test}: {rows}>"

    def _repr_html_(self) -> str:
        head = f"<b>{html.escape(self._title())}</b>, test = {html.escape(self.test)}"
        return f"<div>{head}{df_html(self.summary())}</div>"

