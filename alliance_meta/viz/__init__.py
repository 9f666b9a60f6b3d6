"""The figures floor: the only sub-package that imports matplotlib. One module per figure
family, a shared theme and deterministic saving; every function takes ``ax=`` or returns a
Figure drawn from a result object of :mod:`alliance_meta.stats`."""

from .multiverse import estimate_histogram, share_significant_plot, specification_curve
from .plots import *  # noqa: F403
from .plots import INK, MUTED
from .plots import __all__ as _plots_all

__all__ = [*_plots_all, "INK", "MUTED", "specification_curve", "estimate_histogram",
           "share_significant_plot"]
