"""Orchard plot of subgroups, fitted with the package's one subgroup fitter.

References
----------
Nakagawa, S., Lagisz, M., O'Dea, R. E., et al. (2021). The orchard plot: cultivating a forest
    plot for use in ecology, evolution, and beyond. Res Synth Methods, 12(1), 4-12.
    doi:10.1002/jrsm.1424
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..stats.subgroup import SubgroupResult, subgroup_analysis
from .theme import (
    INK,
    MUTED,
    PALETTE,
    _check_ax,
    _finish,
    _model,
    _new_figure,
    _root_figure,
    _scale,
    _text_width,
    _wrap,
    theme,
)

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
    min_k_interpret: int = 3,
    model_label: str | None = None,
    xlabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Orchard plot (Nakagawa et al. 2021, Res Synth Methods 12:4-12, doi:10.1002/jrsm.1424):
    one row per group with every effect as a jittered point ("fruit") of area proportional to
    its precision 1/sqrt(vi), the pooled estimate with its CI (thick "trunk") and prediction
    interval (thin "twig"), and k in the group's label.

    ``res_by_group`` maps each group to a fitted model (anything with ``estimate``,
    ``ci_lb``, ``ci_ub`` and, for the twig, ``pi_lb``/``pi_ub``: e.g. the headline model fitted
    per level) or is a SubgroupResult; when None, the package's subgroup fitter
    :func:`~alliance_meta.subgroup_analysis` (``method=``, ``test=``, ``level=``) pools every
    group with at least two effects. Levels with fewer than ``min_k_interpret`` effects are
    flagged "not interpreted" (a dagger and a footnote). A footnote names the model of the
    pooled estimates (``model_label`` replaces it). Jitter is drawn with
    ``numpy.random.default_rng(seed)``, so the figure is reproducible. ``measure="ZCOR"``
    back-transforms to r.
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
            _model(val, who)
        missing = [lev for lev in levels if lev not in fits]
        if missing:
            raise ValueError(f"{who}: res_by_group has no result for group(s) {missing}")
    else:
        try:
            fits = dict(subgroup_analysis(y, v, g, method=method, test=test, level=level,
                                          measure=measure, min_k=2).groups)
        except ValueError:  # fewer than two groups with two or more effects: nothing pooled
            fits = {}
    if model_label is None and fits:
        model_label = "per level, " + _model(next(iter(fits.values())), who).label
    f, xl, _ = _scale(measure, who)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-0.3, 0.3, size=y.size)
    prec = 1.0 / np.sqrt(v)
    area = np.maximum(70.0 * prec / prec.max(), 4.0)
    n = len(levels)
    counts = {lev: int((g == lev).sum()) for lev in levels}
    few = [lev for lev in levels if counts[lev] < min_k_interpret]
    ticklabels = [f"{lev} (k = {counts[lev]})" + (" \u2020" if lev in few else "")
                  for lev in levels]
    foot = [f"Model: {model_label}"] if model_label else []
    if few:
        foot.append(f"\u2020 k < {min_k_interpret}: not interpreted")
    with theme():
        own = ax is None
        if own:
            w_lab = _text_width(ticklabels, 7.5) + 0.2
            fig_w, plot_w = w_lab + 3.7, 3.5
            foot_text = "\n".join(_wrap(t, fig_w - 0.2, 7.0) for t in foot)
            foot_h = 0.13 * (foot_text.count("\n") + 1) if foot else 0.0
            fig_h = 0.9 + 0.62 * n + foot_h
            fig = _new_figure(fig_w, fig_h)
            ax = fig.add_axes((w_lab / fig_w, (0.55 + foot_h) / fig_h, plot_w / fig_w,
                               (0.62 * n) / fig_h))
            if foot:
                fig.text(0.1 / fig_w, 0.04 / fig_h, foot_text, fontsize=7.0, color="#444444",
                         va="bottom", gid="footnote")
        fig = _root_figure(ax)
        ax.axvline(0, color=MUTED, lw=0.6, ls=(0, (4, 2)), zorder=0, gid="null_line")
        for j, lev in enumerate(levels):
            m = g == lev
            col = PALETTE[j % len(PALETTE)]
            ax.scatter(f(y[m]), j + jitter[m], s=area[m], color=col, alpha=0.45, lw=0,
                       zorder=2, gid=f"effects:{lev}")
            if lev in fits:
                r = _model(fits[lev], who)
                if np.isfinite(r.pi_lb) and np.isfinite(r.pi_ub):
                    ax.plot([f(r.pi_lb), f(r.pi_ub)], [j, j], color=INK, lw=1.0, zorder=3,
                            solid_capstyle="butt", gid=f"pi:{lev}")
                ax.plot([f(r.ci_lb), f(r.ci_ub)], [j, j], color=INK, lw=4.0, zorder=4,
                        solid_capstyle="butt", gid=f"ci:{lev}")
                ax.scatter([f(r.estimate)], [j], s=46, facecolor="white", edgecolor=INK,
                           lw=1.2, zorder=5, gid=f"pooled:{lev}")
        ax.set_yticks(np.arange(n), ticklabels)
        ax.set_ylim(n - 0.5, -0.5)
        if measure == "ZCOR":
            lo, hi = ax.get_xlim()
            ax.set_xlim(max(lo, -1.0), min(hi, 1.0))
        xl = xlabel if xlabel is not None else xl
        if not own and foot:  # on the caller's axes the footnote joins the axis label
            xl = "\n".join([xl, *foot])
        ax.set_xlabel(xl)
        ax.tick_params(axis="y", length=0)
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)


