"""Forest plot.

References
----------
Lewis, S., & Clarke, M. (2001). Forest plots: trying to see the wood and the trees. BMJ, 322,
    1479-1480. doi:10.1136/bmj.322.7300.1479
Riley, R. D., Higgins, J. P. T., & Deeks, J. J. (2011). Interpretation of random effects
    meta-analyses. BMJ, 342, d549. doi:10.1136/bmj.d549 (prediction interval)
Borenstein, M., Hedges, L. V., Higgins, J. P. T., & Rothstein, H. R. (2009). Introduction to
    meta-analysis. Wiley, ch. 19 (subgroup differences).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import transforms as mtransforms
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from ..stats.rma import RandomEffectsResult, random_effects
from .theme import (
    _GAP,
    _ROW_HEIGHT,
    INK,
    MUTED,
    PALETTE,
    _check_ax,
    _check_re,
    _ci_text,
    _crit,
    _finish,
    _new_figure,
    _nice_ticks,
    _num,
    _pfmt,
    _root_figure,
    _scale,
    _text_width,
    theme,
)

# ---------------------------------------------------------------------------------------------
# the forest layout shared by forest, leave-one-out and cumulative plots


@dataclass
class _Row:
    kind: str  # "group", "study", "summary", "pi", "note", "blank"
    label: str = ""
    est: float = float("nan")
    lb: float = float("nan")
    ub: float = float("nan")
    size: float = 0.0  # marker area (points^2) for studies
    weight: str = ""
    ci: str = ""
    gid: str = ""


def _draw_forest(
    rows: list[_Row],
    *,
    header: tuple[str, str | None, str],
    xlabel: str,
    clip: tuple[float, float] | None,
    xlim: tuple[float, float] | None,
    ax: Axes | None,
    title: str | None,
    row_height: float,
    plot_width: float,
    ref: float | None = 0.0,
    band: tuple[float, float, float] | None = None,
    study_marker: str = "s",
) -> Figure:
    """Draw labelled rows (one per study or summary) with a label column left of the plot and a
    weight column and an estimate-[CI] column right of it. Rows are spaced ``row_height``
    inches apart when the figure is made here, so text never overlaps however many rows."""
    base = float(mpl.rcParams["font.size"])
    small = base - 1
    label_header, weight_header, ci_header = header
    labels = [r.label for r in rows if r.kind in ("study", "summary", "pi")]
    w_label = max(
        _text_width(labels + [label_header], base),
        _text_width([r.label for r in rows if r.kind in ("group", "summary")] + [label_header],
                    base, "bold"),
    )
    w_weight = (
        _text_width([r.weight for r in rows] + [weight_header], base, "bold")
        if weight_header is not None else 0.0
    )
    w_ci = _text_width([r.ci for r in rows] + [ci_header], base, "bold")
    w_note = _text_width([r.label for r in rows if r.kind == "note"], small)
    n = len(rows)
    top = -2.0 if title else -1.0  # header at y = -1, title above it

    # x range in display units
    xs = [v for r in rows if r.kind in ("study", "summary", "pi") for v in (r.lb, r.ub)]
    xs = [v for v in xs if np.isfinite(v)] + ([ref] if ref is not None else [])
    if band is not None:
        xs += [band[1], band[2]]
    if xlim is None:
        lo, hi = (min(xs), max(xs)) if xs else (-1.0, 1.0)
        pad = 0.04 * (hi - lo) if hi > lo else 0.5
        lo, hi = lo - pad, hi + pad
        if clip is not None:
            lo, hi = max(lo, clip[0]), min(hi, clip[1])
    else:
        lo, hi = (float(xlim[0]), float(xlim[1]))
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise ValueError(f"xlim must be two finite increasing numbers, got {xlim}")

    right_w = (w_weight + _GAP if weight_header is not None else 0.0) + w_ci
    if ax is None:
        left_margin, bottom, top_margin = 0.08, 0.5, 0.08
        width = left_margin + w_label + _GAP + plot_width + _GAP + right_w + 0.08
        width = max(width, left_margin + w_note + 0.08)
        height = bottom + (n - top) * row_height + top_margin
        fig = _new_figure(width, height)
        ax = fig.add_axes(
            (
                (left_margin + w_label + _GAP) / width,
                bottom / height,
                plot_width / width,
                (n - top) * row_height / height,
            )
        )
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

    t_label = col(-(w_label + _GAP))
    t_weight = col(_GAP + w_weight)
    t_ci = col(_GAP + (w_weight + _GAP if weight_header is not None else 0.0))
    common = dict(va="center", clip_on=False, parse_math=False, color=INK)

    def put(tr, x0, y, s, gid, **kw):
        if s:
            ax.text(x0, y, s, transform=tr, gid=gid, **{**common, **kw})

    if title:
        put(t_label, 0.0, -2, title, "title", ha="left", fontweight="bold", fontsize=base + 1)
    put(t_label, 0.0, -1, label_header, "header", ha="left", fontweight="bold")
    if weight_header is not None:
        put(t_weight, 1.0, -1, weight_header, "header", ha="right", fontweight="bold")
    put(t_ci, 1.0, -1, ci_header, "header", ha="left", fontweight="bold")

    # background band (e.g. the full-data CI in leave-one-out plots) and reference lines
    last = max((i for i, r in enumerate(rows) if r.kind in ("study", "summary", "pi")), default=0)
    if band is not None:
        ax.fill_betweenx([-0.5, last + 0.5], band[1], band[2], color=PALETTE[5], alpha=0.18,
                         lw=0, gid="reference_band")
        ax.vlines(band[0], -0.5, last + 0.5, colors=PALETTE[0], linestyles=(0, (4, 2)),
                  lw=0.8, gid="reference_estimate")
    if ref is not None and lo < ref < hi:
        ax.vlines(ref, -0.5, last + 0.5, colors=MUTED, lw=0.6, gid="null_line")

    sx, sy, ss, segs, arrows_l, arrows_r = [], [], [], [], [], []
    for i, r in enumerate(rows):
        if r.kind == "group":
            put(t_label, 0.0, i, r.label, "label:group", ha="left", fontweight="bold")
            continue
        if r.kind == "note":
            put(t_label, 0.0, i, r.label, "note", ha="left", fontsize=small, color="#444444")
            continue
        if r.kind == "blank":
            continue
        bold = "bold" if r.kind == "summary" else "normal"
        put(t_label, 0.0, i, r.label, f"label:{r.kind}", ha="left", fontweight=bold)
        if weight_header is not None:
            put(t_weight, 1.0, i, r.weight, "weight", ha="right", fontweight=bold)
        put(t_ci, 1.0, i, r.ci, "ci_text", ha="left", fontweight=bold)
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
            poly = Polygon(
                [(r.lb, i), (r.est, i - h), (r.ub, i), (r.est, i + h)], closed=True,
                facecolor=PALETTE[0] if r.gid == "summary_overall" else PALETTE[5],
                edgecolor=INK, lw=0.6, zorder=3, gid=r.gid,
            )
            ax.add_patch(poly)
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


def _marker_areas(w: np.ndarray, row_height: float) -> np.ndarray:
    """Square area proportional to weight; the largest fills 60% of the row height."""
    side_max = 0.6 * row_height * 72.0
    area = side_max**2 * w / w.max()
    return np.maximum(area, 2.5**2)


# ---------------------------------------------------------------------------------------------
# forest plot


def forest_plot(
    res: RandomEffectsResult,
    labels: Sequence[str] | None = None,
    groups: Sequence | None = None,
    *,
    ax: Axes | None = None,
    xlim: tuple[float, float] | None = None,
    title: str | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Forest plot (Lewis & Clarke 2001, BMJ 322:1479, doi:10.1136/bmj.322.7300.1479).

    One row per study: the effect and its Wald CI (yi +/- z * sqrt(vi) at ``res.level``), drawn
    as a square whose area is proportional to the study's weight in ``res``; columns with the
    weight (percent) and "r [95% CI]". With ``groups`` (one value per study) studies are shown
    in blocks, each closed by a diamond from ``random_effects`` fitted to the block with
    ``res.method``, ``res.test`` and ``res.level`` (blocks with one study get no diamond unless
    the model is common-effect), followed by the test for subgroup differences (Q between, a
    common-effect model on the subgroup estimates; Borenstein et al. 2009, ch. 19). The overall
    diamond and, for random-effects models, the prediction interval (Riley et al. 2011,
    doi:10.1136/bmj.d549) close the plot. For ``measure="ZCOR"`` everything is back-transformed
    to r with tanh.

    When ``ax`` is None the figure is sized from its content: ``row_height`` inches per row, so
    it grows with k and labels never overlap. With your own ``ax`` the text columns sit outside
    it (left and right) and you must leave room.
    """
    who = "forest_plot"
    res = _check_re(res, who)
    _check_ax(ax, who)
    if not row_height > 0 or not plot_width > 0:
        raise ValueError(f"{who}: row_height and plot_width must be positive")
    k = res.k
    if labels is None:
        labels = list(res.labels) if len(res.labels) == k else [f"Study {i + 1}" for i in range(k)]
    labels = [str(s) for s in labels]
    if len(labels) != k:
        raise ValueError(f"{who}: labels has {len(labels)} entries but the model has k = {k}")
    f, xlabel, name = _scale(res.measure, who)
    clip = (-1.0, 1.0) if res.measure == "ZCOR" else None
    crit = _crit(res.level)
    y, v = res.yi, res.vi
    w = res.weights
    area = _marker_areas(w, row_height)
    re_model = res.method != "FE"
    model_name = f"Random-effects model ({res.method})" if re_model else "Common-effect model"

    def study(i: int) -> _Row:
        lb, ub = y[i] - crit * np.sqrt(v[i]), y[i] + crit * np.sqrt(v[i])
        e, a, b = float(f(y[i])), float(f(lb)), float(f(ub))
        wt = f"{w[i]:.1f}%" if w[i] >= 0.1 else f"{w[i]:.2f}%"
        return _Row("study", labels[i], e, a, b, float(area[i]), wt, _ci_text(e, a, b))

    def summary(r: RandomEffectsResult, label: str, weight: str, gid: str) -> _Row:
        e, a, b = float(f(r.estimate)), float(f(r.ci_lb)), float(f(r.ci_ub))
        return _Row("summary", label, e, a, b, weight=weight, ci=_ci_text(e, a, b), gid=gid)

    def het(r: RandomEffectsResult) -> str:
        q = f"Q({r.k - 1}) = {r.Q:.2f}, {_pfmt(r.Q_p)}"
        if not re_model:
            return f"Heterogeneity: I\u00b2 = {r.I2:.1f}%, {q}"
        return f"Heterogeneity: \u03c4\u00b2 = {r.tau2:.4f}, I\u00b2 = {r.I2:.1f}%, {q}"

    rows: list[_Row] = []
    sg_note = ""
    if groups is None:
        rows += [study(i) for i in range(k)]
    else:
        g = pd.Series(list(groups), dtype=object)
        if len(g) != k:
            raise ValueError(f"{who}: groups has {len(g)} entries but the model has k = {k}")
        if g.isna().any():
            raise ValueError(f"{who}: groups has missing values at positions "
                             f"{np.flatnonzero(g.isna().to_numpy())[:10].tolist()}")
        g = g.astype(str).to_numpy()
        fits = {}
        for lev in pd.unique(g):
            m = np.flatnonzero(g == lev)
            rows.append(_Row("group", lev))
            rows += [study(i) for i in m]
            if m.size >= 2 or (m.size == 1 and not re_model):
                fit = random_effects(y[m], v[m], method=res.method, test=res.test,
                                     level=res.level, measure=res.measure)
                fits[lev] = fit
                rows.append(summary(fit, f"Subgroup estimate (k = {m.size})",
                                    f"{w[m].sum():.1f}%", "summary_subgroup"))
                if m.size >= 2:
                    rows.append(_Row("note", het(fit)))
            rows.append(_Row("blank"))
        if len(fits) >= 2:
            est = np.array([r.estimate for r in fits.values()])
            se = np.array([r.se for r in fits.values()])
            qb = random_effects(est, se**2, method="FE", measure="GEN")
            sg_note = (f"Test for subgroup differences: Q({len(fits) - 1}) = {qb.Q:.2f}, "
                       f"{_pfmt(qb.Q_p)}")
    if groups is None:
        rows.append(_Row("blank"))
    rows.append(summary(res, model_name, "100%", "summary_overall"))
    if re_model:
        a, b = float(f(res.pi_lb)), float(f(res.pi_ub))
        rows.append(_Row("pi", "Prediction interval", lb=a, ub=b,
                         ci=f"[{_num(a)}, {_num(b)}]"))
    rows.append(_Row("note", het(res)))
    if sg_note:
        rows.append(_Row("note", sg_note))

    lvl = f"{100 * res.level:g}% CI"
    with theme():
        fig = _draw_forest(
            rows, header=("Study", "Weight", f"{name} [{lvl}]"), xlabel=xlabel, clip=clip,
            xlim=xlim, ax=ax, title=title, row_height=row_height, plot_width=plot_width,
        )
        return _finish(fig)


