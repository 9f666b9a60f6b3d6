"""Baujat plot, with labels placed so that none overprints another or leaves the figure.

References
----------
Baujat, B., Mahe, C., Pignon, J.-P., & Hill, C. (2002). A graphical method for exploring
    heterogeneity in meta-analyses. Stat Med, 21(18), 2641-2652. doi:10.1002/sim.1221
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import transforms as mtransforms
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
    _wrap,
    theme,
)


def _candidates() -> list[tuple[float, float, str, str]]:
    """Label offsets (points) around a point, nearest first, 16 directions per ring; the text
    is anchored on the side facing the point: (dx, dy, ha, va)."""
    out = []
    for rad in (4.5, 9.0, 15.0, 23.0, 33.0, 45.0, 60.0, 80.0, 105.0, 135.0):
        for ang in np.deg2rad([37, -37, 143, -143, 90, -90, 0, 180,
                               15, -15, 165, -165, 65, -65, 115, -115]):
            c, s = np.cos(ang), np.sin(ang)
            ha = "left" if c > 0.3 else "right" if c < -0.3 else "center"
            va = "bottom" if s > 0.3 else "top" if s < -0.3 else "center"
            out.append((round(rad * c, 2), round(rad * s, 2), ha, va))
    return out


_CANDIDATES = _candidates()
_PAD = 1.5  # pixels kept free around every placed label


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Overlap areas of box ``a`` (x0, y0, x1, y1) with each row of ``b``."""
    if b.size == 0:
        return np.zeros(0)
    w = np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0])
    h = np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _place_labels(fig: Figure, ax: Axes, x, y, labels: list[str], order) -> None:
    """Repel labels: for each point (most extreme first) take the first candidate position
    whose text lies inside the axes and overlaps no placed label and no point; if none is
    free, the one with the least overlap. Far positions get a leader line."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = ax.get_window_extent(r).extents
    pts = ax.transData.transform(np.column_stack([x, y]))
    rad = 3.0 * fig.dpi / 72.0
    taken = [np.column_stack([pts - rad, pts + rad])]
    for i in order:
        best, best_cost = None, np.inf
        for dx, dy, ha, va in _CANDIDATES:
            t = _label(fig, ax, x[i], y[i], labels[i], dx, dy, ha, va)
            e = t.get_window_extent(r).extents
            t.remove()
            outside = max(box[0] - e[0], 0) + max(e[2] - box[2], 0) + max(box[1] - e[1], 0) \
                + max(e[3] - box[3], 0)
            cost = 1e6 * outside + float(_overlap(e + [-_PAD, -_PAD, _PAD, _PAD],
                                                  np.vstack(taken)).sum())
            if cost < best_cost:
                best, best_cost = (dx, dy, ha, va, e), cost
            if cost == 0:
                break
        dx, dy, ha, va, e = best
        _label(fig, ax, x[i], y[i], labels[i], dx, dy, ha, va)
        if np.hypot(dx, dy) > 6:  # a leader line from the point to the label's edge
            ex = min(max(pts[i, 0], e[0]), e[2])
            ey = min(max(pts[i, 1], e[1]), e[3])
            lx, ly = ax.transData.inverted().transform((ex, ey))
            ax.plot([x[i], lx], [y[i], ly], color="0.6", lw=0.5, zorder=2, gid="label_leader",
                    clip_on=False)
        taken.append(e[None, :])


def _label(fig: Figure, ax: Axes, x: float, y: float, s: str, dx: float, dy: float, ha: str,
           va: str):
    tr = ax.transData + mtransforms.ScaledTranslation(dx / 72.0, dy / 72.0, fig.dpi_scale_trans)
    return ax.text(x, y, s, transform=tr, ha=ha, va=va, fontsize=7, color=INK, gid="label",
                   clip_on=False, parse_math=False)


def baujat_plot(
    df: pd.DataFrame,
    *,
    model_label: str | None = None,
    ax: Axes | None = None,
    n_labels: int | None = None,
    title: str | None = None,
) -> Figure:
    """Baujat plot (Baujat et al. 2002, Stat Med 21:2641-2652, doi:10.1002/sim.1221): each
    study's contribution to the heterogeneity statistic Q (x) against its influence on the
    pooled result (y). ``df`` has columns x, y and label (as returned by ``baujat``). Labels
    are written for all studies when ``n_labels`` is None and k <= 30, else for the
    ``n_labels`` (default 10) studies farthest out on either axis; they are placed so that
    none overprints another or a point, and all stay inside the axes (a leader line joins a
    label pushed away from its point). ``model_label`` names the model the contributions
    come from (printed under the axis)."""
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
            fig = _new_figure(4.6, 4.0 if model_label else 3.8)
            ax = fig.add_axes((0.14, 0.17, 0.8, 0.76) if model_label else (0.14, 0.13, 0.8, 0.8))
        fig = _root_figure(ax)
        ax.scatter(x, y, s=18, facecolor=PALETTE[5], edgecolor=INK, lw=0.5, zorder=3,
                   gid="studies")
        ax.set_xlabel("Contribution to overall heterogeneity")
        ax.set_ylabel("Influence on overall result")
        ax.margins(0.08)
        if title:
            ax.set_title(title, loc="left")
        if model_label:
            fig.text(0.02, 0.015, _wrap(f"Model: {model_label}", 4.4, 7.0), fontsize=7.0,
                     color="#444444", va="bottom", gid="model_label")
        ax.set_xlim(ax.get_xlim())  # freeze the limits before measuring label positions
        ax.set_ylim(ax.get_ylim())
        _place_labels(fig, ax, x, y, [str(s) for s in df["label"]], order)
        return _finish(fig)
