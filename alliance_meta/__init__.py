"""alliance-meta: a meta-analysis workbench for alliance-outcome research in psychotherapy.

The statistical core agrees with R's metafor and clubSandwich (see tests/reference/) and is
vectorised across fits. Figures live in :mod:`alliance_meta.plots` (imported on first use, so
that ``import alliance_meta`` does not pull in matplotlib).
"""

from .bias import (
    EggerResult,
    FailSafeNResult,
    PetPeeseResult,
    RankTestResult,
    SelectionModelResult,
    TrimFillResult,
    egger_test,
    fail_safe_n,
    pet_peese,
    rank_test,
    selection_model,
    trim_and_fill,
)
from .data import (
    Problem,
    StudiesValidationError,
    ValidationReport,
    append_rows,
    load_studies,
    number_in_quote,
    studies_dir,
    validate_studies,
    write_datapackage,
)
from .effects import (
    aggregate,
    fisher_z,
    r_from_beta,
    r_from_chi2,
    r_from_d,
    r_from_F,
    r_from_t,
    to_r,
    z_to_r,
)
from .models import (
    ConvergenceError,
    MetaRegressionResult,
    PermutationResult,
    RandomEffectsResult,
    SubgroupResult,
    common_effect,
    meta_regression,
    permutation_test,
    random_effects,
    subgroup_analysis,
)
from .multilevel import ThreeLevelResult, three_level
from .multiverse import (
    MultiverseResult,
    default_factors,
    estimate_histogram,
    multiverse,
    share_significant_plot,
    specification_curve,
)
from .robust import RobustResult, robust
from .sensitivity import baujat, cumulative, influence, leave_one_out

__version__ = "0.1.0"

__all__ = [
    "ConvergenceError",
    "EggerResult",
    "FailSafeNResult",
    "MetaRegressionResult",
    "MultiverseResult",
    "PermutationResult",
    "PetPeeseResult",
    "Problem",
    "RandomEffectsResult",
    "RankTestResult",
    "RobustResult",
    "SelectionModelResult",
    "StudiesValidationError",
    "SubgroupResult",
    "ThreeLevelResult",
    "TrimFillResult",
    "ValidationReport",
    "aggregate",
    "append_rows",
    "baujat",
    "common_effect",
    "cumulative",
    "default_factors",
    "estimate_histogram",
    "egger_test",
    "fail_safe_n",
    "fisher_z",
    "influence",
    "leave_one_out",
    "load_studies",
    "meta_regression",
    "multiverse",
    "number_in_quote",
    "permutation_test",
    "pet_peese",
    "r_from_F",
    "r_from_beta",
    "r_from_chi2",
    "r_from_d",
    "r_from_t",
    "random_effects",
    "rank_test",
    "robust",
    "selection_model",
    "share_significant_plot",
    "specification_curve",
    "studies_dir",
    "subgroup_analysis",
    "three_level",
    "to_r",
    "trim_and_fill",
    "validate_studies",
    "write_datapackage",
    "z_to_r",
]
