"""Bubble plot of a one-moderator meta-regression.

References
----------
Thompson, S. G., & Higgins, J. P. T. (2002). How should meta-regression analyses be undertaken
    and interpreted? Stat Med, 21(11), 1559-1573. doi:10.1002/sim.1187
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..stats.rma import MetaRegressionResult
from .theme import (
    INK,
    MUTED,
    PALETTE,
    _check_ax,
    _finish,
    _new_figure,
    _root_figure,
    _scale,
    theme,
)

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


