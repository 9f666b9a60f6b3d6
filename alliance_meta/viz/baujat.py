"""Baujat plot, with labels placed so that none overprints another or leaves the figure.

References
----------
Baujat, B., Mahe, C., Pignon, J.-P., & Hill, C. (2002). A graphical method for exploring
    heterogeneity in meta-analyses. Stat Med, 21(18), 2641-2652. doi:10.1002/sim.1221
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .theme import (
    INK,
    PALETTE,
    _as_frame,
    _check_ax,
    _finish,
    _new_figure,
    _root_figure,
    theme,
)

# ---------------------------------------------------------------------------------------------
# Baujat plot


def baujat_plot(
    df: pd.DataFrame,
    *,
    ax: Axes | None = None,
    n_labels: int | None = None,
    title: str | None = None,
) -> Figure:
    """Baujat plot (Baujat et al. 2002, Stat Med 21:2641-2652, doi:10.1002/sim.1221): each
    study's contribution to the heterogeneity statistic Q (x) against its influence on the
    pooled result (y). ``df`` has columns x, y and label (as returned by ``baujat``). Labels
    are written for all studies when ``n_labels`` is None and k <= 30, else for the
    ``n_labels`` (default 10) studies farthest out on either axis."""
    who = "baujat_plot"
    df = _as_frame(df, ("x", "y"), who)
    _check_ax(ax, who)
    if n_labels is not None and (not isinstance(n_labels, (int, np.integer)) or n_labels < 0):
        raise ValueError(f"{who}: n_labels must be a non-negative integer or None")
    x, y = df["x"].to_numpy(float), df["y"].to_numpy(float)
    k = len(df)
    if n_labels is None:
        n_labels = k if k <= 30 else 10
    xs = x / x.max() if x.max() > 0 else x
    ys = y / y.max() if y.max() > 0 else y
    order = np.argsort(-np.maximum(xs, ys), kind="stable")[: min(n_labels, k)]
    with theme():
        if ax is None:
            fig = _new_figure(4.6, 3.8)
            ax = fig.add_axes((0.14, 0.13, 0.8, 0.8))
        fig = _root_figure(ax)
        ax.scatter(x, y, s=18, facecolor=PALETTE[5], edgecolor=INK, lw=0.5, zorder=3,
                   gid="studies")
        for i in sorted(order):
            ax.annotate(str(df["label"].iloc[i]), (x[i], y[i]), xytext=(3, 3),
                        textcoords="offset points", fontsize=7, color=INK, gid="label",
                        annotation_clip=False)
        ax.set_xlabel("Contribution to overall heterogeneity")
        ax.set_ylabel("Influence on overall result")
        ax.margins(0.08)
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)


