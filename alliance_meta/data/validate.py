"""The curated studies: schema, validation, loading and appending of ``studies/effects.csv``.

``studies/`` is the only input of the workbench. This module holds the schema in one place
(:data:`FIELDS`, from which ``studies/datapackage.json`` is written), a validator that reports every
problem at once with its file, CSV line and column, the loader that computes ``r``, ``yi`` and
``vi``, and :func:`append_rows`, which adds a study without rewriting the rows already there.

Effect sizes are converted by :func:`alliance_meta.effects.to_r` (formulas and sources in
``studies/CODEBOOK.md``). Sampling variances of Fisher's z (Fisher 1921): ``vi = 1 / (n - 3)`` for
zero-order effects; for a partial effect from a t or F with its residual df,
``vi = 1 / (df - 1)`` (Aloe, A. M., & Thompson, C. G. (2013). The synthesis of partial effect
sizes. Journal of the Society for Social Work and Research, 4(4), 390-405.
doi:10.5243/jsswr.2013.24); for a partial effect without a df (a beta or partial r printed
without it), ``vi = 1 / (n - 3)``, an approximation that slightly understates the variance.

Cells that start with ``=``, ``+``, ``-`` or ``@`` are refused because spreadsheets run them as
formulas (OWASP, "CSV Injection", https://owasp.org/www-community/attacks/CSV_Injection).
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..stats.escalc import STAT_TYPES, fisher_z, to_r

__all__ = [
    "FIELDS",
    "COLUMNS",
    "ENUMS",
    "Field",
    "Problem",
    "ValidationReport",
    "StudiesValidationError",
    "AppendResult",
    "studies_dir",
    "load_studies",
    "validate_studies",
    "append_rows",
    "datapackage",
    "write_datapackage",
    "number_in_quote",
]

# ---------------------------------------------------------------------------------------------
# the schema: one place, used by the validator and by write_datapackage()

R_KINDS = ("zero-order", "partial")
MODALITIES = (
    "CBT", "psychodynamic", "humanistic", "interpersonal", "integrative", "systemic",
    "motivational", "third-wave", "pharmacotherapy", "mixed", "other",
)  # fmt: skip
FORMATS = ("individual", "group", "couple", "family")
DELIVERIES = ("face-to-face", "internet", "telephone", "video", "app", "blended")
POPULATIONS = ("adult", "child-adolescent")
ALLIANCE_MEASURES = (
    "WAI", "WAI-S", "WAI-SR", "CALPAS", "HAq", "VTAS", "ARM", "TAS", "SRS", "TASC", "other",
)  # fmt: skip
ALLIANCE_RATERS = ("client", "therapist", "observer", "parent")
TIMINGS = ("early", "mid", "late", "averaged", "unspecified")
OUTCOME_RATERS = ("client", "therapist", "observer", "parent", "teacher", "other")
DESIGNS = ("RCT", "naturalistic", "other")
PUBLICATION_TYPES = ("journal", "dissertation", "chapter", "conference")
SIGNS = (1, -1)

_ID = r"[A-Za-z]+[0-9]{4}[a-z]?"  # study_id: first author + year (+ a/b); also the bib key


class Field(NamedTuple):
    """One column of ``effects.csv`` as a Frictionless Table Schema field."""

    name: str
    type: str  # Table Schema type: string, integer or number
    required: bool
    description: str
    enum: tuple | None = None
    minimum: int | None = None
    pattern: str | None = None  # matched against the whole cell


FIELDS: tuple[Field, ...] = (
    Field("es_id", "string", True, "Unique id of the effect: <study_id>_<k>.", pattern=_ID + r"_[0-9]+"),
    Field("study_id", "string", True, "First author + year (a/b suffix); key in references.bib.", pattern=_ID),
    Field("sample_id", "string", True, "One independent sample: <study_id>_s<j>.", pattern=_ID + r"_s[0-9]+"),
    Field("n", "integer", True, "n of the analysis that produced the statistic.", minimum=4),
    Field("stat_type", "string", True, "Reported statistic.", enum=STAT_TYPES),
    Field("stat_value", "number", True, "The statistic as printed (F and chi2 >= 0)."),
    Field("df", "number", False, "t: its df; F: denominator df of F(1, df). Required for t and F.", minimum=1),
    Field("n1", "integer", False, "Group size 1 for a d.", minimum=1),
    Field("n2", "integer", False, "Group size 2 for a d.", minimum=1),
    Field("sign", "integer", True, "Multiplies the converted r so that positive = stronger alliance with better outcome.", enum=SIGNS),
    Field("r_kind", "string", True, "zero-order or partial (model with covariates).", enum=R_KINDS),
    Field("modality", "string", True, "Treatment approach.", enum=MODALITIES),
    Field("format", "string", True, "Treatment format.", enum=FORMATS),
    Field("delivery", "string", True, "Delivery mode.", enum=DELIVERIES),
    Field("population", "string", True, "Population.", enum=POPULATIONS),
    Field("diagnosis", "string", False, "Short free text."),
    Field("alliance_measure", "string", True, "Alliance instrument (other: named in notes).", enum=ALLIANCE_MEASURES),
    Field("alliance_rater", "string", True, "Who rated the alliance.", enum=ALLIANCE_RATERS),
    Field("alliance_timing", "string", True, "When the alliance was measured.", enum=TIMINGS),
    Field("alliance_session", "integer", False, "Session of the alliance measurement, where given.", minimum=0),
    Field("outcome_measure", "string", True, "Outcome instrument, short free text."),
    Field("outcome_rater", "string", True, "Who rated the outcome.", enum=OUTCOME_RATERS),
    Field("design", "string", True, "Study design.", enum=DESIGNS),
    Field("country", "string", False, "Country of the sample, in English."),
    Field("year", "integer", True, "Publication year.", minimum=1900),
    Field("publication_type", "string", True, "Publication type.", enum=PUBLICATION_TYPES),
    Field("doi", "string", False, "DOI as printed, without https://doi.org/."),
    Field("source_url", "string", True, "The page(s) read, separated by ' ; '."),
    Field("quote", "string", True, "Verbatim sentence(s) holding stat_value and n (segments joined by ' | ')."),
    Field("notes", "string", False, "Anything a reviewer needs."),
)  # fmt: skip

COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
ENUMS: dict[str, tuple] = {f.name: f.enum for f in FIELDS if f.enum is not None}
_FIELD = {f.name: f for f in FIELDS}

EFFECTS_FILE = "effects.csv"
BIB_FILE = "references.bib"
DATAPACKAGE_FILE = "datapackage.json"
BETA_MAX = 0.5  # Peterson & Brown (2005) recommend their beta -> r approximation for |beta| <= .5


def studies_dir(path: str | os.PathLike | None = None) -> Path:
    """The studies folder: ``path`` if given, else ``$ALLIANCE_META_STUDIES``, else the
    repository's ``studies/`` beside the package."""
    if path is not None:
        return Path(path)
    env = os.environ.get("ALLIANCE_META_STUDIES")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "studies"


