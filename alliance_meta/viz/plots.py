"""Figures meta-analysts publish: forest, funnel, bubble, Baujat, leave-one-out, cumulative, orchard.

Every function takes fitted results (or the tidy DataFrames the follow-up functions return),
draws with matplotlib only, accepts ``ax=`` (a new figure is made when it is None) and returns
the :class:`matplotlib.figure.Figure`, so notebooks compose them. Figures made here are not
registered with pyplot (no global state, no leaks in loops); notebooks display the returned
Figure, scripts save it with :func:`save_figure`.

One look everywhere: :func:`theme` (DejaVu Sans, which ships with matplotlib, small print sizes,
no top/right spines) and the Okabe-Ito colour-blind-safe palette :data:`PALETTE` (Okabe & Ito
2008, *Color Universal Design*, https://jfly.uni-koeln.de/color/). For Fisher's z
(``measure="ZCOR"``) every effect axis is back-transformed to r with tanh, except the funnel plot,
whose symmetry argument needs the analysis scale (it adds an r axis on top).

References
----------
Lewis, S., & Clarke, M. (2001). Forest plots: trying to see the wood and the trees. BMJ, 322,
    1479-1480. doi:10.1136/bmj.322.7300.1479
Light, R. J., & Pillemer, D. B. (1984). Summing up: the science of reviewing research. Harvard
    University Press (funnel plot).
Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2008). Contour-enhanced
    meta-analysis funnel plots help distinguish publication bias from other causes of asymmetry.
    J Clin Epidemiol, 61(10), 991-996. doi:10.1016/j.jclinepi.2007.11.010
Duval, S., & Tweedie, R. (2000). Trim and fill. Biometrics, 56(2), 455-463.
    doi:10.1111/j.0006-341X.2000.00455.x (the filled studies drawn by :func:`funnel_plot`)
Thompson, S. G., & Higgins, J. P. T. (2002). How should meta-regression analyses be undertaken
    and interpreted? Stat Med, 21(11), 1559-1573. doi:10.1002/sim.1187 (bubble plot)
Baujat, B., Mahe, C., Pignon, J.-P., & Hill, C. (2002). A graphical method for exploring
    heterogeneity in meta-analyses. Stat Med, 21(18), 2641-2652. doi:10.1002/sim.1221
Riley, R. D., Higgins, J. P. T., & Deeks, J. J. (2011). Interpretation of random effects
    meta-analyses. BMJ, 342, d549. doi:10.1136/bmj.d549 (prediction interval)
Nakagawa, S., Lagisz, M., O'Dea, R. E., et al. (2021). The orchard plot: cultivating a forest
    plot for use in ecology, evolution, and beyond. Res Synth Methods, 12(1), 4-12.
    doi:10.1002/jrsm.1424
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib import transforms as mtransforms
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import MaxNLocator
from scipy import stats

from ..stats.rma import MetaRegressionResult, RandomEffectsResult, SubgroupResult, random_effects

__all__ = [
    "PALETTE",
    "STYLE",
    "theme",
    "forest_plot",
    "funnel_plot",
    "bubble_plot",
    "baujat_plot",
    "leave_one_out_plot",
    "cumulative_plot",
    "orchard_plot",
    "save_figure",
]

# Okabe & Ito (2008): blue, vermillion, bluish green, reddish purple, orange, sky blue, yellow.
PALETTE: tuple[str, ...] = (
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442",
)
INK = "#222222"  # study markers, text
MUTED = "#777777"  # reference lines

STYLE: dict = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 8.0,
    "axes.titlesize": 9.0,
    "axes.titleweight": "bold",
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.5,
    "ytick.labelsize": 7.5,
    "legend.fontsize": 7.0,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.edgecolor": INK,
    "axes.labelcolor": INK,
    "xtick.color": INK,
    "ytick.color": INK,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "lines.linewidth": 0.9,
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "figure.facecolor": "white",
    "axes.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.dpi": 100.0,
    "savefig.dpi": 300.0,
    "svg.hashsalt": "alliance-meta",  # stable clip-path and glyph ids
    "svg.fonttype": "path",  # text as paths: the SVG looks the same without the font
    "pdf.fonttype": 42,  # embed TrueType subsets: editable text in the PDF
}

_ROW_HEIGHT = 0.2  # inches per forest row (8 pt text is about 0.13 in tall)
_GAP = 0.12  # inches between columns


@contextmanager
def theme(rc: dict | None = None) -> Iterator[None]:
    """Context manager applying the package's figure style (:data:`STYLE`, updated with the
    rcParams in ``rc``, e.g. ``theme({"font.size": 9})``) to everything drawn inside it; the
    global rcParams are restored on exit."""
    with mpl.rc_context({**STYLE, **(rc or {})}):
        yield


# ---------------------------------------------------------------------------------------------
# shared helpers


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _root_figure(ax: Axes) -> Figure:
    fig = ax.figure
    while not isinstance(fig, Figure):
        fig = fig.figure
    return fig


def _check_ax(ax, who: str) -> None:
    if ax is not None and not isinstance(ax, Axes):
        raise ValueError(f"{who}: ax must be a matplotlib Axes or None, got {type(ax).__name__}")


def _finish(fig: Figure) -> Figure:
    """Create tick objects while the theme is active; later ticks copy the first one's style."""
    for a in fig.axes:
        for child in [a, *a.child_axes]:
            child.xaxis.get_major_ticks()
            child.yaxis.get_major_ticks()
    return fig


