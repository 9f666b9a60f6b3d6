"""The figures floor: the only sub-package that imports matplotlib or seaborn. One module per
figure family (:mod:`.forest`, :mod:`.funnel`, :mod:`.bubble`, :mod:`.baujat`, :mod:`.orchard`,
:mod:`.sensitivity`, :mod:`.dataset`, :mod:`.multiverse`, :mod:`.prisma`,
:mod:`.syntheses`), a shared :mod:`.theme` and
deterministic saving; every function takes ``ax=`` or returns a Figure drawn from a result
object of :mod:`alliance_meta.stats`."""

from .baujat import baujat_plot
from .bubble import bubble_plot
from .dataset import dataset_overview, moderator_distribution
from .forest import forest_pages, forest_plot
from .funnel import funnel_plot
from .multiverse import estimate_histogram, share_significant_plot, specification_curve
from .orchard import orchard_plot
from .prisma import prisma_flow, prisma_table
from .sensitivity import cumulative_plot, leave_one_out_plot
from .syntheses import syntheses_forest
from .theme import INK, MUTED, PALETTE, STYLE, save_figure, theme

__all__ = [
    "PALETTE",
    "STYLE",
    "INK",
    "MUTED",
    "theme",
    "save_figure",
    "forest_plot",
    "forest_pages",
    "funnel_plot",
    "bubble_plot",
    "baujat_plot",
    "leave_one_out_plot",
    "cumulative_plot",
    "orchard_plot",
    "dataset_overview",
    "moderator_distribution",
    "specification_curve",
    "estimate_histogram",
    "share_significant_plot",
    "prisma_flow",
    "prisma_table",
    "syntheses_forest",
]