def _paths(path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(effects.csv, references.bib) for a studies folder or an effects CSV file."""
    p = studies_dir(path)
    if p.is_dir():
        return p / EFFECTS_FILE, p / BIB_FILE
    return p, p.parent / BIB_FILE


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
            f"{'loaded' if what == 'load_studies' else 'written'}:\n{msgs}"
        )


# ---------------------------------------------------------------------------------------------
# numbers as papers print them


_MINUS = str.maketrans(dict.fromkeys("\u2212\u2010\u2011\u2012\u2013\ufe63\uff0d", "-"))
# a number not glued to a word or another number, with an optional sign (spaces allowed after it)
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-+]\s*)?(?P<num>\d+(?:[.,]\d+)*|\.\d+)")
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_WORD_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_NUM_WORD = r"(?:" + "|".join(sorted([*_WORD_VALUE, "hundred", "thousand"], key=len, reverse=True)) + r")"
_WORD_RUN = re.compile(rf"\b{_NUM_WORD}(?:(?:[\s-]+(?:and\s+)?){_NUM_WORD})*\b")


def _normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).translate(_MINUS).lower()


def _readings(num: str) -> set[Decimal]:
    """The values a printed number can stand for: 0.23, .23, 0,23 (comma decimal), 1,052 or
    1.052 (thousands), and the parts of a list such as 0.23,0.45."""
    out: set[Decimal] = set()
    if "," in num and "." in num:
        if re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+(\.\d+)?", num):
            out.add(Decimal(num.replace(",", "")))
        if re.fullmatch(r"[1-9]\d{0,2}(\.\d{3})+(,\d+)?", num):
            out.add(Decimal(num.replace(".", "").replace(",", ".")))
        for part in num.split(","):
            if re.fullmatch(r"\d*\.\d+|\d+", part):
                out.add(Decimal(part))
    elif "," in num:
        if num.count(",") == 1:
            out.add(Decimal(num.replace(",", ".")))
        if re.fullmatch(r"[1-9]\d{0,2}(,\d{3})+", num):
            out.add(Decimal(num.replace(",", "")))
    elif num.count(".") > 1:
        if re.fullmatch(r"[1-9]\d{0,2}(\.\d{3})+", num):
            out.add(Decimal(num.replace(".", "")))
    else:
        out.add(Decimal(num))
        if re.fullmatch(r"[1-9]\d{0,2}\.\d{3}", num):
            out.add(Decimal(num.replace(".", "")))
    return out


def _word_numbers(text: str) -> set[Decimal]:
    """Values of English number words in (normalised) text: 'fifty-six', 'one hundred and five'."""
    out: set[Decimal] = set()
    for run in _WORD_RUN.finditer(text):
        total = cur = 0
        last = ""
        for w in re.findall(r"[a-z]+", run.group()):
            if w == "and":
                continue
            if w == "hundred":
                cur = (cur or 1) * 100
            elif w == "thousand":
                total, cur = total + (cur or 1) * 1000, 0
            else:
                v = _WORD_VALUE[w]
                # 'fifty six' and 'hundred six' continue a number; 'six seven' starts a new one
                tens_before = cur % 100 >= 20 and cur % 10 == 0
                if last and last not in ("hundred", "thousand") and not (v < 10 and tens_before):
                    out.add(Decimal(total + cur))
                    total = cur = 0
                cur += v
            last = w
        if last:
            out.add(Decimal(total + cur))
    return out


def _numbers_in(text: str) -> set[Decimal]:
    t = _normalise(text)
    out: set[Decimal] = set()
    for m in _NUMBER.finditer(t):
        neg = (m.group("sign") or "").startswith("-")
        out |= {-v if neg else v for v in _readings(m.group("num"))}
    return out | _word_numbers(t)


def number_in_quote(value: str | float, quote: str) -> bool:
    """True when ``value`` is printed in ``quote``, in any of the ways papers print numbers.

    Accepted: 0.23 / .23 / 0.230, U+2212 or en-dash minus, spaces after the minus, comma decimals
    (0,23), thousands separators (1,052), and integers as English words ("Fifty-six"). The sign
    must match: -.24 is not found in "β = .24", nor .24 in "β = -.24". A dash between two numbers
    ("rs = .13–.33") is a range, not a minus. Numbers glued to letters (``t206``) are not read.
    """
    try:
        v = Decimal(str(value).strip())
    except InvalidOperation:
        return False
    return v in _numbers_in(quote)


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


def _parse_csv(raw: bytes, file: str) -> tuple[list[str], list[_Row], list[Problem]]:
    """Header, rows (with the CSV line each starts on) and reading problems."""
    problems: list[Problem] = []
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
            for name in COLUMNS:
                if name not in header:
                    problems.append(Problem(file, start, name, "column missing from the header"))
            seen: set[str] = set()
            for h in header:
                if h in seen:
                    problems.append(Problem(file, start, h, "column appears twice in the header"))
                elif h not in _FIELD:
                    problems.append(Problem(file, start, h, "unknown column (not in the codebook)",
                                            "warning"))
                seen.add(h)
            continue
        if len(rec) != len(header):
            problems.append(Problem(file, start, "", f"has {len(rec)} fields but the header has "
                                    f"{len(header)} (a comma or quote in a cell not escaped?)"))
        cells = dict.fromkeys(COLUMNS, "")
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


def _check_cells(row: _Row, out: list[Problem]) -> dict[str, object]:
    """Cell-level checks; returns the parsed values of the cells that passed (None if empty)."""
    val: dict[str, object] = {}

    def bad(col: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(row.file, row.line, col, msg, severity))

    for f in FIELDS:
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
            if f.required:
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


def _check_row(row: _Row, v: dict[str, object], bib: dict[str, object] | None, bib_file: str,
               out: list[Problem]) -> None:
    """Checks that combine cells of one row."""

    def bad(col: str, msg: str, severity: str = "error") -> None:
        out.append(Problem(row.file, row.line, col, msg, severity))

    sid, st, x, n, df = v["study_id"], v["stat_type"], v["stat_value"], v["n"], v["df"]
    n1, n2 = v["n1"], v["n2"]
    if sid is not None:
        for col, suffix in (("es_id", r"_[0-9]+"), ("sample_id", r"_s[0-9]+")):
            if v[col] is not None and not re.fullmatch(re.escape(str(sid)) + suffix, str(v[col])):
                bad(col, f"{v[col]!r} does not belong to study {sid!r} (expected "
                    f"{sid}{'_s' if col == 'sample_id' else '_'}<number>)")
        if bib is not None and sid not in bib:
            bad("study_id", f"{sid!r} has no entry in {bib_file}")
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
    if v["r_kind"] == "partial" and df is not None and df <= 1:
        bad("df", "a partial effect's residual df must exceed 1 (vi = 1 / (df - 1))")
    if v["r_kind"] == "zero-order" and st == "t" and df is not None and n is not None and df != n - 2:
        bad("df", f"a zero-order t has df = n - 2 = {n - 2}, not {df:g}", "warning")
    # conversion to r
    ready = st in STAT_TYPES and x is not None and v["sign"] is not None and n is not None and not negative
    if ready and (st not in ("t", "F") or df is not None):
        r = float(to_r([st], [x], [n], [np.nan if df is None else df],
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
                    missing = _FIELD[col].required and (v[col] is None or v0[col] is None)
                    if v[col] != v0[col] and not missing:  # a missing required value is reported already
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


def _validate(tables: list[tuple[bytes | None, str]], bibs: list[tuple[bytes | None, str]]
              ) -> tuple[ValidationReport, list[_Row], list[dict[str, object]], list[list[str]]]:
    """Validate CSV tables (bytes, file name) together with bibliography files."""
    problems: list[Problem] = []
    rows: list[_Row] = []
    headers: list[list[str]] = []
    for raw, file in tables:
        if raw is None:
            problems.append(Problem(file, 0, "", "file not found"))
            headers.append([])
            continue
        header, rs, ps = _parse_csv(raw, file)
        problems += ps
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
        v = _check_cells(r, problems)
        _check_row(r, v, keys if bib_found else None, bibs[0][1], problems)
        vals.append(v)
    _check_across(rows, vals, problems)
    used = {v["study_id"] for v in vals}
    for key, (file, line) in keys.items():
        if key not in used:
            problems.append(Problem(file, line, key, "bibliography entry without rows in the data", "warning"))
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.row))
    files = tuple(f for _, f in tables) + tuple(f for _, f in bibs)
    return ValidationReport(tuple(problems), files, len(rows)), rows, vals, headers


def validate_studies(path: str | os.PathLike | None = None) -> ValidationReport:
    """Check ``effects.csv`` and ``references.bib`` and report every problem at once.

    ``path`` is the studies folder or an effects CSV (default: :func:`studies_dir`). Each problem
    names the file, the CSV line (header = 1) and the column. Errors: a missing column or required
    value, an unknown category value, a cell that is not a number where one is needed, n < 4, a
    t or F without df, a negative F or chi2, an r outside (-1, 1) after conversion, a duplicate
    es_id or effect, a sample whose n differs across rows without notes saying why, a missing
    quote, a stat_value or n not printed in the quote, a study_id without a bibliography entry,
    a file that is not UTF-8, a cell starting like a spreadsheet formula, HTML or script in a
    cell. Warnings: |beta| > .5, unknown columns, bibliography entries without rows, and other
    oddities that may be right.
    """
    csv_path, bib_path = _paths(path)
    report, *_ = _validate([(_read(csv_path), str(csv_path))], [(_read(bib_path), str(bib_path))])
    return report


# ---------------------------------------------------------------------------------------------
# loading


def _frame(rows: list[_Row], vals: list[dict[str, object]]) -> pd.DataFrame:
    data: dict[str, object] = {}
    for f in FIELDS:
        col = [v[f.name] for v in vals]
        if f.type == "integer":
            data[f.name] = pd.array(col, dtype="Int64")
        elif f.type == "number":
            data[f.name] = np.array([np.nan if x is None else x for x in col], dtype=float)
        else:
            data[f.name] = pd.array(col, dtype="string")
    df = pd.DataFrame(data)
    n_eff = np.where((df["r_kind"] == "partial").to_numpy(dtype=bool) & np.isfinite(df["df"].to_numpy()),
                     df["df"].to_numpy() + 2.0, df["n"].to_numpy(dtype=float))
    r = to_r(df["stat_type"].to_numpy(dtype=object), df["stat_value"].to_numpy(), df["n"].to_numpy(dtype=float),
             df["df"].to_numpy(), df["n1"].to_numpy(dtype=float, na_value=np.nan),
             df["n2"].to_numpy(dtype=float, na_value=np.nan), df["sign"].to_numpy(dtype=float))
    if len(df):
        # vi = 1/(n - 3); for a partial effect with its residual df, n_eff = df + 2 gives 1/(df - 1)
        yi, vi = fisher_z(r, n_eff)
    else:
        yi = vi = np.array([], dtype=float)
    return df.assign(r=r, yi=yi, vi=vi)


def load_studies(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The studies as a tidy DataFrame, one row per effect, ready for the models.

    All columns of ``effects.csv`` (integers as nullable ``Int64``, numbers as float, text as
    ``string``) plus ``r`` (converted with :func:`alliance_meta.effects.to_r` and multiplied by
    ``sign``), ``yi`` (Fisher's z) and ``vi`` (its sampling variance; see the module docstring).
    The files are validated first; any error raises :class:`StudiesValidationError`, which lists
    every error with its file, line and column.
    """
    csv_path, bib_path = _paths(path)
    report, rows, vals, _ = _validate([(_read(csv_path), str(csv_path))], [(_read(bib_path), str(bib_path))])
    if not report.ok:
        raise StudiesValidationError(report)
    return _frame(rows, vals)


# ---------------------------------------------------------------------------------------------
# adding rows


@dataclass(frozen=True, repr=False)
class AppendResult:
    """What :func:`append_rows` added: the es_ids and the bibliography keys, and the report."""

    added: tuple[str, ...]
    bib_keys: tuple[str, ...]
    report: ValidationReport

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame({"es_id": list(self.added)})

    def __repr__(self) -> str:
        return f"AppendResult(added={list(self.added)}, bib_keys={list(self.bib_keys)})"

    def _repr_html_(self) -> str:
        return html.escape(repr(self))


def _csv_bytes(df: pd.DataFrame) -> bytes:
    def cell(x: object) -> str:
        if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
            return ""
        if isinstance(x, float) and x.is_integer():
            return str(int(x))
        return str(x)

    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(df.columns))
    for rec in df.itertuples(index=False):
        w.writerow([cell(x) for x in rec])
    return buf.getvalue().encode("utf-8")


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _appended(old: bytes, new: bytes) -> bytes:
    nl = b"\r\n" if b"\r\n" in old[: old.find(b"\n") + 1] else b"\n"
    new = new.replace(b"\r\n", b"\n").replace(b"\n", nl)
    if old and not old.endswith(b"\n"):
        old += nl
    return old + new