def _scale(measure: str, who: str):
    """(transform to display units, axis label, short name) for an effect-size measure."""
    if not isinstance(measure, str):
        raise ValueError(f"{who}: measure must be a string such as 'ZCOR' or 'GEN'")
    if measure == "ZCOR":
        return np.tanh, "Correlation (r)", "r"
    return (lambda x: np.asarray(x, dtype=float)), "Effect size", "Estimate"


def _num(x: float, d: int = 2) -> str:
    if not np.isfinite(x):
        return "NA"
    s = f"{x:.{d}f}"
    if float(s) == 0:
        s = f"{0:.{d}f}"
    return s.replace("-", "\u2212")


def _ci_text(est: float, lb: float, ub: float, d: int = 2) -> str:
    if np.isnan(lb) and np.isnan(ub):
        return _num(est, d)
    return f"{_num(est, d)} [{_num(lb, d)}, {_num(ub, d)}]"


def _pfmt(p: float) -> str:
    if not np.isfinite(p):
        return "p = NA"
    return "p < .001" if p < 0.001 else f"p = {p:.3f}".replace("0.", ".", 1)


def _alpha_text(a: float) -> str:
    """A significance level as journals print it: .10, .05, .01, .001."""
    d = 2 if abs(round(a, 2) - a) < 1e-9 else 3 if abs(round(a, 3) - a) < 1e-9 else 4
    return f"{a:.{d}f}".lstrip("0")


def _crit(level: float) -> float:
    return float(stats.norm.ppf(1 - (1 - level) / 2))


_MEASURER = RendererAgg(10, 10, 72)  # at 72 dpi one pixel is one point


def _text_width(strings: Sequence[str], size: float, weight: str = "normal") -> float:
    """Widest of ``strings`` in inches at font ``size`` (uses the active theme's font)."""
    prop = FontProperties(size=size, weight=weight)
    w = 0.0
    for s in strings:
        if s:
            w = max(w, _MEASURER.get_text_width_height_descent(s, prop, ismath=False)[0])
    return 1.04 * w / 72.0


def _nice_ticks(lo: float, hi: float) -> np.ndarray:
    t = MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]).tick_values(lo, hi)
    eps = 1e-9 * max(1.0, hi - lo)
    return t[(t >= lo - eps) & (t <= hi + eps)]


