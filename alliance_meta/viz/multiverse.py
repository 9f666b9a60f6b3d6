"""Multiverse figures: the specification curve, the histogram of estimates and the share of
significant specifications (tables come from :mod:`alliance_meta.stats.multiverse`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..stats.multiverse import MultiverseResult, _sig_class
from .theme import INK, MUTED, PALETTE, theme

# ---------------------------------------------------------------------------------------------
# figures (matplotlib only, imported when drawn; the package's theme and palette)

_SIG_LABELS = ("significant positive", "not significant", "significant negative")
_RASTER_ABOVE = 300  # specifications; beyond this the dense layers are embedded as bitmaps
# beyond this the choices panel is an image (one pixel column per specification) instead of a
# marker per choice: 290k markers took a second to draw at 24k specifications
_IMAGE_ABOVE = 2000
_IMAGE_COLUMNS = 1000  # the image's columns (about the panel's width in pixels at 200 dpi)


def _sig_colours() -> tuple[str, str, str]:
    return PALETTE[0], MUTED, PALETTE[1]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _check_result(result, who: str) -> MultiverseResult:
    if not isinstance(result, MultiverseResult):
        raise ValueError(f"{who}: needs a MultiverseResult, got {type(result).__name__}")
    return result


def _empty(fig, ax, who: str):
    ax.text(0.5, 0.5, "no estimable specifications", ha="center", va="center",
            transform=ax.transAxes)
    ax.set_axis_off()
    return fig


def _integer_axis(axis) -> None:
    """Ticks at whole numbers only (counts and ranks)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _prespecified_row(res: MultiverseResult, prespecified: Mapping[str, Any], who: str
                      ) -> pd.Series:
    """The one specification whose levels are ``prespecified`` (factor -> level)."""
    unknown = [f for f in prespecified if f not in res.factors]
    if unknown:
        raise ValueError(f"{who}: prespecified names unknown factor(s) {unknown}; use "
                         f"{list(res.factors)}")

    def match(t: pd.DataFrame) -> np.ndarray:
        sel = np.ones(len(t), dtype=bool)
        for f, lv in prespecified.items():
            col = t[f]
            sel &= (pd.to_numeric(col) == float(lv)).to_numpy() if f == "min_n" else (
                col.astype(str) == str(lv)).to_numpy()
        return sel

    hit = res.table[match(res.table)]
    if len(hit) == 1:
        return hit.iloc[0]
    if len(hit) > 1:
        free = [f for f in res.varying if f not in prespecified and hit[f].nunique() > 1]
        raise ValueError(f"{who}: prespecified matches {len(hit)} specifications; give a level "
                         f"for {free}")
    why = res.excluded[match(res.excluded)]["reason"] if len(res.excluded) else pd.Series()
    extra = f" ({why.iloc[0]})" if len(why) else ""
    raise ValueError(f"{who}: prespecified {dict(prespecified)} is not a specification of this "
                     f"multiverse{extra}")


