"""The data floor: the codebook's schema, quote checks, validation, loading and appending
effects, the screening log, the published syntheses and the Frictionless data package.
Imports only from :mod:`alliance_meta.stats`."""

from .datapackage import datapackage, write_datapackage
from .io import AppendResult, append_rows, load_studies
from .quotes import number_in_quote
from .schema import (  # noqa: F401  (the codebook's vocabularies, for callers)
    ALLIANCE_MEASURES,
    ALLIANCE_RATERS,
    ALLIANCE_TARGETS,
    COLUMNS,
    DELIVERIES,
    DESIGNS,
    ENUMS,
    FIELDS,
    FORMATS,
    MODALITIES,
    OUTCOME_RATERS,
    OUTCOME_TIMINGS,
    OUTCOME_TYPES,
    POPULATIONS,
    PROVENANCES,
    PUBLICATION_TYPES,
    QA_LEVELS,
    R_KINDS,
    SCREENING_FIELDS,
    SOURCE_TYPES,
    SYNTHESES_FIELDS,
    TIMINGS,
    Field,
    studies_dir,
)
from .screening import PrismaCounts, load_screening, prisma_counts, validate_screening
from .syntheses import load_syntheses, validate_syntheses
from .tables import Problem, StudiesValidationError, ValidationReport
from .validate import validate_studies

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
    "validate_screening",
    "load_screening",
    "prisma_counts",
    "PrismaCounts",
    "validate_syntheses",
    "load_syntheses",
]
