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

# every statistic escalc converts, plus a partial r printed as such with its number of covariates
STAT_TYPES_CODED = (*STAT_TYPES, "partial_r")
R_KINDS = ("zero-order", "partial")
MODALITIES = (
    "CBT", "psychodynamic", "humanistic", "interpersonal", "integrative", "systemic",
    "motivational", "third-wave", "pharmacotherapy", "mixed", "other",
)  # fmt: skip
FORMATS = ("individual", "group", "couple", "family")
DELIVERIES = ("face-to-face", "internet", "telephone", "video", "app", "blended")
POPULATIONS = ("adult", "child-adolescent")
# instruments as the field names them (Flückiger et al. 2018; Horvath et al. 2011); see CODEBOOK.md
ALLIANCE_MEASURES = (
    "WAI", "WAI-S", "WAI-SR", "WAI-O", "WAI-O-S", "WAI-T", "WAI-I", "HAq", "HAq-II", "CALPAS",
    "VTAS", "VPPS", "ARM", "ARM-5", "ARM-12", "SRS", "TASC", "TAS", "CTAS", "SOFTA",
    "VTAS-virtual", "other",
)  # fmt: skip
ALLIANCE_TARGETS = ("therapist", "program", "virtual-agent", "group")
ALLIANCE_RATERS = ("client", "therapist", "observer", "parent")
TIMINGS = ("early", "mid", "late", "averaged", "unspecified")
OUTCOME_TYPES = ("target-symptoms", "general-distress", "functioning", "well-being", "retention", "other")
OUTCOME_RATERS = ("client", "therapist", "observer", "parent", "teacher", "other")
OUTCOME_TIMINGS = ("during-treatment", "post-treatment", "follow-up")
YES_NO = ("yes", "no")
DESIGNS = ("RCT", "naturalistic", "other")
PUBLICATION_TYPES = ("journal", "dissertation", "chapter", "conference")
SOURCE_TYPES = ("primary", "secondary")
PROVENANCES = ("curated", "external")
QA_LEVELS = ("yes", "no", "unclear")
SIGNS = (1, -1)

_ID = r"[A-Za-z]+[0-9]{4}[a-z]?"  # study_id: first author + year (+ a/b); also the bib key
_SAMPLE = r"[A-Za-z0-9][A-Za-z0-9_.-]*"  # any plain id: two papers on one trial share a sample


class Field(NamedTuple):
    """One column of a studies table as a Frictionless Table Schema field.

    ``required``: every row needs it. ``curated``: rows with ``provenance = curated`` need it
    too (rows imported from a dataset coded elsewhere, ``provenance = external``, may leave it
    empty; issue 13).
    """

    name: str
    type: str  # Table Schema type: string, integer or number
    required: bool
    description: str
    enum: tuple | None = None
    minimum: int | None = None
    pattern: str | None = None  # matched against the whole cell
    curated: bool = False


_QA = "NIH/NHLBI Quality Assessment Tool for Observational Cohort and Cross-Sectional Studies (2014)"

