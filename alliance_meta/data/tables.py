"""Reading the studies tables and reporting problems: the :class:`Problem` and
:class:`ValidationReport` types, UTF-8 and CSV parsing with line numbers, BibTeX keys, and the
cell-level checks that every table of ``studies/`` shares (type, vocabulary, pattern, spreadsheet
formulas, markup).

Cells that start with ``=``, ``+``, ``-`` or ``@`` are refused because spreadsheets run them as
formulas (OWASP, "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection).
"""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from .schema import FIELDS, Field

# ---------------------------------------------------------------------------------------------
# problems and the report


class Problem(NamedTuple):
    """One problem: the file, the CSV line (1 = header; 0 = the file as a whole), the column."""

    file: str
    row: int
    column: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}:" if self.row else f"{self.file}:"
        what = f"{self.column}: " if self.column else ""
        tag = "warning: " if self.severity == "warning" else ""
        return f"{where} {what}{tag}{self.message}"


@dataclass(frozen=True, repr=False)
class ValidationReport:
    """Every problem found in the studies files, errors and warnings apart.

    ``ok`` is True when there is no error (warnings allowed). ``summary()`` returns one row per
    problem (file, row, column, severity, message).
    """

    problems: tuple[Problem, ...]
    files: tuple[str, ...]
    n_rows: int

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> pd.DataFrame:
        cols = ["file", "row", "column", "severity", "message"]
        return pd.DataFrame([{c: getattr(p, c) for c in cols} for p in self.problems], columns=cols)

    def __str__(self) -> str:
        lines = [str(p) for p in self.problems]
        lines.append(
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s) in {self.n_rows} row(s) "
            f"of {', '.join(self.files)}"
        )
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = html.escape(
            f"Studies validation: {len(self.errors)} error(s), {len(self.warnings)} warning(s) "
            f"in {self.n_rows} row(s) of {', '.join(self.files)}"
        )
        table = self.summary().to_html(index=False, escape=True, border=0) if self.problems else ""
        return f"<div><b>{head}</b>{table}</div>"


class StudiesValidationError(ValueError):
    """Raised when the studies files have errors; ``.report`` holds every problem."""

    def __init__(self, report: ValidationReport, what: str = "load_studies"):
        self.report = report
        msgs = "\n".join(str(p) for p in report.errors)
        super().__init__(
            f"{what}: the studies data have {len(report.errors)} error(s); nothing was "
            f"{'loaded' if what.startswith('load') else 'written'}:\n{msgs}"
        )


# ---------------------------------------------------------------------------------------------
# reading files


@dataclass(frozen=True)
class _Row:
    file: str
    line: int
    cells: dict[str, str]


