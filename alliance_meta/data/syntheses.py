"""The published syntheses ``studies/syntheses.csv``: one row per pooled estimate a meta-analysis
of the alliance-outcome association prints (overall and per subgroup), each with the verbatim
quote holding its numbers, validated like the effects, with ``syntheses.bib``."""

from __future__ import annotations

import os
import re

import pandas as pd

from .quotes import number_in_quote
from .schema import SYNTHESES_BIB_FILE, SYNTHESES_FIELDS, SYNTHESES_FILE, studies_dir
from .tables import (
    Problem,
    StudiesValidationError,
    ValidationReport,
    _check_cells,
    _parse_bib,
    _parse_csv,
    _read,
    _Row,
    typed_frame,
)

__all__ = ["validate_syntheses", "load_syntheses"]

_NUMBERS = ("estimate", "ci_lb", "ci_ub", "k", "n")
_PER_SYNTHESIS = ("authors", "year", "title", "journal", "doi")


def _check(rows: list[_Row], out: list[Problem], bib: dict[str, int] | None, bib_file: str
           ) -> list[dict[str, object]]:
    vals = [_check_cells(r, out, SYNTHESES_FIELDS) for r in rows]
    first: dict[object, _Row] = {}
    synth: dict[object, tuple[_Row, dict[str, object]]] = {}
    for r, v in zip(rows, vals, strict=True):
        def bad(col: str, msg: str, severity: str = "error", r: _Row = r) -> None:
            out.append(Problem(r.file, r.line, col, msg, severity))

        eid, sid = v["estimate_id"], v["synthesis_id"]
        if eid is not None:
            if eid in first:
                bad("estimate_id", f"duplicate estimate_id {eid!r} (first on line {first[eid].line})")
            else:
                first[eid] = r
            if sid is not None and not re.fullmatch(re.escape(str(sid)) + r"_[0-9]+", str(eid)):
                bad("estimate_id", f"{eid!r} does not belong to synthesis {sid!r} (expected {sid}_<number>)")
        if sid is not None:
            if bib is not None and sid not in bib:
                bad("synthesis_id", f"{sid!r} has no entry in {bib_file}")
            if v["year"] is not None and str(v["year"]) != re.sub(r"\D", "", str(sid)):
                bad("year", f"year {v['year']} differs from the year in synthesis_id {sid!r}", "warning")
            if sid in synth:
                r0, v0 = synth[sid]
                for col in _PER_SYNTHESIS:
                    missing = col in ("authors", "year") and (v[col] is None or v0[col] is None)
                    if v[col] != v0[col] and not missing:  # a missing required value is reported already
                        bad(col, f"{col} differs from the synthesis's other rows (line {r0.line})")
            else:
                synth[sid] = (r, v)
        lb, ub, est = v["ci_lb"], v["ci_ub"], v["estimate"]
        has_lb, has_ub = bool(r.cells.get("ci_lb", "").strip()), bool(r.cells.get("ci_ub", "").strip())
        if has_lb != has_ub:
            bad("ci_ub" if has_lb else "ci_lb", "give both confidence limits or neither")
        elif lb is not None and ub is not None:
            if lb > ub:
                bad("ci_lb", f"ci_lb = {lb:g} exceeds ci_ub = {ub:g}")
            elif est is not None and not lb <= est <= ub:
                bad("estimate", f"estimate {est:g} lies outside its CI [{lb:g}, {ub:g}]", "warning")
        if v["metric"] == "r" and est is not None and abs(est) >= 1:
            bad("estimate", f"a correlation must lie in (-1, 1), not {est:g}")
        if r.cells.get("k_unit", "").strip() and not r.cells.get("k", "").strip():
            bad("k_unit", "k_unit is given without k")
        quote = r.cells.get("quote", "")
        if quote.strip():
            for col in _NUMBERS:
                cell = r.cells.get(col, "").strip()
                if v[col] is not None and not number_in_quote(cell, quote):
                    bad(col, f"{col} = {cell} does not appear in the quote")
    return vals


def _validate(folder) -> tuple[ValidationReport, list[_Row], list[dict[str, object]]]:
    target, bib_path = folder / SYNTHESES_FILE, folder / SYNTHESES_BIB_FILE
    problems: list[Problem] = []
    rows: list[_Row] = []
    vals: list[dict[str, object]] = []
    raw, bib_raw = _read(target), _read(bib_path)
    if raw is None and bib_raw is None:  # a review without published syntheses: nothing to check
        return ValidationReport((), (str(target), str(bib_path)), 0), rows, vals
    keys: dict[str, int] | None = None
    if bib_raw is not None:
        keys, ps = _parse_bib(bib_raw, str(bib_path))
        problems += ps
    if raw is None:
        problems.append(Problem(str(target), 0, "", "file not found"))
    else:
        _, rows, ps = _parse_csv(raw, str(target), SYNTHESES_FIELDS)
        problems += ps
        vals = _check(rows, problems, keys, str(bib_path))
    if bib_raw is None and rows:  # an empty table (a fresh review) needs no bibliography yet
        problems.append(Problem(str(bib_path), 0, "", "bibliography file not found"))
    used = {v["synthesis_id"] for v in vals}
    for key, line in (keys or {}).items():
        if key not in used:
            problems.append(Problem(str(bib_path), line, key, "bibliography entry without rows in the data",
                                    "warning"))
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.row))
    return ValidationReport(tuple(problems), (str(target), str(bib_path)), len(rows)), rows, vals


def validate_syntheses(path: str | os.PathLike | None = None) -> ValidationReport:
    """Check ``syntheses.csv`` and ``syntheses.bib`` of a studies folder; every problem with its
    file, CSV line and column.

    Errors: a missing column or required value (authors and year are required: a row whose
    authors or year were not read is left out and logged in screening.csv), an unknown value
    (population, construct, metric, k_unit, model), a duplicate estimate_id or one not built from
    its synthesis_id, a number in estimate, ci_lb, ci_ub, k or n that is not printed in the quote,
    one confidence limit without the other, ci_lb > ci_ub, an r outside (-1, 1), k_unit without
    k, authors/title/journal/doi differing within a synthesis, a synthesis_id without a
    bibliography entry. Warnings: an estimate outside its CI, a year that differs from the one in
    the synthesis_id, bibliography entries without rows. A folder with neither syntheses.csv nor
    syntheses.bib, or with a syntheses.csv without rows (a review that records no published
    syntheses), has no problems.
    """
    report, *_ = _validate(studies_dir(path))
    return report


def load_syntheses(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The published pooled estimates as a DataFrame (numbers as float, counts as ``Int64``,
    text as ``string``), validated first; any error raises :class:`StudiesValidationError`.
    Without syntheses.csv and syntheses.bib the table is empty (with its columns)."""
    report, _, vals = _validate(studies_dir(path))
    if not report.ok:
        raise StudiesValidationError(report, "load_syntheses")
    return typed_frame(SYNTHESES_FIELDS, vals)
