"""The row layout shared by the forest, leave-one-out and cumulative plots.

Rows are spaced a fixed number of inches apart when the figure is made here, so text never
overlaps however many rows; text columns sit outside the axes (label and n on the left, weight
and estimate [CI] on the right) and reference lines stop short of the note rows, whose text may
run under the plot area, so that no line crosses a text.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
from matplotlib import transforms as mtransforms
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from .theme import (
    _GAP,
    INK,
    MUTED,
    PALETTE,
    _new_figure,
    _nice_ticks,
    _root_figure,
    _text_width,
)

#: Above this many rows a forest-like figure is grouped, paged or drawn compactly (issue 16).
MAX_ROWS = 60
DRAWN = ("study", "summary", "pi")  # rows with an interval in the plot area


@dataclass
class _Row:
    kind: str  # "group", "study", "summary", "pi", "note", "caution", "blank"
    label: str = ""
    est: float = float("nan")
    lb: float = float("nan")
    ub: float = float("nan")
    size: float = 0.0  # marker area (points^2) for studies
    weight: str = ""
    ci: str = ""
    gid: str = ""
    n: str = ""


@dataclass(frozen=True)
class Header:
    label: str
    n: str | None  # None: no n column
    weight: str | None  # None: no weight column
    ci: str


def x_range(rows: list[_Row], ref: float | None, band, clip, xlim) -> tuple[float, float]:
    """The plot's x range in display units: every drawn interval, the reference line and band,
    padded by 4% and clipped (e.g. to [-1, 1] for r); ``xlim`` wins when given."""
    if xlim is not None:
        lo, hi = (float(xlim[0]), float(xlim[1]))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"xlim must be two finite increasing numbers, got {xlim}")
        return lo, hi
    xs = [v for r in rows if r.kind in DRAWN for v in (r.est, r.lb, r.ub)]
    xs = [v for v in xs if np.isfinite(v)] + ([ref] if ref is not None else [])
    if band is not None:
        xs += [band[1], band[2]]
    lo, hi = (min(xs), max(xs)) if xs else (-1.0, 1.0)
    pad = 0.04 * (hi - lo) if hi > lo else 0.5
    lo, hi = lo - pad, hi + pad
    if clip is not None:
        lo, hi = max(lo, clip[0]), min(hi, clip[1])
    return lo, hi


def _spans(rows: list[_Row], top: int) -> list[tuple[float, float]]:
    """Vertical spans (in row units) of the plot area that hold no note text: reference lines
    are drawn only there."""
    last = max((i for i, r in enumerate(rows) if r.kind in DRAWN), default=0)
    blocked = [i for i, r in enumerate(rows[: last + 1]) if r.kind in ("note", "caution")]
    spans, start = [], -0.5
    for i in blocked:
        if i - 0.5 > start:
            spans.append((start, i - 0.5))
        start = i + 0.5
    if last + 0.5 > start:
        spans.append((start, last + 0.5))
    return spans


def draw_forest(
    rows: list[_Row],
    *,
    header: Header,
    xlabel: str,
    lims: tuple[float, float],
    ax: Axes | None,
    title: str | None,
    row_height: float,
    plot_width: float,
    ref: float | None = 0.0,
    band: tuple[float, float, float] | None = None,
    study_marker: str = "s",
) -> Figure:
    """Draw labelled rows with a label column (and an n column) left of the plot and a weight
    column and an estimate-[CI] column right of it; ``lims`` is the x range (see
    :func:`x_range`)."""
    base = float(mpl.rcParams["font.size"])
    small = base - 1
    plain = [r.label for r in rows if r.kind in ("study", "pi")] + [header.label]
    bold = [r.label for r in rows if r.kind in ("group", "summary")] + [header.label]
    w_label = max(_text_width(plain, base), _text_width(bold, base, "bold"))
    has_n = header.n is not None
    w_n = _text_width([r.n for r in rows] + [header.n or ""], base, "bold") if has_n else 0.0
    has_w = header.weight is not None
    w_weight = _text_width([r.weight for r in rows] + [header.weight or ""], base, "bold") if has_w else 0.0
    w_ci = _text_width([r.ci for r in rows] + [header.ci], base, "bold")
    w_note = _text_width([r.label for r in rows if r.kind in ("note", "caution")], small)
    w_title = _text_width([title or ""], base + 1, "bold")
    n = len(rows)
    top = -2 if title else -1  # header at y = -1, title above it
    lo, hi = lims

    left_w = w_label + _GAP + (w_n + _GAP if has_n else 0.0)
    right_w = (w_weight + _GAP if has_w else 0.0) + w_ci
    if ax is None:
        left_margin, bottom, top_margin = 0.08, 0.5, 0.08
        width = left_margin + left_w + plot_width + _GAP + right_w + 0.08
        width = max(width, left_margin + max(w_note, w_title) + 0.08)
        height = bottom + (n - top) * row_height + top_margin
        fig = _new_figure(width, height)
        ax = fig.add_axes((
            (left_margin + left_w) / width, bottom / height, plot_width / width,
            (n - top) * row_height / height,
        ))
    fig = _root_figure(ax)
    ax.set_ylim(n - 0.5, top - 0.5)
    ax.set_xlim(lo, hi)
    ax.set_xticks(_nice_ticks(lo, hi))
    ax.set_yticks([])
    for side in ("left", "top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_xlabel(xlabel)

    blend = mtransforms.blended_transform_factory(ax.transAxes, ax.transData)

    def col(dx_in: float):  # x in axes fraction shifted by dx_in inches, y in data rows
        return blend + mtransforms.ScaledTranslation(dx_in, 0, fig.dpi_scale_trans)

    t_label = col(-left_w)
    t_n = col(-_GAP)
    t_weight = col(_GAP + w_weight)
    t_ci = col(_GAP + (w_weight + _GAP if has_w else 0.0))
    common = dict(va="center", clip_on=False, parse_math=False, color=INK)

    def put(tr, x0, y, s, gid, **kw):
        if s:
            ax.text(x0, y, s, transform=tr, gid=gid, **{**common, **kw})

    if title:
        put(t_label, 0.0, -2, title, "title", ha="left", fontweight="bold", fontsize=base + 1)
    put(t_label, 0.0, -1, header.label, "header", ha="left", fontweight="bold")
    if has_n:
        put(t_n, 0.0, -1, header.n, "header", ha="right", fontweight="bold")
    if has_w:
        put(t_weight, 1.0, -1, header.weight, "header", ha="right", fontweight="bold")
    put(t_ci, 1.0, -1, header.ci, "header", ha="left", fontweight="bold")

    spans = _spans(rows, top)
    if band is not None:
        for a, b in spans:
            ax.fill_betweenx([a, b], band[1], band[2], color=PALETTE[5], alpha=0.18, lw=0,
                             gid="reference_band")
        ax.vlines([band[0]] * len(spans), [a for a, _ in spans], [b for _, b in spans],
                  colors=PALETTE[0], linestyles=(0, (4, 2)), lw=0.8, gid="reference_estimate")
    if ref is not None and lo < ref < hi:
        ax.vlines([ref] * len(spans), [a for a, _ in spans], [b for _, b in spans],
                  colors=MUTED, lw=0.6, gid="null_line")

    sx, sy, ss, segs, arrows_l, arrows_r = [], [], [], [], [], []
    for i, r in enumerate(rows):
        if r.kind == "group":
            put(t_label, 0.0, i, r.label, "label:group", ha="left", fontweight="bold")
            continue
        if r.kind in ("note", "caution"):
            put(t_label, 0.0, i, r.label, r.kind, ha="left", fontsize=small,
                color=PALETTE[1] if r.kind == "caution" else "#444444")
            continue
        if r.kind == "blank":
            continue
        weight = "bold" if r.kind == "summary" else "normal"
        put(t_label, 0.0, i, r.label, f"label:{r.kind}", ha="left", fontweight=weight)
        if has_n:
            put(t_n, 0.0, i, r.n, "n", ha="right", fontweight=weight)
        if has_w:
            put(t_weight, 1.0, i, r.weight, "weight", ha="right", fontweight=weight)
        put(t_ci, 1.0, i, r.ci, "ci_text", ha="left", fontweight=weight)
        a, b = max(r.lb, lo), min(r.ub, hi)
        if r.kind == "study":
            if lo <= r.est <= hi:
                sx.append(r.est)
                sy.append(i)
                ss.append(r.size)
            if a < b:
                segs.append([(a, i), (b, i)])
            if r.lb < lo:
                arrows_l.append(i)
            if r.ub > hi:
                arrows_r.append(i)
        elif r.kind == "summary":
            h = 0.32
            ax.add_patch(Polygon(
                [(r.lb, i), (r.est, i - h), (r.ub, i), (r.est, i + h)], closed=True,
                facecolor=PALETTE[0] if r.gid == "summary_overall" else PALETTE[5],
                edgecolor=INK, lw=0.6, zorder=3, gid=r.gid,
            ))
        elif r.kind == "pi":
            ax.plot([a, b], [i, i], color=PALETTE[0], lw=1.2, solid_capstyle="butt",
                    gid="prediction_interval")
            ax.plot([a, b], [i, i], ls="none", marker="|", ms=6, mew=1.2, color=PALETTE[0],
                    gid="prediction_interval_caps")
    if segs:
        ax.add_collection(LineCollection(segs, colors=INK, lw=0.8, gid="study_ci", zorder=2))
    ax.scatter(sx, sy, s=ss, marker=study_marker, color=INK, lw=0, zorder=3,
               gid="study_markers")
    if arrows_l or arrows_r:
        ax.scatter([lo] * len(arrows_l), arrows_l, marker="<", s=12, color=INK, clip_on=False,
                   zorder=3, gid="ci_arrow_left")
        ax.scatter([hi] * len(arrows_r), arrows_r, marker=">", s=12, color=INK, clip_on=False,
                   zorder=3, gid="ci_arrow_right")
    ax.set_xlim(lo, hi)
    ax.set_ylim(n - 0.5, top - 0.5)
    return fig


def marker_areas(w: np.ndarray, row_height: float) -> np.ndarray:
    """Square area proportional to weight; the largest fills 60% of the row height."""
    side_max = 0.6 * row_height * 72.0
    area = side_max**2 * w / w.max()
    return np.maximum(area, 2.5**2)
