"""Validation of ``studies/effects.csv`` with ``references.bib``: every problem at once, with its
file, CSV line and column (rules in ``studies/CODEBOOK.md``)."""

from __future__ import annotations

import os
import re

import numpy as np

from ..stats.escalc import STAT_TYPES, to_r
from .quotes import number_in_quote
from .schema import BETA_MAX, PROVENANCES, _paths
from .tables import (
    Problem,
    ValidationReport,
    _check_cells,
    _parse_bib,
    _parse_csv,
    _read,
    _Row,
)

__all__ = ["validate_studies", "convert_r"]


def convert_r(stat_type, stat_value, n, df, n1, n2, sign) -> np.ndarray:
    """r of each row, times ``sign``: :func:`alliance_meta.stats.escalc.to_r`, with a
    ``partial_r`` taken as printed (it is already a correlation, kept as partial)."""
    st = np.asarray(stat_type, dtype=object).ravel()
    st = np.where(st == "partial_r", "r", st)
    return to_r(st, stat_value, n, df, n1, n2, sign)

def _check_row(row: _Row, v: dict[str, object], bib: dict[str, object] | None, bib_file: str,
               out: list[Problem]) -> None:
    """Checks that combine cells of one row."""

    def bad(col: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(row.file, row.line, col, msg, severity))

    sid, st, x, n, df = v["study_id"], v["stat_type"], v["stat_value"], v["n"], v["df"]
    n1, n2 = v["n1"], v["n2"]
    curated = v["provenance"] != "external"
    if sid is not None:
        # the sample_id may name another study's sample (two papers on one trial; issue 13)
        if v["es_id"] is not None and not re.fullmatch(re.escape(str(sid)) + r"_[0-9]+", str(v["es_id"])):
            bad("es_id", f"{v['es_id']!r} does not belong to study {sid!r} (expected {sid}_<number>)")
        if bib is not None and sid not in bib:
            if curated:
                bad("study_id", f"{sid!r} has no entry in {bib_file}")
            else:
                bad("study_id", f"{sid!r} has no entry in {bib_file} (an external row may lack one)", "warning")
        if v["year"] is not None and str(v["year"]) != re.sub(r"\D", "", str(sid)):
            bad("year", f"year {v['year']} differs from the year in study_id {sid!r}", "warning")
    if st in ("t", "F") and df is None and not row.cells.get("df", "").strip():
        bad("df", f"a {st} needs its df (t: its df; F: the denominator df of F(1, df))")
    negative = st in ("F", "chi2") and x is not None and x < 0
    if negative:
        bad("stat_value", f"{st} cannot be negative ({row.cells['stat_value']}); its direction goes in sign")
    if st == "beta" and x is not None and abs(x) > BETA_MAX:
        bad("stat_value", f"|beta| = {abs(x):g} > {BETA_MAX}: the beta -> r approximation of "
            "Peterson & Brown (2005) is meant for |beta| <= .5", "warning")
    if (n1 is None) != (n2 is None):
        bad("n2" if n2 is None else "n1", "give both group sizes n1 and n2, or neither")
    elif n1 is not None:
        if st != "d":
            bad("n1", f"group sizes are used only for a d, not for a {st}", "warning")
        elif n is not None and n1 + n2 != n:
            bad("n1", f"n1 + n2 = {n1 + n2} differs from n = {n}", "warning")
    q = v["n_covariates"]
    if st == "partial_r":
        if v["r_kind"] == "zero-order":
            bad("r_kind", "a partial_r is a partial effect: r_kind must be partial")
        if q is None and not row.cells.get("n_covariates", "").strip():
            bad("n_covariates", "a partial_r needs n_covariates (its variance is 1 / (n - n_covariates - 2), "
                "metafor's ZPCOR)")
        elif q is not None and q < 1:
            bad("n_covariates", "a partial_r controls for at least one covariate (else code it as r)")
        elif q is not None and n is not None and n - q - 2 < 1:
            bad("n_covariates", f"n - n_covariates - 2 = {n - q - 2}: too few cases for a variance")
    elif q is not None and v["r_kind"] == "zero-order" and q > 0:
        bad("n_covariates", "covariates given for a zero-order effect", "warning")
    if v["r_kind"] == "partial" and df is not None and df <= 1:
        bad("df", "a partial effect's residual df must exceed 1 (vi = 1 / (df - 1))")
    if v["r_kind"] == "zero-order" and st == "t" and df is not None and n is not None and df != n - 2:
        bad("df", f"a zero-order t has df = n - 2 = {n - 2}, not {df:g}", "warning")
    # conversion to r
    ready = (st in STAT_TYPES or st == "partial_r") and x is not None and v["sign"] is not None and n is not None and not negative
    if ready and (st not in ("t", "F") or df is not None):
        r = float(convert_r([st], [x], [n], [np.nan if df is None else df],
                       [np.nan if n1 is None else n1], [np.nan if n2 is None else n2], [v["sign"]])[0])
        if not np.isfinite(r) or abs(r) >= 1:
            bad("stat_value", f"converts to r = {r:.4g}, outside (-1, 1); check the value, df and n")
    # provenance: the numbers are in the quote
    quote = row.cells.get("quote", "")
    if quote.strip():
        for col in ("stat_value", "n"):
            cell = row.cells.get(col, "").strip()
            if v[col] is not None and not number_in_quote(cell, quote):
                bad(col, f"{col} = {cell} does not appear in the quote")