def _as_frame(df, cols: Sequence[str], who: str, may_be_nan: Sequence[str] = ()) -> pd.DataFrame:
    """Check a DataFrame for numeric ``cols`` (finite, except NaN allowed in ``may_be_nan``) and
    a label column (``label``, else ``study`` as the sensitivity functions name it); return a
    copy with the labels as strings in ``label``."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{who}: needs a pandas DataFrame, got {type(df).__name__}")
    lab = "label" if "label" in df.columns else "study" if "study" in df.columns else None
    missing = [c for c in cols if c not in df.columns] + (["label"] if lab is None else [])
    if missing:
        raise ValueError(f"{who}: the DataFrame lacks the column(s) {missing}; it needs "
                         f"{list(cols)} and label (or study)")
    if len(df) == 0:
        raise ValueError(f"{who}: the DataFrame has no rows")
    out = df.reset_index(drop=True)
    try:
        vals = out[list(cols)].to_numpy(dtype=float)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{who}: columns {list(cols)} must be numeric") from e
    allow = np.array([c in may_be_nan for c in cols])
    bad = np.isinf(vals) | (np.isnan(vals) & ~allow[None, :])
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"{who}: column {cols[c]!r} has a missing or infinite value at row {r}")
    out = out.assign(**{c: vals[:, j] for j, c in enumerate(cols)})
    return out.assign(label=out[lab].astype(str))


def _check_re(res, who: str) -> RandomEffectsResult:
    if not isinstance(res, RandomEffectsResult):
        raise ValueError(
            f"{who}: needs a RandomEffectsResult from random_effects() or common_effect(), "
            f"got {type(res).__name__}"
        )
    return res


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


def _estimate_forest(df, who: str, label_header: str, measure: str, res, ax, title,
                     row_height: float, plot_width: float) -> Figure:
    df = _as_frame(df, ("estimate", "ci_lb", "ci_ub"), who, may_be_nan=("ci_lb", "ci_ub"))
    _check_ax(ax, who)
    f, xlabel, name = _scale(measure, who)
    # NaN bounds (e.g. the first row of a Knapp-Hartung cumulative analysis) compare False
    if (df["ci_lb"] > df["estimate"] + 1e-12).any() or (df["ci_ub"] < df["estimate"] - 1e-12).any():
        raise ValueError(f"{who}: every row needs ci_lb <= estimate <= ci_ub")
    if res is not None:
        res = _check_re(res, who)
    side = 0.45 * row_height * 72.0
    rows = []
    for _, r in df.iterrows():
        e, a, b = float(f(r["estimate"])), float(f(r["ci_lb"])), float(f(r["ci_ub"]))
        rows.append(_Row("study", str(r["label"]), e, a, b, side**2, ci=_ci_text(e, a, b)))
    band = None
    if res is not None:
        band = (float(f(res.estimate)), float(f(res.ci_lb)), float(f(res.ci_ub)))
    lvl = f"{100 * res.level:g}% CI" if res is not None else "CI"
    with theme():
        fig = _draw_forest(
            rows, header=(label_header, None, f"{name} [{lvl}]"), xlabel=xlabel,
            clip=(-1.0, 1.0) if measure == "ZCOR" else None, xlim=None, ax=ax, title=title,
            row_height=row_height, plot_width=plot_width, band=band, study_marker="o",
        )
        return _finish(fig)


def leave_one_out_plot(
    df: pd.DataFrame,
    *,
    measure: str = "ZCOR",
    res: RandomEffectsResult | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Leave-one-out forest plot (Viechtbauer & Cheung 2010, Res Synth Methods 1:112-125,
    doi:10.1002/jrsm.11): one row per omitted study with the pooled estimate and CI of the
    remaining studies. ``df`` has columns estimate, ci_lb, ci_ub (on the scale of yi) and label
    (the omitted study), as returned by ``leave_one_out``; ``measure="ZCOR"`` (the default)
    back-transforms to r. With ``res`` the full-data estimate (dashed line) and its CI (band)
    are drawn for reference."""
    return _estimate_forest(df, "leave_one_out_plot", "Omitted study", measure, res, ax, title,
                            row_height, plot_width)


