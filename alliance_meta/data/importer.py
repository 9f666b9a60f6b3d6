"""Datasets coded elsewhere: :func:`import_effects` turns a meta-analyst's own table into rows of
``studies/effects.csv`` and appends them, all or nothing.

Accepted input (CSV, TSV or Excel, or a DataFrame), after ``rename``:

- the codebook's columns (``stat_type``, ``stat_value``, ``n``, ...), or one of two shorthands
  that meta-analysts already have:
- ``r`` + ``n``: a correlation aligned so that positive means stronger alliance with better
  outcome; stored as ``stat_type = r``, ``sign = 1``. With ``n_covariates`` it is a partial r
  (``stat_type = partial_r``, ``r_kind = partial``), whose variance the loader takes from
  metafor's ``escalc(measure = "ZPCOR")`` (Aloe & Thompson 2013).
- ``yi`` + ``vi``: Fisher's z and its sampling variance, as ``metafor::escalc`` writes them
  (``ZCOR``, Fisher 1921: ``vi = 1 / (n - 3)``; with ``n_covariates``, ``ZPCOR``:
  ``vi = 1 / (n - n_covariates - 2)``). Stored as an r with ``stat_value = tanh(yi)`` at full
  precision and ``n = 3 + 1 / vi`` (or ``n_covariates + 2 + 1 / vi``), so that the loader's own
  conversion gives back yi and vi exactly. A ``vi`` that does not come from a whole n (a variance
  from another formula) is refused rather than changed; give ``r`` and ``n`` then.

``study_id`` is required; ``sample_id``, ``es_id``, ``year``, ``r_kind`` and the codebook's
moderators are optional. A study label that is not an id of the codebook's form (``Smith2010``),
such as "Axelsson et al." with a ``year`` column, becomes one: the letters of its first word and
the year, with a/b/... when two labels would collide; the label as given is kept in ``notes``.
Without ``sample_id``, all effects of one study are taken as one sample (the dependence-aware
choice); without ``es_id``, effects are numbered within their study after those already there.
A study without an entry in ``references.bib`` gets a minimal ``@misc`` entry saying it was
imported. Every row carries ``provenance = external``; the validator's other checks all apply.
Columns that are neither the codebook's nor a shorthand are not imported; their names are
returned in ``.attrs["ignored_columns"]`` (the command line prints them).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .io import append_rows, load_studies
from .schema import _FIELD, COLUMNS, studies_dir
from .tables import Problem, StudiesValidationError, ValidationReport

__all__ = ["import_effects", "read_table"]

EXTERNAL = "external"
_EXCEL = (".xlsx", ".xlsm", ".xls", ".ods")
_VI_WHOLE_N_TOL = 1e-6  # 3 + 1/vi may differ from a whole n by float rounding in a CSV


def _cell(x: object) -> str:
    """A cell as text: empty for missing, whole floats without '.0', others at full precision."""
    if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, (bool, np.bool_)):
        return str(x)
    if isinstance(x, (float, np.floating)):
        return str(int(x)) if float(x).is_integer() else repr(float(x))
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    return str(x).strip()


def _with_lines(df: pd.DataFrame, lines: list[int]) -> pd.DataFrame:
    """Index the rows by their line in the source (header = 1) and drop the empty ones."""
    df = df.set_axis(lines[: len(df)], axis=0)
    return df[(df != "").any(axis=1)] if len(df.columns) else df


def read_table(source: str | os.PathLike | pd.DataFrame, sheet: str | int | None = None
               ) -> tuple[pd.DataFrame, str]:
    """The table as text cells, indexed by each row's line in the source (header = line 1, as
    the validator counts), and the source's name for messages. Empty rows are dropped.

    CSV/TSV must be UTF-8 (a byte-order mark is allowed); the delimiter (comma, semicolon, tab)
    is taken from the header line. Excel files are read with pandas (openpyxl), first sheet
    unless ``sheet``. Raises ValueError naming the file and line of bytes that are not UTF-8.
    """
    if isinstance(source, pd.DataFrame):
        df = source.map(_cell).astype(str)
        return _with_lines(df, list(range(2, len(df) + 2))), "<data frame>"
    path = Path(source)
    name = str(source)
    if path.suffix.lower() in _EXCEL:
        df = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object)
        df = df.map(_cell).astype(str)
        return _with_lines(df, list(range(2, len(df) + 2))), name  # the sheet's row numbers
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{name}:{line}: the file is not UTF-8 (byte {raw[e.start]:#x}); save it as "
                         "UTF-8 CSV") from None
    first = text.split("\n", 1)[0]
    delim = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    records: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise ValueError(f"{name}:{start}: cannot be read as CSV ({e})") from None
        if any(c.strip() for c in rec):
            records.append((start, rec))
    if not records:
        raise ValueError(f"{name}: the file is empty (no header row)")
    header = [h.strip() for h in records[0][1]]
    for line, rec in records[1:]:
        if len(rec) > len(header):
            raise ValueError(f"{name}:{line}: {len(rec)} fields but the header has {len(header)} "
                             "(a comma in a cell not quoted?)")
    body = [[c.strip() for c in rec] + [""] * (len(header) - len(rec)) for _, rec in records[1:]]
    df = pd.DataFrame(body, columns=header, dtype=str)
    return df.set_axis([line for line, _ in records[1:]], axis=0), name


def _slug(label: str) -> str:
    """ASCII letters of a label's first word: 'Åkesson et al.' -> 'Akesson',
    "O'Cleirigh et al." -> 'OCleirigh'."""
    ascii_ = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode()
    words = [re.sub(r"[^A-Za-z]", "", w) for w in ascii_.split()]
    return next((w for w in words if w), "")


_LABEL_NOTE = "study as given in the imported file: "


def _study_ids(df: pd.DataFrame, existing: pd.DataFrame, problems: list[Problem], file: str
               ) -> None:
    """Make study_id the codebook's id (letters + year), keeping a foreign label in notes; a
    label imported before gets the id it got then (so a second import is seen as a duplicate)."""
    pattern = _FIELD["study_id"].pattern or ""
    given: dict[tuple[str, str], str] = {}
    used = set(existing.get("study_id", []))
    for sid, year, note in zip(existing.get("study_id", []), existing.get("year", []),
                               existing.get("notes", []), strict=True):
        if isinstance(note, str) and note.startswith(_LABEL_NOTE):
            label = note[len(_LABEL_NOTE):].split("; ", 1)[0]
            given[(label, "" if pd.isna(year) else str(year))] = sid
    for i, (label, year) in enumerate(zip(df["study_id"], df["year"], strict=True)):
        if not label or re.fullmatch(pattern, label):
            continue
        key = (label, year)
        if key in given:
            continue
        m = re.search(r"\b(1[89]|20)\d{2}\b", label)
        yr = year or (m.group(0) if m else "")
        stem = _slug(label)
        if not stem or not re.fullmatch(r"\d{4}", yr):
            problems.append(Problem(file, int(df.index[i]), "study_id", f"{label!r} is not an id such as "
                                    "Smith2010 and no year to make one (give a year column)"))
            given[key] = label
            continue
        new = stem + yr
        if new in used:
            new = next(new + s for s in "abcdefghijklmnopqrstuvwxyz" if new + s not in used)
        used.add(new)
        given[key] = new
    for i, (label, year) in enumerate(zip(df["study_id"], df["year"], strict=True)):
        new = given.get((label, year))
        if new and new != label:
            df.loc[df.index[i], "study_id"] = new
            note = f"{_LABEL_NOTE}{label}"
            old = df.at[df.index[i], "notes"]
            df.loc[df.index[i], "notes"] = f"{note}; {old}" if old else note


def _shorthand(df: pd.DataFrame, problems: list[Problem], file: str) -> None:
    """Fill stat_type/stat_value/sign from ``r`` or ``yi``/``vi`` where the codebook's are empty."""
    has = set(df.columns)
    for i in range(len(df)):
        idx = df.index[i]
        if df.at[idx, "stat_type"] or df.at[idx, "stat_value"]:
            continue
        r = df.at[idx, "r"] if "r" in has else ""
        yi = df.at[idx, "yi"] if "yi" in has else ""
        vi = df.at[idx, "vi"] if "vi" in has else ""
        q = df.at[idx, "n_covariates"]
        stat = "partial_r" if q else "r"
        if q and not q.isdigit():
            problems.append(Problem(file, int(df.index[i]), "n_covariates", f"{q!r} is not a whole number"))
            continue
        if r:
            df.loc[idx, ["stat_type", "stat_value"]] = [stat, r]
        elif yi or vi:
            try:
                y, v = float(yi), float(vi)
            except ValueError:
                problems.append(Problem(file, int(df.index[i]), "yi" if yi else "vi",
                                        "yi and vi must both be numbers"))
                continue
            if not (np.isfinite(y) and np.isfinite(v) and v > 0):
                problems.append(Problem(file, int(df.index[i]), "vi", f"vi = {vi} must be a positive number"))
                continue
            n_z = (int(q) + 2.0 if q else 3.0) + 1.0 / v  # ZPCOR / ZCOR variance solved for n
            n_given = df.at[idx, "n"]
            if abs(n_z - round(n_z)) > _VI_WHOLE_N_TOL * n_z:
                form = "1/(n - n_covariates - 2)" if q else "1/(n - 3)"
                problems.append(Problem(file, int(df.index[i]), "vi", f"vi = {vi} is not {form} for a whole n "
                                        "(a variance from another formula?); give r and n instead"))
                continue
            if n_given and n_given != str(round(n_z)):
                problems.append(Problem(file, int(df.index[i]), "n", f"n = {n_given} but vi = {vi} means "
                                        f"n = {round(n_z)}"))
                continue
            df.loc[idx, ["stat_type", "stat_value", "n"]] = [stat, repr(float(np.tanh(y))),
                                                            str(round(n_z))]
        else:
            continue  # the validator reports the missing statistic
        if not df.at[idx, "sign"]:
            df.loc[idx, "sign"] = "1"  # the shorthand's r is already aligned
        if not df.at[idx, "r_kind"]:
            df.loc[idx, "r_kind"] = "partial" if q else "zero-order"