def _check_across(rows: list[_Row], vals: list[dict[str, object]], out: list[Problem]) -> None:
    """Checks across rows: duplicates, the n of a sample, study-level columns."""

    def where(r: _Row, ref: _Row) -> str:
        return f"line {ref.line}" if ref.file == r.file else f"{ref.file}:{ref.line}"

    first_es: dict[object, _Row] = {}
    first_effect: dict[tuple, _Row] = {}
    study_first: dict[object, tuple[_Row, dict[str, object]]] = {}
    sample_rows: dict[object, list[tuple[_Row, dict[str, object]]]] = {}
    effect_cols = ("sample_id", "stat_type", "stat_value", "df", "alliance_measure",
                   "alliance_rater", "alliance_timing", "alliance_session", "outcome_measure")
    for r, v in zip(rows, vals, strict=True):
        es = v["es_id"]
        if es is not None:
            if es in first_es:
                out.append(Problem(r.file, r.line, "es_id",
                                   f"duplicate es_id {es!r} (first on {where(r, first_es[es])})"))
            else:
                first_es[es] = r
        key = tuple(v[c] for c in effect_cols)
        if all(k is not None for k in key[:3]):
            if key in first_effect:
                out.append(Problem(r.file, r.line, "stat_value", "the same effect (sample, statistic, "
                                   f"alliance and outcome) as {where(r, first_effect[key])}"))
            else:
                first_effect[key] = r
        if v["sample_id"] is not None and v["n"] is not None:
            sample_rows.setdefault(v["sample_id"], []).append((r, v))
        sid = v["study_id"]
        if sid is not None:
            if sid not in study_first:
                study_first[sid] = (r, v)
            else:
                r0, v0 = study_first[sid]
                for col in ("year", "doi", "publication_type"):
                    # a missing value is reported already (curated) or allowed (external)
                    missing = col != "doi" and (v[col] is None or v0[col] is None)
                    if v[col] != v0[col] and not missing:
                        out.append(Problem(r.file, r.line, col, f"{col} differs from the study's "
                                           f"other rows ({v0[col]!r} on {where(r, r0)})"))
    for sample, members in sample_rows.items():
        ref_row, ref = max(members, key=lambda m: m[1]["n"])
        for r, v in members:
            if v["n"] != ref["n"] and not number_in_quote(str(v["n"]), r.cells.get("notes", "")):
                out.append(Problem(
                    r.file, r.line, "n",
                    f"sample {sample!r} has n = {ref['n']} on {where(r, ref_row)} but n = {v['n']} here; "
                    f"if this analysis used fewer cases, say why in notes (mentioning n = {v['n']})"))