def specification_curve(result: MultiverseResult, factors: Sequence[str] | None = None,
                        title: str | None = None,
                        prespecified: Mapping[str, Any] | None = None):
    """The specification curve (Simonsohn et al. 2020): the estimable specifications ordered
    by their estimate (r) with CIs, coloured by significance and direction, above a panel that
    marks each specification's level of every factor.

    ``factors`` chooses the factors of the lower panel (default: those with more than one
    level). ``prespecified`` (factor -> level, e.g. the headline analysis's choices) marks
    that one specification on both panels and names its r in the legend. The legend, with the
    median r, sits above the curve, off the data. Returns the Figure (two Axes: the curve, the
    choices).
    """
    who = "specification_curve"
    res = _check_result(result, who)
    pre = _prespecified_row(res, prespecified, who) if prespecified else None
    from matplotlib.collections import LineCollection
    from matplotlib.colors import to_rgba_array

    facs = list(factors) if factors is not None else res.varying
    unknown = [f for f in facs if f not in res.factors]
    if unknown:
        raise ValueError(f"{who}: unknown factor(s) {unknown}; use {list(res.factors)}")
    rows = [(f, str(lv)) for f in facs for lv in res.factors[f]]
    ok = res.estimable.sort_values(["r", "spec_id"], kind="stable")
    n = len(ok)
    raster = n > _RASTER_ABOVE
    pos_c, non_c, neg_c = _sig_colours()
    with theme():
        fig = _figure(7.0, 2.4 + 0.13 * max(len(rows), 1))
        gs = fig.add_gridspec(2, 1, height_ratios=[2.2, 0.13 * max(len(rows), 1)])
        ax = fig.add_subplot(gs[0])
        axc = fig.add_subplot(gs[1], sharex=ax)
        if title:
            fig.suptitle(title, fontsize=9, fontweight="bold")
        if n == 0:
            _empty(fig, ax, who)
            axc.set_axis_off()
            return fig
        x = np.arange(n)
        cls = _sig_class(ok, 1 - res.level)
        # one RGBA row per specification, converted once (matplotlib converts a list of
        # colour names point by point: most of the drawing time at 24k specifications)
        rgba = to_rgba_array([pos_c, non_c, neg_c])[np.where(cls > 0, 0, np.where(cls < 0, 2, 1))]
        segs = np.stack([np.column_stack([x, ok["r_ci_lb"]]), np.column_stack([x, ok["r_ci_ub"]])],
                        axis=1)
        lc = LineCollection(segs, colors=rgba, linewidths=0.6 if n < 500 else 0.3,
                            alpha=0.6, rasterized=raster)
        ax.add_collection(lc)
        ax.scatter(x, ok["r"].to_numpy(), s=6 if n < 500 else 1.5, c=rgba, zorder=3,
                   linewidths=0,
                   rasterized=raster)
        ax.axhline(0, color=MUTED, lw=0.6, ls=":")
        med = float(np.median(ok["r"]))
        ax.axhline(med, color=INK, lw=0.6, ls="--")
        lo = min(float(ok["r_ci_lb"].min()), 0.0)
        hi = max(float(ok["r_ci_ub"].max()), 0.0)
        pad = 0.05 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xlim(-0.5 - 0.01 * n, n - 0.5 + 0.01 * n)
        ax.set_ylabel(f"r with {100 * res.level:g}% CI")
        ax.tick_params(labelbottom=False)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=c, marker="o", ms=3, lw=0.8, label=lab)
                   for c, lab in zip((pos_c, non_c, neg_c), _SIG_LABELS, strict=True)
                   if (cls == {pos_c: 1, non_c: 0, neg_c: -1}[c]).any()]
        handles.append(Line2D([], [], color=INK, lw=0.6, ls="--", label=f"median r = {med:.2f}"))
        pre_x = None
        if pre is not None:
            if pre["status"] == "ok":
                pre_x = int(np.flatnonzero(ok["spec_id"].to_numpy() == pre["spec_id"])[0])
                ax.scatter([pre_x], [pre["r"]], s=46, marker="D", facecolors="none",
                           edgecolors=INK, linewidths=1.0, zorder=4)
                for a in (ax, axc):
                    a.axvline(pre_x, color=INK, lw=0.5, alpha=0.35, zorder=0)
                lab = f"pre-specified: r = {pre['r']:.2f}"
            else:
                lab = "pre-specified: not estimable"
            handles.append(Line2D([], [], color=INK, marker="D", mfc="none", ms=5, lw=0,
                                  label=lab))
        # above the axes, off the data
        ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3,
                  borderaxespad=0.0, frameon=False, fontsize=6.5)
        # the choices
        ypos = {r: i for i, r in enumerate(rows)}
        ys = np.concatenate([ok[f].astype(str).map(lambda lv, f=f: ypos[(f, lv)]).to_numpy(int)
                             for f in facs]) if facs else np.empty(0, int)
        if n <= _IMAGE_ABOVE:
            axc.scatter(np.tile(x, len(facs)), ys, s=4 if n < 500 else 0.8,
                        c=np.tile(rgba, (len(facs), 1)) if facs else None, marker="s",
                        linewidths=0, rasterized=raster)
        else:  # an image: each column the mean colour of the specifications it covers (the
            # lighter, the fewer of them made that choice), one row per choice, kept sharp
            grid = np.ones((max(len(rows), 1), n, 4))
            grid[ys, np.tile(x, len(facs))] = np.tile(rgba, (len(facs), 1))
            bins = np.array_split(np.arange(n), min(_IMAGE_COLUMNS, n))
            starts = np.array([b[0] for b in bins])
            cols = np.add.reduceat(grid, starts, axis=1) / np.array([b.size for b in bins])[
                None, :, None]
            axc.imshow(cols, aspect="auto", interpolation="nearest",
                       extent=(-0.5, n - 0.5, len(rows) - 0.5, -0.5), gid="choices")
        axc.set_yticks(range(len(rows)))
        axc.set_yticklabels([f"{f}: {lv}" for f, lv in rows], fontsize=6.5)
        axc.set_ylim(len(rows) - 0.5, -0.5)
        b = 0
        for f in facs[:-1]:
            b += len(res.factors[f])
            axc.axhline(b - 0.5, color=MUTED, lw=0.4)
        axc.set_xlabel(f"specification (ordered by r; {n} of {len(res.table)} estimable)")
        _integer_axis(axc.xaxis)
        axc.spines["left"].set_visible(False)
        axc.tick_params(axis="y", length=0)
    return fig