def cumulative_plot(
    df: pd.DataFrame,
    *,
    measure: str = "ZCOR",
    res: RandomEffectsResult | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Cumulative meta-analysis forest plot (Lau et al. 1992, N Engl J Med 327:248-254,
    doi:10.1056/NEJM199207233270406): row j shows the pooled estimate and CI of the first j
    studies in the chosen order. ``df`` has columns estimate, ci_lb, ci_ub (scale of yi) and
    label (the study added), as returned by ``cumulative``; ``measure="ZCOR"`` back-transforms
    to r; ``res`` adds the full-data estimate and CI for reference."""
    return _estimate_forest(df, "cumulative_plot", "Study added", measure, res, ax, title,
                            row_height, plot_width)


# ---------------------------------------------------------------------------------------------
# funnel plot


def funnel_plot(
    res: RandomEffectsResult,
    contours: Sequence[float] = (0.90, 0.95, 0.99),
    trimfill=None,
    *,
    ax: Axes | None = None,
    title: str | None = None,
) -> Figure:
    """Contour-enhanced funnel plot (Peters et al. 2008, J Clin Epidemiol 61:991-996,
    doi:10.1016/j.jclinepi.2007.11.010): effects (scale of yi) against their standard error
    (axis inverted, 0 on top), with regions shaded by the two-sided significance of a z test
    against 0 at the levels in ``contours`` (e.g. .90, .95, .99 give p > .10, .05-.10, .01-.05
    and p < .01), the pooled estimate with its pseudo-confidence funnel (estimate +/- z * SE)
    and, for ``measure="ZCOR"``, an r axis on top.

    ``trimfill`` is any object with arrays ``filled_yi`` and ``filled_vi`` (a trim-and-fill
    result; Duval & Tweedie 2000, doi:10.1111/j.0006-341X.2000.00455.x): the filled studies are
    drawn as open circles, and its ``estimate`` (if it has one) as a dashed line.
    """
    who = "funnel_plot"
    res = _check_re(res, who)
    _check_ax(ax, who)
    lev = np.asarray(list(contours), dtype=float)
    if lev.size and (not np.isfinite(lev).all() or (lev <= 0).any() or (lev >= 1).any()):
        raise ValueError(f"{who}: contours must be confidence levels strictly between 0 and 1, "
                         f"got {list(contours)}")
    lev = np.unique(lev)
    fy = fv = np.empty(0)
    adj = None
    if trimfill is not None:
        if not (hasattr(trimfill, "filled_yi") and hasattr(trimfill, "filled_vi")):
            raise ValueError(f"{who}: trimfill must have filled_yi and filled_vi arrays "
                             f"(a trim-and-fill result), got {type(trimfill).__name__}")
        fy = np.asarray(trimfill.filled_yi, dtype=float).ravel()
        fv = np.asarray(trimfill.filled_vi, dtype=float).ravel()
        if fy.shape != fv.shape:
            raise ValueError(f"{who}: trimfill.filled_yi has {fy.size} values but filled_vi "
                             f"has {fv.size}")
        if fy.size and (not np.isfinite(fy).all() or not np.isfinite(fv).all() or (fv <= 0).any()):
            raise ValueError(f"{who}: trimfill's filled studies need finite yi and positive vi")
        e = getattr(trimfill, "estimate", None)
        if isinstance(e, (int, float, np.floating)) and np.isfinite(e):
            adj = float(e)
    y, se = res.yi, np.sqrt(res.vi)
    fse = np.sqrt(fv)
    smax = 1.08 * float(max(se.max(), fse.max() if fse.size else 0.0))
    zc = np.array([_crit(x) for x in lev])
    z95 = _crit(res.level)
    ally = np.concatenate([y, fy])
    half = max(np.abs(ally).max(), (zc.max() if zc.size else 0) * smax,
               abs(res.estimate) + z95 * smax)
    lo, hi = -1.06 * half, 1.06 * half
    lo = min(lo, ally.min() - 0.05 * half)
    hi = max(hi, ally.max() + 0.05 * half)
    _scale(res.measure, who)

    with theme():
        if ax is None:
            fig = _new_figure(5.8, 4.2)
            ax = fig.add_axes((0.11, 0.12, 0.58, 0.7 if res.measure == "ZCOR" else 0.8))
        fig = _root_figure(ax)
        s = np.linspace(0.0, smax, 200)
        shades = ["white", "0.9", "0.8", "0.7", "0.6", "0.5"]
        bounds = [0.0, *zc.tolist()]
        handles = []
        ptxt = [_alpha_text(1 - x) for x in lev]
        for j in range(len(bounds)):
            inner = bounds[j] * s
            outer = bounds[j + 1] * s if j + 1 < len(bounds) else np.full_like(s, 2 * half)
            col = shades[min(j, len(shades) - 1)]
            for sign in (-1, 1):
                ax.fill_betweenx(s, sign * inner, sign * outer, color=col, lw=0, zorder=0,
                                 gid="contour_region")
            if not lev.size:
                break
            if j == 0:
                lab = f"p > {ptxt[0]}"
            elif j < len(bounds) - 1:
                lab = f"{ptxt[j]} < p \u2264 {ptxt[j - 1]}"
            else:
                lab = f"p \u2264 {ptxt[-1]}"
            handles.append(Patch(facecolor=col, edgecolor="0.5", lw=0.4, label=lab))
        ax.plot([res.estimate - z95 * smax, res.estimate, res.estimate + z95 * smax],
                [smax, 0, smax], color=INK, lw=0.7, ls=(0, (4, 2)), zorder=1, gid="pseudo_ci")
        ax.axvline(res.estimate, color=INK, lw=0.9, zorder=1, gid="pooled_estimate")
        handles.append(Line2D([], [], color=INK, lw=0.9, label="Pooled estimate"))
        handles.append(Line2D([], [], color=INK, lw=0.7, ls=(0, (4, 2)),
                              label=f"Pseudo {100 * res.level:g}% CI"))
        ax.scatter(y, se, s=16, color=INK, lw=0, zorder=3, gid="studies")
        handles.append(Line2D([], [], ls="none", marker="o", ms=4, color=INK,
                              label=f"Studies (k = {y.size})"))
        if trimfill is not None:
            ax.scatter(fy, fse, s=16, facecolors="white", edgecolors=INK, lw=0.8, zorder=3,
                       gid="filled")
            handles.append(Line2D([], [], ls="none", marker="o", ms=4, mfc="white", mec=INK,
                                  label=f"Filled studies (k0 = {fy.size})"))
            if adj is not None:
                ax.axvline(adj, color=PALETTE[1], lw=0.9, ls=(0, (2, 1.5)), zorder=1,
                           gid="adjusted_estimate")
                handles.append(Line2D([], [], color=PALETTE[1], lw=0.9, ls=(0, (2, 1.5)),
                                      label="Adjusted estimate"))
        ax.set_xlim(lo, hi)
        ax.set_ylim(smax, 0)
        ax.set_ylabel("Standard error")
        ax.set_xlabel("Fisher's z" if res.measure == "ZCOR" else "Effect size")
        if res.measure == "ZCOR":
            sec = ax.secondary_xaxis(
                "top", functions=(np.tanh, lambda r: np.arctanh(np.clip(r, -0.999999, 0.999999)))
            )
            sec.set_xlabel("Correlation (r)")
            ax.spines["top"].set_visible(True)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                  borderaxespad=0.0)
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)


# ---------------------------------------------------------------------------------------------
# bubble plot


def bubble_plot(
    reg: MetaRegressionResult,
    moderator: str,
    *,
    ax: Axes | None = None,
    xlabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Bubble plot of a meta-regression on one continuous moderator (Thompson & Higgins 2002,
    Stat Med 21:1559-1573, doi:10.1002/sim.1187): each study a circle of area proportional to
    its weight 1/(vi + tau2), the fitted line and its CI band (``reg.predict``, at
    ``reg.level``); for ``measure="ZCOR"`` the y axis is in r (tanh of the fit)."""
    who = "bubble_plot"
    if not isinstance(reg, MetaRegressionResult):
        raise ValueError(f"{who}: needs a MetaRegressionResult from meta_regression(), "
                         f"got {type(reg).__name__}")
    _check_ax(ax, who)
    if reg.p != 2:
        raise ValueError(f"{who}: needs a meta-regression with exactly one moderator; this one "
                         f"has {reg.p - 1} ({list(reg.coef_names[1:])})")
    if moderator not in reg.coef_names[1:]:
        raise ValueError(f"{who}: moderator {moderator!r} is not in the model; its moderator is "
                         f"{reg.coef_names[1]!r}")
    x = reg.X[:, 1]
    if np.unique(x).size < 3:
        raise ValueError(f"{who}: moderator {moderator!r} takes fewer than 3 distinct values; "
                         "a bubble plot needs a continuous moderator")
    f, ylabel, _ = _scale(reg.measure, who)
    w = 1.0 / (reg.vi + reg.tau2)
    area = np.maximum(260.0 * w / w.max(), 6.0)
    grid = np.linspace(x.min(), x.max(), 200)
    pred = reg.predict(np.column_stack([np.ones_like(grid), grid]))
    with theme():
        if ax is None:
            fig = _new_figure(4.6, 3.6)
            ax = fig.add_axes((0.14, 0.13, 0.82, 0.8))
        fig = _root_figure(ax)
        ax.fill_between(grid, f(pred["ci_lb"]), f(pred["ci_ub"]), color=PALETTE[0], alpha=0.2,
                        lw=0, gid="ci_band")
        ax.plot(grid, f(pred["pred"]), color=PALETTE[0], lw=1.4, gid="fit")
        ax.scatter(x, f(reg.yi), s=area, facecolor=PALETTE[5], edgecolor=INK, lw=0.5,
                   alpha=0.75, zorder=3, gid="studies")
        ax.axhline(0, color=MUTED, lw=0.6, zorder=0, gid="null_line")
        ax.set_xlabel(xlabel if xlabel is not None else moderator)
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)


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