def _decode(raw: bytes, file: str, problems: list[Problem]) -> str:
    """UTF-8 text of ``raw``; each line that is not UTF-8 is reported (and decoded with U+FFFD)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        for i, line in enumerate(raw.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(Problem(file, i, "", f"not UTF-8 (byte 0x{line[e.start]:02x} at "
                                        f"byte {e.start + 1} of the line); save the file as UTF-8"))
        return raw.decode("utf-8-sig", errors="replace")


def _parse_csv(raw: bytes, file: str, fields: tuple[Field, ...] = FIELDS
               ) -> tuple[list[str], list[_Row], list[Problem]]:
    """Header, rows (with the CSV line each starts on) and reading problems for a table whose
    columns are ``fields``. A missing column is an error if any row could need it (required, or
    required for curated rows), else a warning (its cells are taken as empty)."""
    problems: list[Problem] = []
    columns = tuple(f.name for f in fields)
    known = {f.name: f for f in fields}
    text = _decode(raw, file, problems)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[_Row] = []
    header: list[str] = []
    while True:
        start = reader.line_num + 1
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(Problem(file, start, "", f"cannot be read as CSV ({e})"))
            break
        if not rec or all(not c.strip() for c in rec):
            continue
        if not header:
            header = [h.strip() for h in rec]
            for f in fields:
                if f.name not in header:
                    if f.required or f.curated:
                        problems.append(Problem(file, start, f.name, "column missing from the header"))
                    else:
                        problems.append(Problem(file, start, f.name, "column missing from the header "
                                                "(optional: its cells are taken as empty)", "warning"))
            seen: set[str] = set()
            for h in header:
                if h in seen:
                    problems.append(Problem(file, start, h, "column appears twice in the header"))
                elif h not in known:
                    problems.append(Problem(file, start, h, "unknown column (not in the codebook)",
                                            "warning"))
                seen.add(h)
            continue
        if len(rec) != len(header):
            problems.append(Problem(file, start, "", f"has {len(rec)} fields but the header has "
                                    f"{len(header)} (a comma or quote in a cell not escaped?)"))
        cells = dict.fromkeys(columns, "")
        cells.update(zip(header, rec, strict=False))
        rows.append(_Row(file, start, cells))
    if not header:
        problems.append(Problem(file, 0, "", "the file is empty (no header row)"))
    return header, rows, problems


_BIB_KEY = re.compile(r"@\s*(\w+)\s*[{(]\s*([^,\s]+)\s*,")


def _parse_bib(raw: bytes, file: str) -> tuple[dict[str, int], list[Problem]]:
    """Keys of references.bib with the line each is on."""
    problems: list[Problem] = []
    text = _decode(raw, file, problems)
    keys: dict[str, int] = {}
    for m in _BIB_KEY.finditer(text):
        if m.group(1).lower() in ("comment", "string", "preamble"):
            continue
        line = text.count("\n", 0, m.start()) + 1
        key = m.group(2)
        if key in keys:
            problems.append(Problem(file, line, key, f"duplicate bibliography key (first on line {keys[key]})"))
        else:
            keys[key] = line
    return keys, problems


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# checks


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_HTML = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9-]*(?:\s[^<>]*)?/?\s*>|<!--|javascript\s*:", re.I)


def _parse_number(v: str) -> float | None:
    try:
        x = float(Decimal(v.strip()))
    except (InvalidOperation, ValueError):
        return None
    return x if np.isfinite(x) else None


def _parse_int(v: str) -> int | None:
    s = v.strip()
    return int(s) if re.fullmatch(r"[-+]?\d+", s) else None


def _check_cells(row: _Row, out: list[Problem], fields: tuple[Field, ...] = FIELDS,
                 curated: bool = True) -> dict[str, object]:
    """Cell-level checks; returns the parsed values of the cells that passed (None if empty).
    ``curated``: the row is curated, so the fields marked ``curated`` are required too."""
    val: dict[str, object] = {}

    def bad(col: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(row.file, row.line, col, msg, severity))

    for f in fields:
        raw = row.cells.get(f.name, "")
        val[f.name] = None
        numeric = f.type in ("integer", "number")
        if raw.lstrip(" ").startswith(_FORMULA_START) and not (
            numeric and raw.strip().startswith("-") and _parse_number(raw) is not None
        ):
            bad(f.name, f"starts like a spreadsheet formula ({raw.lstrip(' ')[:1]!r}); a cell may "
                "not begin with =, +, -, @ (a plain negative number is fine in a numeric column)")
        if _HTML.search(raw):
            bad(f.name, "holds HTML or script markup; copy the text without tags")
        if not raw.strip():
            if f.required or (f.curated and curated):
                bad(f.name, "missing value (required)" if f.name != "quote" else
                    "missing quote: every row needs the verbatim sentence(s) holding stat_value and n")
            continue
        if f.type == "integer":
            x = _parse_int(raw)
            if x is None:
                bad(f.name, f"{raw!r} is not a whole number")
                continue
        elif f.type == "number":
            x = _parse_number(raw)
            if x is None:
                bad(f.name, f"{raw!r} is not a number (use a dot as decimal mark)")
                continue
        else:
            x = raw
        if f.enum is not None and x not in f.enum:
            hint = ""
            near = [e for e in f.enum if str(e).lower() == str(x).strip().lower()]
            if near:
                hint = f"; did you mean {near[0]!r}?"
            bad(f.name, f"unknown value {raw!r}; allowed: {', '.join(map(str, f.enum))}{hint}")
            continue
        if f.minimum is not None and x < f.minimum:
            bad(f.name, f"{raw.strip()} is below the minimum of {f.minimum}"
                + (" (an effect needs n >= 4 for Fisher's z)" if f.name == "n" else ""))
            continue
        if f.pattern is not None and not re.fullmatch(f.pattern, raw):
            bad(f.name, f"{raw!r} does not have the form of a {f.name} ({f.description})")
            continue
        val[f.name] = x
    return val


def typed_frame(fields, vals: list[dict[str, object]]) -> pd.DataFrame:
    """The checked values of a table as a DataFrame typed by its schema: integers as nullable
    ``Int64``, numbers as float (NaN when empty), text as ``string``."""
    data: dict[str, object] = {}
    for f in fields:
        col = [v[f.name] for v in vals]
        if f.type == "integer":
            data[f.name] = pd.array(col, dtype="Int64")
        elif f.type == "number":
            data[f.name] = np.array([np.nan if x is None else x for x in col], dtype=float)
        else:
            data[f.name] = pd.array(col, dtype="string")
    return pd.DataFrame(data)