def _number_within_study(df: pd.DataFrame, existing: pd.DataFrame) -> None:
    """Default sample_id (one sample per study) and es_id (numbered after existing ones)."""
    last: dict[str, int] = {}
    for es in existing.get("es_id", pd.Series(dtype=str)):
        sid, _, k = str(es).rpartition("_")
        if k.isdigit():
            last[sid] = max(last.get(sid, 0), int(k))
    for idx in df.index:
        sid = df.at[idx, "study_id"]
        if not sid:
            continue
        if not df.at[idx, "sample_id"]:
            df.loc[idx, "sample_id"] = f"{sid}_s1"
        if not df.at[idx, "es_id"]:
            last[sid] = last.get(sid, 0) + 1
            df.loc[idx, "es_id"] = f"{sid}_{last[sid]}"


def _bib_entries(df: pd.DataFrame, known: str, file: str) -> str:
    """Minimal BibTeX entries for studies the bibliography lacks (honest about what is known)."""
    entries = []
    for sid, rows in df.groupby("study_id", sort=False):
        if not sid or re.search(r"@\s*\w+\s*[{(]\s*" + re.escape(sid) + r"\s*,", known):
            continue
        label = next((n[len(_LABEL_NOTE):].split("; ", 1)[0] for n in rows["notes"]
                      if n.startswith(_LABEL_NOTE)), sid)
        year = next((y for y in rows["year"] if y), "")
        doi = next((d for d in rows["doi"] if d), "")
        fields = [f"  title = {{Study {label}, imported from {Path(file).name} by alliance-meta "
                  "import; full reference not given}"]
        if year:
            fields.append(f"  year = {{{year}}}")
        if doi:
            fields.append(f"  doi = {{{doi}}}")
        entries.append(f"@misc{{{sid},\n" + ",\n".join(fields) + "\n}\n")
    return "\n".join(entries)