def append_rows(new: str | os.PathLike | pd.DataFrame, path: str | os.PathLike | None = None,
                bib: str | os.PathLike | None = None) -> AppendResult:
    """Append new effect rows (and, optionally, their bibliography entries) to the studies.

    ``new`` is a CSV file with the codebook's header (any column order) or a DataFrame. The new rows
    are validated together with the existing ones (so duplicates of existing es_ids or effects
    are refused); only when there is no error are they appended to ``effects.csv`` through a temporary
    file and ``os.replace``, in the existing file's column order. The rows already there are
    never rewritten: the file's bytes stay as they are and the new rows follow. ``bib`` is a
    BibTeX file whose entries are appended to ``references.bib`` the same way (its keys must be
    new). Raises :class:`StudiesValidationError` (nothing written) if there is any error.
    """
    csv_path, bib_path = _paths(path)
    old, old_bib = _read(csv_path), _read(bib_path)
    if isinstance(new, pd.DataFrame):
        new_raw, new_file = _csv_bytes(new), "<new rows>"
    else:
        new_raw, new_file = _read(Path(new)), str(new)
    bibs = [(old_bib, str(bib_path))]
    if bib is not None:
        bibs.append((_read(Path(bib)), str(bib)))
    report, rows, _, headers = _validate([(old, str(csv_path)), (new_raw, new_file)], bibs)
    problems = list(report.problems)
    new_rows = [r for r in rows if r.file == new_file]
    if not new_rows and new_raw is not None:
        problems.append(Problem(new_file, 0, "", "no rows to add"))
    old_header, new_header = headers
    stray = [h for h in new_header if h not in old_header and any(r.cells.get(h) for r in new_rows)]
    problems += [Problem(new_file, 1, h, f"column not in {csv_path}; cannot append it") for h in stray]
    report = ValidationReport(tuple(problems), report.files, report.n_rows)
    if not report.ok:
        raise StudiesValidationError(report, "append_rows")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    for r in new_rows:
        w.writerow([r.cells.get(h, "") for h in old_header])
    added_keys: tuple[str, ...] = ()
    if bib is not None:
        extra = bibs[1][0]
        added_keys = tuple(_parse_bib(extra, str(bib))[0])
        _atomic_write(bib_path, _appended(old_bib, b"\n" + extra))
    _atomic_write(csv_path, _appended(old, buf.getvalue().encode("utf-8")))
    return AppendResult(tuple(r.cells["es_id"] for r in new_rows), added_keys, report)


