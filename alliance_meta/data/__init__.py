"""The data floor: the codebook's schema, quote checks, validation, loading and appending
effects, the screening log, the published syntheses and the Frictionless data package.
Imports only from :mod:`alliance_meta.stats`."""

from .datapackage import datapackage, write_datapackage
from .io import AppendResult, append_rows, load_studies
from .quotes import number_in_quote
from .schema import (  # noqa: F401  (the codebook's vocabularies, for callers)
    ALLIANCE_MEASURES,
    ALLIANCE_RATERS,
    COLUMNS,
    DELIVERIES,
    DESIGNS,
    ENUMS,
    FIELDS,
    FORMATS,
    MODALITIES,
    OUTCOME_RATERS,
    POPULATIONS,
    PUBLICATION_TYPES,
    R_KINDS,
    TIMINGS,
    Field,
    studies_dir,
)
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
]