def _validate(tables: list[tuple[bytes | None, str, str]], bibs: list[tuple[bytes | None, str]]
              ) -> tuple[ValidationReport, list[_Row], list[dict[str, object]], list[list[str]]]:
    """Validate CSV tables (bytes, file name, provenance of rows that give none) together with
    bibliography files."""
    problems: list[Problem] = []
    rows: list[_Row] = []
    headers: list[list[str]] = []
    for raw, file, default in tables:
        if default not in PROVENANCES:
            raise ValueError(f"provenance must be one of {PROVENANCES}, not {default!r}")
        if raw is None:
            problems.append(Problem(file, 0, "", "file not found"))
            headers.append([])
            continue
        header, rs, ps = _parse_csv(raw, file)
        problems += ps
        for r in rs:
            if not r.cells.get("provenance", "").strip() and default == "external":
                # rows imported from a dataset coded elsewhere: a warning, and they are marked
                problems.append(Problem(file, r.line, "provenance", "missing value: taken as external",
                                        "warning"))
                r.cells["provenance"] = "external"
        rows += rs
        headers.append(header)
    keys: dict[str, tuple[str, int]] = {}
    bib_found = True
    for raw, file in bibs:
        if raw is None:
            problems.append(Problem(file, 0, "", "bibliography file not found"))
            bib_found = False
            continue
        got, ps = _parse_bib(raw, file)
        problems += ps
        for key, line in got.items():
            if key in keys:
                problems.append(Problem(file, line, key, f"bibliography key already in {keys[key][0]} "
                                        f"(line {keys[key][1]})"))
            else:
                keys[key] = (file, line)
    vals = []
    for r in rows:
        v = _check_cells(r, problems, curated=r.cells.get("provenance", "").strip() != "external")
        _check_row(r, v, keys if bib_found else None, bibs[0][1], problems)
        vals.append(v)
    _check_across(rows, vals, problems)
    used = {v["study_id"] for v in vals}
    for key, (file, line) in keys.items():
        if key not in used:
            problems.append(Problem(file, line, key, "bibliography entry without rows in the data", "warning"))
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.row))
    files = tuple(t[1] for t in tables) + tuple(f for _, f in bibs)
    return ValidationReport(tuple(problems), files, len(rows)), rows, vals, headers


def validate_studies(path: str | os.PathLike | None = None, *, provenance: str = "curated"
                     ) -> ValidationReport:
    """Check ``effects.csv`` and ``references.bib`` and report every problem at once.

    ``path`` is the studies folder or an effects CSV (default: :func:`studies_dir`). Each problem
    names the file, the CSV line (header = 1) and the column. Errors: a missing column or required
    value, an unknown category value, a cell that is not a number where one is needed, n < 4, a
    t or F without df, a negative F or chi2, an r outside (-1, 1) after conversion, a duplicate
    es_id or effect, a sample whose n differs across rows without notes saying why, a missing
    quote, a stat_value or n not printed in the quote, a study_id without a bibliography entry,
    a file that is not UTF-8, a cell starting like a spreadsheet formula, HTML or script in a
    cell, a partial_r without n_covariates. Warnings: |beta| > .5, unknown columns, bibliography
    entries without rows, and other oddities that may be right.

    ``provenance`` is the level of rows whose ``provenance`` cell is empty: ``"curated"`` (the
    default: an empty cell is an error) or ``"external"`` (rows of a dataset coded elsewhere: a
    warning, and the rows are taken as external). External rows need no quote, source or
    moderator columns and no bibliography entry (a warning); every other check applies.
    """
    csv_path, bib_path = _paths(path)
    report, *_ = _validate([(_read(csv_path), str(csv_path), provenance)], [(_read(bib_path), str(bib_path))])
    return report