FIELDS: tuple[Field, ...] = (
    Field("es_id", "string", True, "Unique id of the effect: <study_id>_<k>.", pattern=_ID + r"_[0-9]+"),
    Field("study_id", "string", True, "First author + year (a/b suffix); key in references.bib.", pattern=_ID),
    Field("sample_id", "string", True, "One independent sample, usually <study_id>_s<j>; papers on one trial may share it.", pattern=_SAMPLE),
    Field("n", "integer", True, "n of the analysis that produced the statistic.", minimum=4),
    Field("stat_type", "string", True, "Reported statistic.", enum=STAT_TYPES_CODED),
    Field("stat_value", "number", True, "The statistic as printed (F and chi2 >= 0)."),
    Field("df", "number", False, "t: its df; F: denominator df of F(1, df). Required for t and F.", minimum=1),
    Field("n1", "integer", False, "Group size 1 for a d.", minimum=1),
    Field("n2", "integer", False, "Group size 2 for a d.", minimum=1),
    Field("sign", "integer", True, "Multiplies the converted r so that positive = stronger alliance with better outcome.", enum=SIGNS),
    Field("r_kind", "string", True, "zero-order or partial (model with covariates).", enum=R_KINDS),
    Field("n_covariates", "integer", False, "Covariates in the model besides alliance, as printed; required for partial_r.", minimum=0),
    Field("modality", "string", False, "Treatment approach.", enum=MODALITIES, curated=True),
    Field("format", "string", False, "Treatment format.", enum=FORMATS, curated=True),
    Field("delivery", "string", False, "Delivery mode.", enum=DELIVERIES, curated=True),
    Field("population", "string", False, "Population.", enum=POPULATIONS, curated=True),
    Field("diagnosis", "string", False, "Short free text."),
    Field("alliance_measure", "string", False, "Alliance instrument (other: named in notes).", enum=ALLIANCE_MEASURES, curated=True),
    Field("alliance_target", "string", False, "With whom or what the alliance is formed.", enum=ALLIANCE_TARGETS),
    Field("alliance_rater", "string", False, "Who rated the alliance.", enum=ALLIANCE_RATERS, curated=True),
    Field("alliance_timing", "string", False, "When the alliance was measured.", enum=TIMINGS, curated=True),
    Field("alliance_session", "integer", False, "Session of the alliance measurement, where given.", minimum=0),
    Field("outcome_measure", "string", False, "Outcome instrument, short free text.", curated=True),
    Field("outcome_type", "string", False, "Kind of outcome.", enum=OUTCOME_TYPES),
    Field("outcome_rater", "string", False, "Who rated the outcome.", enum=OUTCOME_RATERS, curated=True),
    Field("outcome_timing", "string", False, "When the outcome was measured.", enum=OUTCOME_TIMINGS),
    Field("prior_change_controlled", "string", False, "Earlier symptom change controlled, as the source says.", enum=YES_NO),
    Field("design", "string", False, "Study design.", enum=DESIGNS, curated=True),
    Field("country", "string", False, "Country of the sample, in English, where the source says."),
    Field("year", "integer", False, "Publication year.", minimum=1900, curated=True),
    Field("publication_type", "string", False, "Publication type.", enum=PUBLICATION_TYPES, curated=True),
    Field("source_type", "string", False, "primary (the study's own text) or secondary (a review's study table).", enum=SOURCE_TYPES, curated=True),
    Field("provenance", "string", True, "curated (coded here from a quote) or external (imported dataset).", enum=PROVENANCES),
    Field("qa_temporal", "string", False, f"Alliance measured before the outcome ({_QA}, item 6).", enum=QA_LEVELS),
    Field("qa_alliance_valid", "string", False, f"Named, validated alliance instrument ({_QA}, item 9).", enum=QA_LEVELS),
    Field("qa_outcome_valid", "string", False, f"Named, validated outcome instrument ({_QA}, item 11).", enum=QA_LEVELS),
    Field("qa_adjusted", "string", False, f"Baseline symptom level controlled ({_QA}, item 14).", enum=QA_LEVELS),
    Field("qa_attrition", "string", False, f"Analysed n >= 80% of those enrolled ({_QA}, item 13).", enum=QA_LEVELS),
    Field("doi", "string", False, "DOI as printed, without https://doi.org/."),
    Field("source_url", "string", False, "The page(s) read, separated by ' ; '.", curated=True),
    Field("quote", "string", False, "Verbatim sentence(s) holding stat_value and n (segments joined by ' | ').", curated=True),
    Field("notes", "string", False, "Anything a reviewer needs."),
)  # fmt: skip

COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
ENUMS: dict[str, tuple] = {f.name: f.enum for f in FIELDS if f.enum is not None}
_FIELD = {f.name: f for f in FIELDS}

# ---------------------------------------------------------------------------------------------
# studies/screening.csv: one row per record read (PRISMA 2020 flow)

STREAMS = ("studies", "syntheses")  # what the record was screened for: effects.csv or syntheses.csv
FOUND_VIA = ("search", "lead", "citation")
DECISIONS = ("included", "excluded", "not-retrieved", "duplicate")
REASONS = (
    "no-statistic", "n-unclear", "sign-unclear", "partial-without-df", "not-convertible",
    "subgroup-only", "reverse-direction", "not-outcome", "not-alliance", "not-primary",
    "repeated-measures", "overlapping-sample", "not-retrieved", "other",
)  # fmt: skip
_RECORD = r"[A-Za-z0-9]+-[0-9]+"

