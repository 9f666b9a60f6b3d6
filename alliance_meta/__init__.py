"""alliance-meta: a meta-analysis workbench for alliance-outcome research in psychotherapy.

The statistical core agrees with R's metafor (see tests/reference/) and is vectorised across fits.
"""

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
    common_effect,
    meta_regression,
    permutation_test,
    random_effects,
    subgroup_analysis,
)
from .multilevel import three_level
from .robust import robust

__version__ = "0.1.0"

__all__ = [
    "ConvergenceError",
    "aggregate",
    "common_effect",
    "fisher_z",
    "meta_regression",
    "permutation_test",
    "r_from_F",
    "r_from_beta",
    "r_from_chi2",
    "r_from_d",
    "r_from_t",
    "random_effects",
    "robust",
    "three_level",
    "subgroup_analysis",
    "to_r",
    "z_to_r",
]
