"""The figures floor: the only sub-package that imports matplotlib or seaborn. One module per
figure family (:mod:`.forest`, :mod:`.funnel`, :mod:`.bubble`, :mod:`.baujat`, :mod:`.orchard`,
:mod:`.sensitivity`, :mod:`.dataset`, :mod:`.multiverse`, :mod:`.prisma`,
:mod:`.syntheses`), a shared :mod:`.theme` and
deterministic saving; every function takes ``ax=`` or returns a Figure drawn from a result
object of :mod:`alliance_meta.stats`."""

from __future__ import annotations

from ..stats.lazy import lazy_exports
from .theme import INK, MUTED, PALETTE, STYLE, save_figure, theme

# the figure modules load on first use: seaborn (dataset) alone imports scipy.stats
_EXPORTS: dict[str, str] = {
    "baujat_plot": ".baujat",
    "bubble_plot": ".bubble",
    "dataset_overview": ".dataset",
    "moderator_distribution": ".dataset",
    "forest_pages": ".forest",
    "forest_plot": ".forest",
    "funnel_plot": ".funnel",
    "estimate_histogram": ".multiverse",
    "share_significant_plot": ".multiverse",
    "specification_curve": ".multiverse",
    "orchard_plot": ".orchard",
    "prisma_flow": ".prisma",
    "prisma_table": ".prisma",
    "cumulative_plot": ".sensitivity",
    "leave_one_out_plot": ".sensitivity",
    "syntheses_forest": ".syntheses",
}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
