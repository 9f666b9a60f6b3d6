"""Contour-enhanced funnel plot.

References
----------
Light, R. J., & Pillemer, D. B. (1984). Summing up: the science of reviewing research. Harvard
    University Press (funnel plot).
Peters, J. L., Sutton, A. J., Jones, D. R., Abrams, K. R., & Rushton, L. (2008). Contour-enhanced
    meta-analysis funnel plots help distinguish publication bias from other causes of asymmetry.
    J Clin Epidemiol, 61(10), 991-996. doi:10.1016/j.jclinepi.2007.11.010
Duval, S., & Tweedie, R. (2000). Trim and fill. Biometrics, 56(2), 455-463.
    doi:10.1111/j.0006-341X.2000.00455.x (the filled studies)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .theme import (
    INK,
    PALETTE,
    _alpha_text,
    _check_ax,
    _crit,
    _finish,
    _model,
    _new_figure,
    _root_figure,
    _scale,
    _wrap,
    theme,
)


def funnel_plot(
    res,
    contours: Sequence[float] = (0.90, 0.95, 0.99),
    trimfill=None,
    *,
    yi: Sequence[float] | None = None,
    vi: Sequence[float] | None = None,
    points_label: str = "Studies",
    model_label: str | None = None,
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

    ``res`` is the headline model (random effects, three-level, CR2-robust: anything with
    ``estimate``, ``ci_lb``, ``ci_ub``): its estimate is the centre line, and its description
    (``model_label`` replaces it) titles the legend. The points are ``yi``/``vi`` when given
    (e.g. one composite per sample, with ``points_label="Per-sample composites"``), else the
    model's own effects; the legend names them with ``points_label`` and their number.
    """
    who = "funnel_plot"
    m = _model(res, who, model_label)
    if (yi is None) != (vi is None):
        raise ValueError(f"{who}: give both yi and vi, or neither")
    if yi is not None:
        y = np.asarray(yi, dtype=float).ravel()
        v = np.asarray(vi, dtype=float).ravel()
        if y.size != v.size or not y.size or not (np.isfinite(y).all() and np.isfinite(v).all()) \
                or (v <= 0).any():
            raise ValueError(f"{who}: yi and vi need one finite value per point (vi > 0)")
    elif m.yi is not None and m.vi is not None:
        y, v = m.yi, m.vi
    else:
        raise ValueError(f"{who}: this {type(res).__name__} carries no study data; pass yi= "
                         "and vi=")
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
    se = np.sqrt(v)
    fse = np.sqrt(fv)
    smax = 1.08 * float(max(se.max(), fse.max() if fse.size else 0.0))
    zc = np.array([_crit(x) for x in lev])
    z95 = _crit(m.level)
    ally = np.concatenate([y, fy])
    half = max(np.abs(ally).max(), (zc.max() if zc.size else 0) * smax,
               abs(m.estimate) + z95 * smax)
    lo, hi = -1.06 * half, 1.06 * half
    lo = min(lo, ally.min() - 0.05 * half)
    hi = max(hi, ally.max() + 0.05 * half)
    _scale(m.measure, who)

    # the axes in inches (left, bottom, width, height); the figure's width follows the legend
    own = ax is None
    box_in = (0.64, 0.5, 3.36, 2.94 if m.measure == "ZCOR" else 3.36)
    with theme():
        if own:
            fig = _new_figure(5.8, 4.2)
            ax = fig.add_axes((box_in[0] / 5.8, box_in[1] / 4.2, box_in[2] / 5.8, box_in[3] / 4.2))
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
        ax.plot([m.estimate - z95 * smax, m.estimate, m.estimate + z95 * smax],
                [smax, 0, smax], color=INK, lw=0.7, ls=(0, (4, 2)), zorder=1, gid="pseudo_ci")
        ax.axvline(m.estimate, color=INK, lw=0.9, zorder=1, gid="pooled_estimate")
        handles.append(Line2D([], [], color=INK, lw=0.9, label="Pooled estimate"))
        handles.append(Line2D([], [], color=INK, lw=0.7, ls=(0, (4, 2)),
                              label=f"Pseudo {100 * m.level:g}% CI"))
        ax.scatter(y, se, s=16, color=INK, lw=0, zorder=3, gid="studies")
        handles.append(Line2D([], [], ls="none", marker="o", ms=4, color=INK,
                              label=f"{points_label} (k = {y.size})"))
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
        ax.set_xlabel("Fisher's z" if m.measure == "ZCOR" else "Effect size")
        if m.measure == "ZCOR":
            sec = ax.secondary_xaxis(
                "top", functions=(np.tanh, lambda r: np.arctanh(np.clip(r, -0.999999, 0.999999)))
            )
            sec.set_xlabel("Correlation (r)")
            ax.spines["top"].set_visible(True)
        leg = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 1.0),
                        borderaxespad=0.0, title=_wrap(f"Model: {m.label}", 1.6, 7.0),
                        title_fontsize=7.0, alignment="left")
        leg.get_title().set_gid("model_label")
        if title:
            ax.set_title(title, loc="left")
        if own:  # widen the figure so that the legend (and the cautions under it) fit
            fig.canvas.draw()
            leg_w = leg.get_window_extent().width / fig.dpi
            x_leg = box_in[0] + box_in[2] + 0.1
            width = max(5.8, x_leg + leg_w + 0.15)
            fig.set_size_inches(width, 4.2)
            ax.set_position((box_in[0] / width, box_in[1] / 4.2, box_in[2] / width,
                             box_in[3] / 4.2))
            if m.cautions:
                fig.text(x_leg / width, 0.1 / 4.2,
                         _wrap(" ".join(m.cautions), max(leg_w, 1.6), 6.5), fontsize=6.5,
                         color=PALETTE[1], va="bottom", ha="left", gid="caution")
        elif m.cautions:
            ax.set_xlabel(ax.get_xlabel() + "\n" + " ".join(m.cautions), fontsize=7.0)
        return _finish(fig)