def estimate_histogram(result: MultiverseResult, bins: int | str = "auto",
                       title: str | None = None):
    """Histogram of the estimable specifications' r, stacked by significance and direction,
    with the median and zero marked. Returns the Figure."""
    who = "estimate_histogram"
    res = _check_result(result, who)
    ok = res.estimable
    with theme():
        fig = _figure(4.5, 2.8)
        ax = fig.add_subplot(1, 1, 1)
        if title:
            fig.suptitle(title, fontsize=9, fontweight="bold")
        if len(ok) == 0:
            return _empty(fig, ax, who)
        r = ok["r"].to_numpy()
        edges = np.histogram_bin_edges(r, bins=bins)
        if edges.size > 61:
            edges = np.linspace(r.min(), r.max(), 61)
        cls = _sig_class(ok, 1 - res.level)
        cols = _sig_colours()
        data = [r[cls == c] for c in (1, 0, -1)]
        ax.hist(data, bins=edges, stacked=True, color=list(cols), label=list(_SIG_LABELS),
                edgecolor="white", linewidth=0.3)
        ax.axvline(0, color=MUTED, lw=0.6, ls=":")
        med = float(np.median(r))
        ax.axvline(med, color=INK, lw=0.8, ls="--", label=f"median r = {med:.2f}")
        ax.set_xlabel("r (pooled estimate of a specification)")
        ax.set_ylabel("specifications")
        _integer_axis(ax.yaxis)
        # above the axes, off the bars
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=2, borderaxespad=0.0,
                  frameon=False, fontsize=6.5)
    return fig


def share_significant_plot(result: MultiverseResult, by: Sequence[str] | str | None = None,
                           title: str | None = None):
    """Horizontal bars: the share of estimable specifications that are significant and
    positive, not significant, and significant and negative; for all specifications and per
    level of each factor in ``by`` (default: every factor with more than one level). Returns
    the Figure."""
    who = "share_significant_plot"
    res = _check_result(result, who)
    facs = [by] if isinstance(by, str) else (list(by) if by is not None else res.varying)
    unknown = [f for f in facs if f not in res.factors]
    if unknown:
        raise ValueError(f"{who}: unknown factor(s) {unknown}; use {list(res.factors)}")
    tabs = [res.summary().assign(factor="", level="all specifications")]
    tabs += [res.summary(by=f) for f in facs]
    s = pd.concat(tabs, ignore_index=True)
    labels = [lv if not f else f"{f}: {lv}" for f, lv in zip(s["factor"], s["level"], strict=True)]
    labels = [f"{lab} (n = {int(n)})" for lab, n in zip(labels, s["n_estimable"], strict=True)]
    cols = _sig_colours()
    with theme():
        fig = _figure(5.5, 0.8 + 0.18 * len(s))
        ax = fig.add_subplot(1, 1, 1)
        if title:
            fig.suptitle(title, fontsize=9, fontweight="bold")
        yy = np.arange(len(s))
        left = np.zeros(len(s))
        for c, lab, col in zip(("share_sig_positive", "share_not_sig", "share_sig_negative"),
                               _SIG_LABELS, cols, strict=True):
            val = 100 * s[c].fillna(0).to_numpy()
            ax.barh(yy, val, left=left, color=col, label=lab, height=0.7)
            left += val
        ax.set_yticks(yy)
        ax.set_yticklabels(labels, fontsize=6.5)
        ax.set_ylim(len(s) - 0.5, -0.5)
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"% of estimable specifications (p < {1 - res.level:.2g})")
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)
    return fig