SCREENING_FIELDS: tuple[Field, ...] = (
    Field("record_id", "string", True, "Unique id of the record: <source>-<nnn>.", pattern=_RECORD),
    Field("stream", "string", True, "What the record was screened for: studies (effects.csv) or syntheses (syntheses.csv).", enum=STREAMS),
    Field("citation", "string", True, "Authors (year). Title. Journal, as far as printed on the pages read."),
    Field("doi", "string", False, "DOI as printed, without https://doi.org/."),
    Field("url", "string", False, "The page(s) read, separated by ' ; '."),
    Field("found_via", "string", True, "search (a query of the stored pages), lead (a list of leads), citation (named on another page read).", enum=FOUND_VIA),
    Field("decision", "string", True, "included, excluded, not-retrieved (looked for, not readable) or duplicate (of duplicate_of).", enum=DECISIONS),
    Field("reason", "string", False, "Why excluded (required for excluded; not-retrieved for not-retrieved; empty otherwise).", enum=REASONS),
    Field("study_id", "string", False, "For included records: the study_id in effects.csv or the synthesis_id in syntheses.csv.", pattern=_ID),
    Field("duplicate_of", "string", False, "For duplicates: the record_id of the record kept.", pattern=_RECORD),
    Field("note", "string", False, "One or two plain sentences for a reader (required unless included)."),
)  # fmt: skip

# ---------------------------------------------------------------------------------------------
# studies/syntheses.csv: one row per pooled estimate a published meta-analysis prints

SYNTHESIS_POPULATIONS = (
    "adult-general", "CBT", "psychodynamic", "youth", "couple-family", "group", "internet",
    "teletherapy", "psychosis", "eating-disorders", "PTSD", "depression", "anxiety",
    "substance-use", "personality-disorders", "pharmacotherapy", "medicine", "forensic", "other",
)  # fmt: skip
CONSTRUCTS = ("alliance", "cohesion", "rupture-repair", "alliance-change", "other")
METRICS = ("r", "d", "g", "z", "other")
K_UNITS = ("studies", "samples", "effects")
MODELS = ("random-effects", "fixed-effect", "multilevel", "unknown")

SYNTHESES_FIELDS: tuple[Field, ...] = (
    Field("synthesis_id", "string", True, "First author + year (a/b suffix); key in syntheses.bib.", pattern=_ID),
    Field("estimate_id", "string", True, "Unique id of the estimate: <synthesis_id>_<k>.", pattern=_ID + r"_[0-9]+"),
    Field("authors", "string", True, "Authors as printed on a page read."),
    Field("year", "integer", True, "Publication year as printed on a page read.", minimum=1900),
    Field("title", "string", False, "Title as printed."),
    Field("journal", "string", False, "Journal as printed."),
    Field("doi", "string", False, "DOI as printed, without https://doi.org/."),
    Field("population", "string", True, "Population or treatment the synthesis covers.", enum=SYNTHESIS_POPULATIONS),
    Field("construct", "string", True, "What was pooled; cohesion and rupture-repair are their own constructs.", enum=CONSTRUCTS),
    Field("subgroup", "string", True, "overall, or the moderator level as printed (short)."),
    Field("metric", "string", True, "The metric as printed (not converted).", enum=METRICS),
    Field("estimate", "number", True, "The pooled estimate as printed."),
    Field("ci_lb", "number", False, "Lower bound of its confidence interval, as printed."),
    Field("ci_ub", "number", False, "Upper bound of its confidence interval, as printed."),
    Field("k", "integer", False, "Number of studies, samples or effects pooled, as printed.", minimum=1),
    Field("k_unit", "string", False, "What k counts, as printed.", enum=K_UNITS),
    Field("n", "integer", False, "Number of participants, as printed.", minimum=1),
    Field("model", "string", True, "Model as printed.", enum=MODELS),
    Field("source_url", "string", True, "The page(s) read, separated by ' ; '."),
    Field("quote", "string", True, "Verbatim sentence(s) holding estimate, CI, k and n (segments joined by ' | ')."),
    Field("notes", "string", False, "Anything a reader needs."),
)  # fmt: skip

EFFECTS_FILE = "effects.csv"
SCREENING_FILE = "screening.csv"
SYNTHESES_FILE = "syntheses.csv"
SYNTHESES_BIB_FILE = "syntheses.bib"
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