# ---------------------------------------------------------------------------------------------
# Frictionless data package


def datapackage() -> dict:
    """The Frictionless Data Package descriptor of ``studies/``, built from :data:`FIELDS`."""
    fields = []
    for f in FIELDS:
        c: dict[str, object] = {}
        if f.required:
            c["required"] = True
        if f.enum is not None:
            c["enum"] = list(f.enum)
        if f.minimum is not None:
            c["minimum"] = f.minimum
        if f.pattern is not None:
            c["pattern"] = f.pattern
        if f.name == "es_id":
            c["unique"] = True
        fields.append({"name": f.name, "type": f.type, "description": f.description,
                       **({"constraints": c} if c else {})})
    return {
        "profile": "tabular-data-package",
        "name": "alliance-outcome-studies",
        "title": "Alliance-outcome effect sizes from published psychotherapy studies",
        "description": (
            "One row per effect size (an association between the therapeutic alliance and a treatment "
            "outcome in one independent sample), with the verbatim quote holding each number. Coding rules: "
            "CODEBOOK.md; bibliography: references.bib; studies left out: EXCLUDED.md. r, yi and vi are "
            "derived by alliance_meta.load_studies() and not stored. Generated by "
            "alliance_meta.data.write_datapackage(); do not edit by hand."
        ),
        "resources": [
            {
                "name": "effects",
                "path": EFFECTS_FILE,
                "profile": "tabular-data-resource",
                "format": "csv",
                "mediatype": "text/csv",
                "encoding": "utf-8",
                "schema": {"fields": fields, "primaryKey": ["es_id"], "missingValues": [""]},
            }
        ],
    }


def write_datapackage(path: str | os.PathLike | None = None) -> Path:
    """Write ``datapackage.json`` into the studies folder (atomically) and return its path."""
    target = studies_dir(path) / DATAPACKAGE_FILE
    text = json.dumps(datapackage(), indent=2, ensure_ascii=False) + "\n"
    _atomic_write(target, text.encode("utf-8"))
    return target

