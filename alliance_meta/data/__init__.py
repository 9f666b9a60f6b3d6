"""The data floor: the codebook's schema, quote checks, validation, loading and appending
effects, the screening log, the published syntheses and the Frictionless data package.
Imports only from :mod:`alliance_meta.stats`."""

from __future__ import annotations

from ..stats.lazy import lazy_exports
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

_EXPORTS: dict[str, str] = {
    "datapackage": ".datapackage",
    "write_datapackage": ".datapackage",
    "AppendResult": ".io",
    "append_rows": ".io",
    "load_studies": ".io",
    "number_in_quote": ".quotes",
    "PrismaCounts": ".screening",
    "load_screening": ".screening",
    "prisma_counts": ".screening",
    "validate_screening": ".screening",
    "load_syntheses": ".syntheses",
    "validate_syntheses": ".syntheses",
    "Problem": ".tables",
    "StudiesValidationError": ".tables",
    "ValidationReport": ".tables",
    "validate_studies": ".validate",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