# ---------------------------------------------------------------------------------------------
# orchard plot


def orchard_plot(
    yi: Sequence[float],
    vi: Sequence[float],
    groups: Sequence,
    res_by_group: dict | SubgroupResult | None = None,
    *,
    measure: str = "ZCOR",
    method: str = "REML",
    test: str = "z",
    level: float = 0.95,
    ax: Axes | None = None,
    seed: int = 0,
    xlabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Orchard plot (Nakagawa et al. 2021, Res Synth Methods 12:4-12, doi:10.1002/jrsm.1424):
    one row per group with every effect as a jittered point ("fruit") of area proportional to
    its precision 1/sqrt(vi), the pooled estimate with its CI (thick "trunk") and prediction
    interval (thin "twig"), and k in the group's label.

    ``res_by_group`` maps each group to a RandomEffectsResult (or is a SubgroupResult); when
    None, ``random_effects(method=, test=, level=)`` is fitted per group with at least two
    effects. Jitter is drawn with ``numpy.random.default_rng(seed)``, so the figure is
    reproducible. ``measure="ZCOR"`` back-transforms to r.
    """
    who = "orchard_plot"
    _check_ax(ax, who)
    y = np.asarray(yi, dtype=float).ravel()
    v = np.asarray(vi, dtype=float).ravel()
    if y.shape != v.shape:
        raise ValueError(f"{who}: yi has {y.size} values but vi has {v.size}")
    if y.size == 0:
        raise ValueError(f"{who}: needs at least one effect size")
    if not (np.isfinite(y).all() and np.isfinite(v).all()) or (v <= 0).any():
        raise ValueError(f"{who}: yi must be finite and vi finite and positive")
    gs = pd.Series(list(groups), dtype=object)
    if len(gs) != y.size:
        raise ValueError(f"{who}: groups has {len(gs)} values but yi has {y.size}")
    if gs.isna().any():
        raise ValueError(f"{who}: groups has missing values")
    g = gs.astype(str).to_numpy()
    levels = list(pd.unique(g))
    if isinstance(res_by_group, SubgroupResult):
        res_by_group = res_by_group.groups
    if res_by_group is not None:
        if not isinstance(res_by_group, dict):
            raise ValueError(f"{who}: res_by_group must be a dict of RandomEffectsResult, a "
                             "SubgroupResult or None")
        fits = {str(key): val for key, val in res_by_group.items()}
        for val in fits.values():
            _check_re(val, who)
        missing = [lev for lev in levels if lev not in fits]
        if missing:
            raise ValueError(f"{who}: res_by_group has no result for group(s) {missing}")
    else:
        fits = {}
        for lev in levels:
            m = g == lev
            if m.sum() >= 2:
                fits[lev] = random_effects(y[m], v[m], method=method, test=test, level=level,
                                           measure=measure)
    f, xl, _ = _scale(measure, who)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.3, 0.3, size=y.size)
    prec = 1.0 / np.sqrt(v)
    area = np.maximum(70.0 * prec / prec.max(), 4.0)
    n = len(levels)
    with theme():
        if ax is None:
            fig = _new_figure(5.6, 0.9 + 0.62 * n)
            fig_h = 0.9 + 0.62 * n
            ax = fig.add_axes((0.3, 0.55 / fig_h, 0.64, (0.62 * n) / fig_h))
        fig = _root_figure(ax)
        ax.axvline(0, color=MUTED, lw=0.6, ls=(0, (4, 2)), zorder=0, gid="null_line")
        ticklabels = []
        for j, lev in enumerate(levels):
            m = g == lev
            col = PALETTE[j % len(PALETTE)]
            ax.scatter(f(y[m]), j + jitter[m], s=area[m], color=col, alpha=0.45, lw=0,
                       zorder=2, gid=f"effects:{lev}")
            if lev in fits:
                r = fits[lev]
                ax.plot([f(r.pi_lb), f(r.pi_ub)], [j, j], color=INK, lw=1.0, zorder=3,
                        solid_capstyle="butt", gid=f"pi:{lev}")
                ax.plot([f(r.ci_lb), f(r.ci_ub)], [j, j], color=INK, lw=4.0, zorder=4,
                        solid_capstyle="butt", gid=f"ci:{lev}")
                ax.scatter([f(r.estimate)], [j], s=46, facecolor="white", edgecolor=INK,
                           lw=1.2, zorder=5, gid=f"pooled:{lev}")
            ticklabels.append(f"{lev} (k = {int(m.sum())})")
        ax.set_yticks(np.arange(n), ticklabels)
        ax.set_ylim(n - 0.5, -0.5)
        if measure == "ZCOR":
            lo, hi = ax.get_xlim()
            ax.set_xlim(max(lo, -1.0), min(hi, 1.0))
        ax.set_xlabel(xlabel if xlabel is not None else xl)
        ax.tick_params(axis="y", length=0)
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)


# ---------------------------------------------------------------------------------------------
# saving


_METADATA = {
    "svg": {"Date": None},  # no time stamp (matplotlib adds today's date otherwise)
    "pdf": {"CreationDate": None},  # no time stamp in the info dictionary
    "png": {},  # matplotlib's PNG carries only 'Software' (its version), no date
}


def save_figure(
    fig: Figure,
    path_stem: str | os.PathLike,
    formats: Sequence[str] = ("svg", "png", "pdf"),
    *,
    dpi: float = 300,
) -> dict[str, Path]:
    """Write ``fig`` as ``<path_stem>.<fmt>`` for each format (svg, png, pdf) and return the
    paths by format.

    Output is deterministic: the same figure gives byte-identical files (fixed
    ``svg.hashsalt``, no date in SVG or PDF metadata, text as paths in SVG, TrueType subsets in
    PDF). Each file is first written to a temporary file beside its target, and all are moved
    into place only when every format has been written, so a failure leaves no partial files.
    """
    who = "save_figure"
    if not isinstance(fig, Figure):
        raise ValueError(f"{who}: needs a matplotlib Figure, got {type(fig).__name__}")
    if isinstance(formats, str):
        formats = (formats,)
    fmts = [str(x).lower().lstrip(".") for x in formats]
    if not fmts:
        raise ValueError(f"{who}: formats is empty; give one or more of svg, png, pdf")
    bad = [x for x in fmts if x not in _METADATA]
    if bad:
        raise ValueError(f"{who}: unsupported format(s) {bad}; use svg, png or pdf")
    if len(set(fmts)) != len(fmts):
        raise ValueError(f"{who}: formats lists a format twice: {fmts}")
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in _METADATA:
        raise ValueError(f"{who}: give the path without extension (got {str(stem)!r}); the "
                         "extension is added per format")
    if not stem.name:
        raise ValueError(f"{who}: path_stem needs a file name")
    stem.parent.mkdir(parents=True, exist_ok=True)
    done: dict[str, Path] = {}
    temps: list[tuple[str, str]] = []
    try:
        with mpl.rc_context({k: STYLE[k] for k in ("svg.hashsalt", "svg.fonttype", "pdf.fonttype")}):
            for fmt in fmts:
                tmp = str(stem.with_name(f".{stem.name}.{fmt}.{uuid.uuid4().hex}.tmp"))
                temps.append((fmt, tmp))
                fig.savefig(tmp, format=fmt, dpi=dpi, metadata=_METADATA[fmt])
        for fmt, tmp in temps:
            target = stem.with_name(f"{stem.name}.{fmt}")
            os.replace(tmp, target)
            done[fmt] = target
    except BaseException:
        for _, tmp in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)
        raise
    return done
