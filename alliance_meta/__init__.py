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

from __future__ import annotations

import importlib
from typing import Any

from .stats.lazy import lazy_exports

__version__ = "0.2.0"

_EXPORTS: dict[str, str] = {
    "Problem": ".data",
    "StudiesValidationError": ".data",
    "ValidationReport": ".data",
    "append_rows": ".data",
    "load_studies": ".data",
    "number_in_quote": ".data",
    "studies_dir": ".data",
    "validate_studies": ".data",
    "write_datapackage": ".data",
    "export_effects": ".data.export",
    "import_effects": ".data.importer",
    "EggerResult": ".stats.bias",
    "FailSafeNResult": ".stats.bias",
    "PetPeeseResult": ".stats.bias",
    "RankTestResult": ".stats.bias",
    "SelectionModelResult": ".stats.bias",
    "TrimFillResult": ".stats.bias",
    "egger_test": ".stats.bias",
    "fail_safe_n": ".stats.bias",
    "pet_peese": ".stats.bias",
    "rank_test": ".stats.bias",
    "selection_model": ".stats.bias",
    "trim_and_fill": ".stats.bias",
    "aggregate": ".stats.escalc",
    "fisher_z": ".stats.escalc",
    "r_from_beta": ".stats.escalc",
    "r_from_chi2": ".stats.escalc",
    "r_from_d": ".stats.escalc",
    "r_from_F": ".stats.escalc",
    "r_from_t": ".stats.escalc",
    "to_r": ".stats.escalc",
    "z_to_r": ".stats.escalc",
    "baujat": ".stats.influence",
    "cumulative": ".stats.influence",
    "influence": ".stats.influence",
    "leave_one_out": ".stats.influence",
    "MultiverseResult": ".stats.multiverse",
    "default_factors": ".stats.multiverse",
    "multiverse": ".stats.multiverse",
    "ConvergenceError": ".stats.rma",
    "MetaRegressionResult": ".stats.rma",
    "PermutationResult": ".stats.permutation",
    "RandomEffectsResult": ".stats.rma",
    "SubgroupResult": ".stats.subgroup",
    "common_effect": ".stats.rma",
    "meta_regression": ".stats.rma",
    "permutation_test": ".stats.permutation",
    "random_effects": ".stats.rma",
    "subgroup_analysis": ".stats.subgroup",
    "ThreeLevelResult": ".stats.rma_mv",
    "three_level": ".stats.rma_mv",
    "RobustResult": ".stats.robust",
    "robust": ".stats.robust",
    "specification_curve": ".viz",
    "estimate_histogram": ".viz",
    "share_significant_plot": ".viz",
}


_get_export, __dir__ = lazy_exports(__name__, _EXPORTS)


def __getattr__(name: str) -> Any:
    if name in ("stats", "data", "viz", "workflow", "plots"):  # the floors (plots: viz)
        return importlib.import_module(f".{'viz' if name == 'plots' else name}", __name__)
    return _get_export(name)


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
