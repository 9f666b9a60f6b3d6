"""The old single-module home of the figures, kept so that ``from alliance_meta.viz.plots
import ...`` (and ``from .plots import INK, ...`` in :mod:`.multiverse`) keeps working. The
figures now live one family per module: :mod:`.theme`, :mod:`.forest`, :mod:`.funnel`,
:mod:`.bubble`, :mod:`.baujat`, :mod:`.orchard`, :mod:`.sensitivity`, :mod:`.dataset`."""

from .baujat import baujat_plot
from .bubble import bubble_plot
from .dataset import dataset_overview, moderator_distribution
from .forest import forest_pages, forest_plot
from .funnel import funnel_plot
from .orchard import orchard_plot
from .sensitivity import cumulative_plot, leave_one_out_plot
from .theme import INK, MUTED, PALETTE, STYLE, save_figure, theme

__all__ = [
    "PALETTE",
    "STYLE",
    "INK",
    "MUTED",
    "theme",
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
    "save_figure",
]
