"""The codebook's schema in one place: vocabularies, :data:`FIELDS` (from which
``studies/datapackage.json`` is written and by which the validator checks each cell), and where
the studies folder is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from ..stats.escalc import STAT_TYPES

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


REVIEW_MARKER = "pipeline.yml"  # what makes a folder a review, as .git makes a repository
PROJECT_ENV = "ALLIANCE_META_PROJECT"


def review_root(start: str | os.PathLike | None = None) -> Path | None:
    """The review folder: ``$ALLIANCE_META_PROJECT`` if set, else the nearest folder at or above
    ``start`` (default: the working directory) holding ``pipeline.yml``; None if there is none.
    Never found from the package's own location (an installed wheel has no studies beside it)."""
    env = os.environ.get(PROJECT_ENV)
    if env:
        return Path(env).resolve()
    here = Path(start if start is not None else Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / REVIEW_MARKER).is_file():
            return d
    return None


def studies_dir(path: str | os.PathLike | None = None) -> Path:
    """The studies folder: ``path`` if given, else ``$ALLIANCE_META_STUDIES``, else ``studies/``
    of the review containing the working directory (:func:`review_root`), else ``./studies``."""
    if path is not None:
        return Path(path)
    env = os.environ.get("ALLIANCE_META_STUDIES")
    if env:
        return Path(env)
    return (review_root() or Path.cwd()) / "studies"


def _paths(path: str | os.PathLike | None) -> tuple[Path, Path]:
    """(effects.csv, references.bib) for a studies folder or an effects CSV file."""
    p = studies_dir(path)
    if p.is_dir():
        return p / EFFECTS_FILE, p / BIB_FILE
    return p, p.parent / BIB_FILE

