"""APA number formatting in one place, and APA-style HTML tables.

Rules (Publication Manual of the American Psychological Association, 7th ed., 2020, sections
6.36 and 7.21): no leading zero for numbers that cannot exceed 1 in absolute value
(correlations, p values); correlations and test statistics to two decimals; exact p values to
three decimals, with p < .001 below that; thousands separated by commas; a true minus sign.
Heterogeneity variances (tau^2, sigma^2) are often below .01 in this literature, so they get three
decimals: two would print 0.00 for a non-zero variance. I^2 is a percentage (one decimal).

Every paragraph, table and page of the workbench formats its numbers through these functions,
so a number written in a sentence can be found, character for character, in its table.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

__all__ = [
    "MINUS",
    "fmt_r",
    "fmt_p",
    "p_text",
    "fmt_num",
    "fmt_var",
    "fmt_pct",
    "fmt_int",
    "fmt_df",
    "fmt_ci",
    "parse_number",
    "column_kind",
    "apa_table",
]

#: APA typesets negative numbers with a minus sign, not a hyphen.
MINUS = "\u2212"


def _missing(x) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def _signed(s: str) -> str:
    # "-0.00" after rounding is zero: print it unsigned
    if s.startswith("-"):
        body = s[1:]
        return body if float(body) == 0 else MINUS + body
    return s


def _no_leading_zero(s: str) -> str:
    neg = s.startswith(MINUS)
    body = s[1:] if neg else s
    if body.startswith("0."):
        body = body[1:]
    return (MINUS if neg else "") + body


def fmt_num(x, decimals: int = 2) -> str:
    """A statistic that can exceed 1 (z, t, Q, F, Fisher z estimates): leading zero kept."""
    if _missing(x):
        return ""
    if math.isinf(x):
        return "\u221e" if x > 0 else MINUS + "\u221e"
    return _signed(f"{x:.{decimals}f}")


def fmt_r(x, decimals: int = 2) -> str:
    """A correlation: two decimals, no leading zero (``.22``, ``\u2212.05``)."""
    if _missing(x):
        return ""
    return _no_leading_zero(fmt_num(float(x), decimals))


def fmt_p(p) -> str:
    """A p value without its "p": ``.031``, ``< .001``, ``> .999``."""
    if _missing(p):
        return ""
    p = float(p)
    if p < 0.001:
        return "< .001"
    if p >= 0.9995:
        return "> .999"
    return _no_leading_zero(f"{p:.3f}")


def p_text(p) -> str:
    """``p = .031`` or ``p < .001`` (italics are the renderer's job)."""
    s = fmt_p(p)
    return f"p {s}" if s.startswith(("<", ">")) else f"p = {s}"


def fmt_var(x) -> str:
    """A variance component (tau^2, sigma^2): three decimals, ``< 0.001`` when tiny but not 0."""
    if _missing(x):
        return ""
    if 0 < x < 0.0005:
        return "< 0.001"
    return fmt_num(float(x), 3)


def fmt_pct(x, decimals: int = 1) -> str:
    """A percentage such as I^2 (the number only; the caller adds "%")."""
    return fmt_num(x, decimals)


def fmt_int(x) -> str:
    """A count with a thousands separator (``1,234``)."""
    if _missing(x):
        return ""
    return f"{int(round(float(x))):,}"


def fmt_df(x) -> str:
    """Degrees of freedom: an integer when whole, else two decimals (Satterthwaite df)."""
    if _missing(x):
        return ""
    x = float(x)
    if math.isinf(x):
        return "\u221e"
    return f"{int(round(x))}" if abs(x - round(x)) < 1e-9 else f"{x:.2f}"


def fmt_ci(lb, ub, fmt=fmt_r) -> str:
    """``[.15, .30]`` with the given formatter (blank when a bound is missing)."""
    if _missing(lb) or _missing(ub):
        return ""
    return f"[{fmt(lb)}, {fmt(ub)}]"


def parse_number(s: str) -> float:
    """Inverse of the formatters for tests and readers: ``\u2212.05`` -> -0.05, ``1,234`` -> 1234."""
    t = s.replace(MINUS, "-").replace(",", "").strip()
    if t.startswith(("-.", ".")):
        t = t.replace(".", "0.", 1)
    return float(t)


# ---------------------------------------------------------------------------------------------
# tables

_R_COLS = re.compile(r"^(r|r_ci_lb|r_ci_ub|r_pi_lb|r_pi_ub|tau|cor|rho)$")
_P_COLS = re.compile(r"^(p|pval|pval_perm|p_perm|.*_p|.*_pval)$")
_INT_COLS = re.compile(r"^(k|n|N|k0|n_samples|n_studies|samples|studies|effects|groups|"
                       r"fsnum|records|count|n_.*|k_.*)$")
_VAR_COLS = re.compile(r"^(tau2|sigma2.*|tau2_.*)$")
_PCT_COLS = re.compile(r"^(I2.*|R2|share.*|pct.*)$")
_DF_COLS = re.compile(r"^(df|dfs|df_.*|QM_df|QE_df)$")

_HEADERS = {
    "r": "<i>r</i>", "k": "<i>k</i>", "n": "<i>n</i>", "N": "<i>N</i>", "pval": "<i>p</i>",
    "p": "<i>p</i>", "pval_perm": "<i>p</i> (permutation)", "tau2": "\u03c4\u00b2",
    "sigma2_between": "\u03c3\u00b2 between", "sigma2_within": "\u03c3\u00b2 within",
    "I2": "<i>I</i>\u00b2 (%)", "I2_between": "<i>I</i>\u00b2 between (%)",
    "I2_within": "<i>I</i>\u00b2 within (%)", "n_samples": "Samples", "n_studies": "Studies",
    "zval": "<i>z</i>", "tval": "<i>t</i>", "df": "<i>df</i>", "se": "<i>SE</i>",
    "QM": "<i>Q</i><sub>M</sub>", "QE": "<i>Q</i><sub>E</sub>", "Q_between": "<i>Q</i> between",
    "R2": "<i>R</i>\u00b2 (%)", "estimate": "Estimate (<i>z</i>)",
}


def column_kind(name: str, values: pd.Series | None = None) -> str:
    """How a column is formatted: r, p, int, var, pct, df, num, bool or text (from its name)."""
    if values is not None and pd.api.types.is_bool_dtype(values):
        return "bool"
    if values is not None and not pd.api.types.is_numeric_dtype(values):
        return "text"
    for kind, rx in (("r", _R_COLS), ("p", _P_COLS), ("int", _INT_COLS), ("var", _VAR_COLS),
                     ("pct", _PCT_COLS), ("df", _DF_COLS)):
        if rx.match(name):
            return kind
    return "num"


_FORMATTERS = {"r": fmt_r, "p": fmt_p, "int": fmt_int, "var": fmt_var, "pct": fmt_pct,
               "df": fmt_df, "num": fmt_num}


def _cell(x, kind: str) -> str:
    if kind == "bool":
        return "yes" if bool(x) else ""
    if kind == "text":
        return "" if _missing(x) else html.escape(str(x))
    if _missing(x):
        return ""
    return html.escape(_FORMATTERS[kind](float(x)))


def _header(name: str) -> str:
    if name in _HEADERS:
        return _HEADERS[name]
    return html.escape(name.replace("_", " "))


def apa_table(
    df: pd.DataFrame,
    *,
    title: str = "",
    number: int | None = None,
    note: str = "",
    kinds: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    level: float = 0.95,
    max_rows: int | None = None,
    csv_href: str | None = None,
) -> str:
    """A DataFrame as an APA-style HTML table (numbers rounded as APA asks).

    Column formats come from the column names (``r``/``r_ci_lb`` -> correlation, ``pval`` ->
    p, ``k``/``n_samples`` -> count, ``tau2`` -> variance, ``I2`` -> percent); ``kinds``
    overrides them. A ``*_ci_lb``/``*_ci_ub`` pair becomes one "95% CI" column ``[lb, ub]``
    (and ``*_pi_lb``/``*_pi_ub`` a "95% PI" column). ``max_rows`` shows the first rows and says
    how many were left out; ``csv_href`` links the full-precision CSV in the note.
    """
    kinds = dict(kinds or {})
    headers = dict(headers or {})
    cols = list(df.columns)
    shown: list[tuple[str, str, list[str]]] = []  # (header html, kind, source columns)
    used: set[str] = set()
    pct = f"{round(level * 100):g}%"
    for c in cols:
        if c in used:
            continue
        m = re.match(r"^(.*)_(ci|pi)_lb$", c)
        if m and f"{m.group(1)}_{m.group(2)}_ub" in cols:
            ub = f"{m.group(1)}_{m.group(2)}_ub"
            kind = kinds.get(c, column_kind(c, df[c]))
            label = headers.get(c, f"{pct} {m.group(2).upper()}")
            shown.append((label, kind, [c, ub]))
            used.update((c, ub))
            continue
        kind = kinds.get(c, column_kind(c, df[c]))
        shown.append((headers.get(c, _header(c)), kind, [c]))
        used.add(c)
    rows = df if max_rows is None else df.head(max_rows)
    out = ['<div class="apa-wrap"><table class="apa">']
    if number is not None or title:
        cap = f"<b>Table {number}</b><br>" if number is not None else ""
        out.append(f"<caption>{cap}<i>{html.escape(title)}</i></caption>")
    out.append("<thead><tr>" + "".join(f"<th>{h}</th>" for h, _, _ in shown) + "</tr></thead>")
    out.append("<tbody>")
    for _, row in rows.iterrows():
        cells = []
        for _, kind, src in shown:
            if len(src) == 2:
                lb, ub = row[src[0]], row[src[1]]
                if kind in ("text", "bool") or _missing(lb) or _missing(ub):
                    txt = ""
                else:
                    txt = html.escape(fmt_ci(float(lb), float(ub), _FORMATTERS[kind]))
            else:
                txt = _cell(row[src[0]], kind)
            cls = ' class="num"' if kind not in ("text", "bool") else ""
            cells.append(f"<td{cls}>{txt}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    notes = []
    if note:
        notes.append(html.escape(note))
    if max_rows is not None and len(df) > max_rows:
        notes.append(f"First {max_rows} of {len(df):,} rows shown.")
    if csv_href:
        notes.append(f'Full precision: <a href="{html.escape(csv_href)}">'
                     f"{html.escape(csv_href.rsplit('/', 1)[-1])}</a>.")
    if notes:
        out.append('<p class="table-note"><i>Note.</i> ' + " ".join(notes) + "</p>")
    return "\n".join(out)
