"""The screening log ``studies/screening.csv``: one row per record read, validated like the
effects, and the counts of a PRISMA 2020 flow diagram derived from it.

Page, M. J., McKenzie, J. E., Bossuyt, P. M., et al. (2021). The PRISMA 2020 statement: an updated
guideline for reporting systematic reviews. BMJ, 372, n71. doi:10.1136/bmj.n71

How the log maps onto the flow diagram (also in ``studies/CODEBOOK.md``): every row is a record
identified (by ``found_via``); a record identified again is kept as one ``duplicate`` row that
points to the record kept (``duplicate_of``) and is counted as a duplicate removed before
screening. Each remaining record was read as far as the stored pages allowed, so records screened
= reports sought for retrieval; ``not-retrieved`` rows are reports not retrieved; the rest were
assessed for eligibility and are ``excluded`` (with a reason) or ``included``. Records are counted
per ``stream``: ``studies`` (screened for effects.csv) or ``syntheses`` (for syntheses.csv).
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass

import pandas as pd

from .schema import (
    EFFECTS_FILE,
    FOUND_VIA,
    REASONS,
    SCREENING_FIELDS,
    SCREENING_FILE,
    STREAMS,
    SYNTHESES_FILE,
    studies_dir,
)
from .tables import (
    Problem,
    StudiesValidationError,
    ValidationReport,
    _check_cells,
    _parse_csv,
    _read,
    _Row,
)

__all__ = ["validate_screening", "load_screening", "prisma_counts", "PrismaCounts"]


def _column(path: os.PathLike | str, name: str) -> set[str] | None:
    """The non-empty values of one column of a CSV file (None if the file is absent)."""
    raw = _read(studies_dir(path))
    if raw is None:
        return None
    _, rows, _ = _parse_csv(raw, str(path), ())
    return {r.cells.get(name, "").strip() for r in rows} - {""}


def _doi_key(doi: str) -> str:
    return re.sub(r"^(https?://)?(dx\.)?doi\.org/", "", doi.strip().lower())


def _check(rows: list[_Row], out: list[Problem], ids: dict[str, set[str] | None],
           id_files: dict[str, str]) -> list[dict[str, object]]:
    vals = [_check_cells(r, out, SCREENING_FIELDS) for r in rows]
    first: dict[object, _Row] = {}
    for r, v in zip(rows, vals, strict=True):
        rid = v["record_id"]
        if rid is not None:
            if rid in first:
                out.append(Problem(r.file, r.line, "record_id",
                                   f"duplicate record_id {rid!r} (first on line {first[rid].line})"))
            else:
                first[rid] = r
    by_id = {v["record_id"]: v for v in vals if v["record_id"] is not None}
    included: dict[str, set[str]] = {s: set() for s in STREAMS}
    doi_seen: dict[tuple[object, str], _Row] = {}
    for r, v in zip(rows, vals, strict=True):
        def bad(col: str, msg: str, severity: str = "error", r: _Row = r) -> None:
            out.append(Problem(r.file, r.line, col, msg, severity))

        dec, reason, sid, dup, stream = v["decision"], v["reason"], v["study_id"], v["duplicate_of"], v["stream"]
        has = {c: bool(r.cells.get(c, "").strip()) for c in ("reason", "study_id", "duplicate_of", "note")}
        if dec == "included":
            if has["reason"]:
                bad("reason", "an included record has no reason for exclusion")
            if not has["study_id"]:
                bad("study_id", "missing value: an included record names its study_id")
            elif sid is not None and stream in ids:
                known = ids[stream]
                if known is not None and sid not in known:
                    bad("study_id", f"{sid!r} is not a study_id in {id_files[stream]}")
                included[str(stream)].add(str(sid))
        elif dec is not None:
            if has["study_id"]:
                bad("study_id", f"a study_id is given only for included records, not for {dec!r}", "warning")
            if not has["note"]:
                bad("note", f"missing value: a record {dec} needs a note saying why, for a reader")
        if dec == "excluded":
            if not has["reason"]:
                bad("reason", f"missing value: an excluded record needs a reason ({', '.join(REASONS)})")
            elif reason == "not-retrieved":
                bad("reason", "a record that could not be read has decision not-retrieved, not excluded")
        if dec == "not-retrieved" and reason != "not-retrieved" and reason is not None:
            bad("reason", "a not-retrieved record has reason not-retrieved")
        if dec == "not-retrieved" and not has["reason"]:
            bad("reason", "missing value: a not-retrieved record has reason not-retrieved")
        if dec == "duplicate":
            if has["reason"]:
                bad("reason", "a duplicate has no reason of its own: the record it duplicates carries the decision")
            if not has["duplicate_of"]:
                bad("duplicate_of", "missing value: a duplicate names the record_id it duplicates")
            elif dup is not None:
                kept = by_id.get(dup)
                if kept is None:
                    bad("duplicate_of", f"{dup!r} is not a record_id of this log")
                elif kept["decision"] == "duplicate":
                    bad("duplicate_of", f"{dup!r} is itself a duplicate; point to the record kept")
                elif kept["stream"] != stream:
                    bad("duplicate_of", f"{dup!r} was screened for {kept['stream']}, this record for {stream}")
                elif dup == v["record_id"]:
                    bad("duplicate_of", "a record cannot duplicate itself")
        elif has["duplicate_of"]:
            bad("duplicate_of", "duplicate_of is given only for decision duplicate")
        if dec != "duplicate" and r.cells.get("doi", "").strip():
            key = (stream, _doi_key(r.cells["doi"]))
            if key in doi_seen:
                bad("doi", f"same DOI as line {doi_seen[key].line}: one record read twice? (mark one as "
                    "duplicate)", "warning")
            else:
                doi_seen[key] = r
    # every included study of the data has its record (so that the PRISMA counts add up); a
    # review that keeps no screening log (e.g. a dataset imported from elsewhere) is not held to it
    if not rows:
        return vals
    for stream, known in ids.items():
        for sid in sorted((known or set()) - included[stream]):
            out.append(Problem(rows[0].file if rows else id_files[stream], 0, "study_id",
                               f"{sid!r} ({id_files[stream]}) has no included record in the screening log"))
    return vals


def validate_screening(path: str | os.PathLike | None = None) -> ValidationReport:
    """Check ``screening.csv`` of a studies folder and report every problem with file, line, column.

    Errors: a missing column or required value, an unknown value (stream, found_via, decision,
    reason), a duplicate record_id, an included record without a study_id or whose study_id is
    not in effects.csv (stream studies) or syntheses.csv (stream syntheses), a study or synthesis
    of the data without an included record, an excluded record without a reason, a
    not-retrieved record whose reason is not not-retrieved, a duplicate without ``duplicate_of``
    or pointing to a record that is missing, itself a duplicate or in another stream, a record
    not included without a note; spreadsheet formulas and markup as for the effects. Warnings:
    two records (not marked duplicate) with the same DOI, a study_id on a record not included.
    A folder without screening.csv (a review that keeps no screening log) has no problems.
    """
    folder = studies_dir(path)
    target = folder / SCREENING_FILE
    report, *_ = _validate(target, folder)
    return report


def _validate(target, folder) -> tuple[ValidationReport, list[_Row], list[dict[str, object]]]:
    problems: list[Problem] = []
    raw = _read(target)
    rows: list[_Row] = []
    vals: list[dict[str, object]] = []
    if raw is not None:  # a review without a screening log has nothing to check
        _, rows, ps = _parse_csv(raw, str(target), SCREENING_FIELDS)
        problems += ps
        ids = {"studies": _column(folder / EFFECTS_FILE, "study_id"),
               "syntheses": _column(folder / SYNTHESES_FILE, "synthesis_id")}
        id_files = {"studies": str(folder / EFFECTS_FILE), "syntheses": str(folder / SYNTHESES_FILE)}
        vals = _check(rows, problems, ids, id_files)
    problems.sort(key=lambda p: (p.severity != "error", p.file, p.row))
    return ValidationReport(tuple(problems), (str(target),), len(rows)), rows, vals


def load_screening(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """The screening log as a DataFrame (text columns as ``string``), validated first; any error
    raises :class:`StudiesValidationError` listing every error with file, line and column.
    Without screening.csv the table is empty (with its columns)."""
    folder = studies_dir(path)
    report, _, vals = _validate(folder / SCREENING_FILE, folder)
    if not report.ok:
        raise StudiesValidationError(report, "load_screening")
    return pd.DataFrame({f.name: pd.array([v[f.name] for v in vals], dtype="string")
                         for f in SCREENING_FIELDS})


@dataclass(frozen=True, repr=False)
class PrismaCounts:
    """The boxes of a PRISMA 2020 flow diagram for one stream of the screening log.

    ``identified``: records per source (``found_via``); ``duplicates``: records removed as
    duplicates before screening; ``screened`` = ``sought`` (every record left was read as far as
    the stored pages allowed); ``not_retrieved``; ``assessed``; ``excluded``: reports excluded per
    reason; ``included``: records included; ``studies``, ``samples``, ``effects``: what they add
    to effects.csv (None without the effects table), or for the syntheses stream ``studies`` =
    meta-analyses and ``effects`` = pooled estimates.
    """

    stream: str
    identified: dict[str, int]
    duplicates: int
    screened: int
    sought: int
    not_retrieved: int
    assessed: int
    excluded: dict[str, int]
    included: int
    studies: int | None = None
    samples: int | None = None
    effects: int | None = None

    @property
    def identified_total(self) -> int:
        return sum(self.identified.values())

    def summary(self) -> pd.DataFrame:
        """One row per box: stage, label, n (the table beside the diagram)."""
        rows = [("identification", f"records identified via {k}", v) for k, v in self.identified.items()]
        rows += [("identification", "duplicate records removed", self.duplicates),
                 ("screening", "records screened", self.screened),
                 ("screening", "reports sought for retrieval", self.sought),
                 ("screening", "reports not retrieved", self.not_retrieved),
                 ("screening", "reports assessed for eligibility", self.assessed)]
        rows += [("screening", f"reports excluded: {k}", v) for k, v in self.excluded.items()]
        rows += [("included", "records included", self.included)]
        unit = ("meta-analyses", "samples", "pooled estimates") if self.stream == "syntheses" else (
            "studies", "samples", "effects")
        for label, n in zip(unit, (self.studies, self.samples, self.effects), strict=True):
            if n is not None:
                rows.append(("included", label, n))
        return pd.DataFrame(rows, columns=["stage", "label", "n"])

    def __repr__(self) -> str:
        return f"PrismaCounts({self.stream}: " + ", ".join(
            f"{r.label} = {r.n}" for r in self.summary().itertuples()) + ")"

    def _repr_html_(self) -> str:
        return f"<div><b>PRISMA 2020 counts ({html.escape(self.stream)})</b>" + self.summary().to_html(
            index=False, border=0) + "</div>"


def prisma_counts(screening: pd.DataFrame, effects: pd.DataFrame | None = None,
                  stream: str = "studies", syntheses: pd.DataFrame | None = None) -> PrismaCounts:
    """The PRISMA 2020 counts of one ``stream`` of a screening log (see the module docstring).

    ``screening`` is :func:`load_screening`'s table. With ``effects`` (:func:`load_studies`) the
    included studies, samples and effects are counted from the rows of the included study_ids;
    for ``stream="syntheses"`` pass ``syntheses`` (:func:`load_syntheses`) to count meta-analyses
    and their pooled estimates. Counts are taken as they are: nothing is estimated.
    """
    if stream not in STREAMS:
        raise ValueError(f"prisma_counts: stream must be one of {STREAMS}, not {stream!r}")
    missing = {"found_via", "decision", "reason", "study_id", "stream"} - set(screening.columns)
    if missing:
        raise ValueError(f"prisma_counts: the screening table lacks column(s) {sorted(missing)}")
    s = screening[screening["stream"] == stream]
    identified = {k: int((s["found_via"] == k).sum()) for k in FOUND_VIA}
    dec = s["decision"]
    duplicates = int((dec == "duplicate").sum())
    screened = len(s) - duplicates
    not_retrieved = int((dec == "not-retrieved").sum())
    excl = s.loc[dec == "excluded", "reason"]
    excluded = {k: int((excl == k).sum()) for k in REASONS if (excl == k).any()}
    inc = s.loc[dec == "included", "study_id"].dropna().astype(str)
    studies = samples = effects_n = None
    if stream == "studies" and effects is not None:
        rows = effects[effects["study_id"].astype(str).isin(set(inc))]
        studies, samples, effects_n = rows["study_id"].nunique(), rows["sample_id"].nunique(), len(rows)
    if stream == "syntheses" and syntheses is not None:
        rows = syntheses[syntheses["synthesis_id"].astype(str).isin(set(inc))]
        studies, effects_n = rows["synthesis_id"].nunique(), len(rows)
    return PrismaCounts(stream, identified, duplicates, screened, screened, not_retrieved,
                        screened - not_retrieved, excluded, int((dec == "included").sum()),
                        studies, samples, effects_n)
