"""The data floor: the codebook's schema, quote checks, validation, loading and appending
effects, and the Frictionless data package. Imports only from :mod:`alliance_meta.stats`."""

from .validate import *  # noqa: F403
from .validate import (  # noqa: F401  (the codebook's vocabularies, for callers)
    ALLIANCE_MEASURES,
    ALLIANCE_RATERS,
    DELIVERIES,
    DESIGNS,
    FORMATS,
    MODALITIES,
    OUTCOME_RATERS,
    POPULATIONS,
    PUBLICATION_TYPES,
    R_KINDS,
    TIMINGS,
    __all__,
)
