"""alliance-meta: a meta-analysis workbench for alliance-outcome research in psychotherapy.

Four floors, each importing only from the floors below it (checked by import-linter):

- :mod:`alliance_meta.stats`: effect sizes, models, robust inference, bias, influence and the
  multiverse table (numpy/scipy/formulaic only). Agrees with R's metafor and clubSandwich
  (see tests/reference/).
- :mod:`alliance_meta.data`: the codebook's schema, validation, loading and appending effects.
- :mod:`alliance_meta.viz`: every figure (the only floor that imports matplotlib; loaded on
  first use, so ``import alliance_meta`` stays light).
- :mod:`alliance_meta.workflow`: notebook helpers, the pipeline, the site and the command line.
"""

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
from .data.export import export_effects
from .data.importer import import_effects
from .stats.bias import (
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
from .stats.escalc import (
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
from .stats.influence import baujat, cumulative, influence, leave_one_out
from .stats.multiverse import MultiverseResult, default_factors, multiverse
from .stats.rma import (
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
from .stats.rma_mv import ThreeLevelResult, three_level
from .stats.robust import RobustResult, robust

__version__ = "0.2.0"

_LAZY_FIGURES = ("specification_curve", "estimate_histogram", "share_significant_plot")


def __getattr__(name: str):
    # figures (and the old module name ``plots``) load matplotlib only when first asked for
    if name in _LAZY_FIGURES:
        from . import viz

        return getattr(viz, name)
    if name == "plots":
        from . import viz

        return viz
    raise AttributeError(f"module 'alliance_meta' has no attribute {name!r}")

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
    "import_effects",
    "export_effects",
    "z_to_r",
]