def _relabel(report: ValidationReport, file: str, back: Mapping[str, str], lines: list[int]
             ) -> ValidationReport:
    """Problems of the generated rows named by the user's file, line and column names (the
    generated table has a header and one line per row: its line L is source row L - 2)."""
    out = []
    for p in report.problems:
        if p.file == "<new rows>":
            col = f"{p.column} ({back[p.column]} in the file)" if p.column in back else p.column
            row = lines[p.row - 2] if 2 <= p.row < len(lines) + 2 else p.row
            p = p._replace(file=file, column=col, row=row)
        out.append(p)
    return ValidationReport(tuple(out), report.files, report.n_rows)


def import_effects(source: str | os.PathLike | pd.DataFrame,
                   rename: Mapping[str, str] | None = None,
                   path: str | os.PathLike | None = None,
                   *, sheet: str | int | None = None, dry_run: bool = False) -> pd.DataFrame:
    """Import a dataset coded elsewhere into the review's studies and return its validated rows.

    ``source`` is a CSV/TSV/Excel file or a DataFrame; ``rename`` maps its column names to the
    codebook's (``{"Author": "study_id", "N": "n", "r_xy": "r"}``); ``path`` is the studies
    folder (default: the review containing the working directory). See the module docstring
    for the accepted columns. The new rows are validated together with the existing ones and
    appended (with bibliography entries for new studies) only if there is no error; otherwise
    :class:`StudiesValidationError` lists every problem by file, line and column and nothing
    is written. ``dry_run`` validates without writing. Returns the new rows as
    :func:`load_studies` gives them (with ``r``, ``yi``, ``vi``).
    """
    df, file = read_table(source, sheet)
    rename = dict(rename or {})
    problems: list[Problem] = []
    missing = [old for old in rename if old not in df.columns]
    problems += [Problem(file, 1, old, f"--rename {old}={rename[old]}: no such column "
                         f"(columns: {', '.join(df.columns)})") for old in missing]
    df = df.rename(columns={k: v for k, v in rename.items() if k in df.columns})
    dup = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    problems += [Problem(file, 1, c, "two columns have this name after renaming") for c in dup]
    if "study_id" not in df.columns:
        problems.append(Problem(file, 1, "study_id", "no study_id column (rename the study "
                                "label's column, e.g. --rename Author=study_id)"))
    if not ({"stat_type", "stat_value"} <= set(df.columns) or "r" in df.columns
            or {"yi", "vi"} <= set(df.columns)):
        problems.append(Problem(file, 1, "", "no effect size: give r and n, or yi and vi (Fisher "
                                "z), or the codebook's stat_type and stat_value"))
    if problems:
        raise StudiesValidationError(ValidationReport(tuple(problems), (file,), len(df)),
                                     "import_effects")
    back = {v: k for k, v in rename.items()}
    shorthand = {"r", "yi", "vi"}
    ignored = [c for c in df.columns if c not in COLUMNS and c not in shorthand]
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = ""
    if "provenance" in COLUMNS:
        df["provenance"] = df["provenance"].where(df["provenance"] != "", EXTERNAL)
    studies = studies_dir(path)
    existing = load_studies(studies) if (studies / "effects.csv").exists() else pd.DataFrame()
    _study_ids(df, existing, problems, file)
    _shorthand(df, problems, file)
    _number_within_study(df, existing)
    if problems:
        raise StudiesValidationError(ValidationReport(tuple(problems), (file,), len(df)),
                                     "import_effects")
    new = df[list(COLUMNS)]
    lines = [int(x) for x in new.index]
    bib_path = studies / "references.bib"
    bib_text = _bib_entries(new, bib_path.read_text(encoding="utf-8") if bib_path.exists() else "",
                            file)
    with tempfile.TemporaryDirectory() as tmp:
        extra_bib = Path(tmp) / "imported.bib"
        extra_bib.write_text(bib_text, encoding="utf-8")
        target = studies
        if dry_run:
            target = Path(tmp) / "studies"
            shutil.copytree(studies, target)
        try:
            result = append_rows(new, target, bib=extra_bib if bib_text else None)
        except StudiesValidationError as e:
            raise StudiesValidationError(_relabel(e.report, file, back, lines), "import_effects") from None
        rows = load_studies(target)
    out = rows[rows["es_id"].isin(result.added)].reset_index(drop=True)
    out.attrs["ignored_columns"] = ignored
    out.attrs["warnings"] = [str(p) for p in _relabel(result.report, file, back, lines).warnings]
    return out
