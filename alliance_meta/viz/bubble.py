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
from scipy import special

from .theme import (
    INK,
    MUTED,
    PALETTE,
    _check_ax,
    _ci_kind,
    _finish,
    _integer_ticks,
    _new_figure,
    _root_figure,
    _scale,
    _wrap,
    theme,
)


def _prediction(reg, grid: np.ndarray):
    """Fitted line and CI band over ``grid``: the model's own ``predict`` when it has one,
    else x'b with se sqrt(x' vb x) and the model's critical value (z, or t with its df)."""
    Xg = np.column_stack([np.ones_like(grid), grid])
    if hasattr(reg, "predict"):
        pred = reg.predict(Xg)
        return (np.asarray(pred["pred"], float), np.asarray(pred["ci_lb"], float),
                np.asarray(pred["ci_ub"], float))
    b, vb = np.asarray(reg.coef, float), np.asarray(reg.vb, float)
    mu = Xg @ b
    se = np.sqrt(np.einsum("ij,jk,ik->i", Xg, vb, Xg))
    dfs = float(np.ravel(getattr(reg, "dfs", np.inf))[0])
    a = 1 - float(reg.level)
    crit = special.stdtrit(dfs, 1 - a / 2) if np.isfinite(dfs) else special.ndtri(1 - a / 2)
    return mu, mu - crit * se, mu + crit * se


def _reg_label(reg) -> str:
    method = str(getattr(reg, "method", ""))
    kind = _ci_kind(str(getattr(reg, "test", "z")), float(np.ravel(getattr(reg, "dfs", np.inf))[0]))
    family = "three-level meta-regression" if hasattr(reg, "sigma2_between") else "meta-regression"
    return f"{family} {method}, {kind} CI"


def bubble_plot(
    reg,
    moderator: str,
    *,
    model_label: str | None = None,
    ax: Axes | None = None,
    xlabel: str | None = None,
    title: str | None = None,
) -> Figure:
    """Bubble plot of a meta-regression on one continuous moderator (Thompson & Higgins 2002,
    Stat Med 21:1559-1573, doi:10.1002/sim.1187): each study a circle of area proportional to
    its weight 1/(vi + tau2) (three-level: 1/(vi + sigma2 between + within)), the fitted line
    and its CI band at ``reg.level``; for ``measure="ZCOR"`` the y axis is in r (tanh of the
    fit). ``reg`` is a ``meta_regression`` or a ``three_level`` fit with one moderator. A
    moderator whose values are all whole numbers (a year, a count) gets integer ticks. The
    model and its CI type are printed under the axis (``model_label`` replaces the text)."""
    who = "bubble_plot"
    need = ("X", "coef", "vb", "yi", "vi", "coef_names", "level")
    if not all(hasattr(reg, a) for a in need):
        raise ValueError(f"{who}: needs a MetaRegressionResult from meta_regression() (or a "
                         f"three_level fit with a moderator), got {type(reg).__name__}")
    _check_ax(ax, who)
    names = list(reg.coef_names)
    if len(names) != 2:
        raise ValueError(f"{who}: needs a meta-regression with exactly one moderator; this one "
                         f"has {len(names) - 1} ({names[1:]})")
    if moderator not in names[1:]:
        raise ValueError(f"{who}: moderator {moderator!r} is not in the model; its moderator is "
                         f"{names[1]!r}")
    x = np.asarray(reg.X, float)[:, 1]
    if np.unique(x).size < 3:
        raise ValueError(f"{who}: moderator {moderator!r} takes fewer than 3 distinct values; "
                         "a bubble plot needs a continuous moderator")
    f, ylabel, _ = _scale(str(getattr(reg, "measure", "GEN")), who)
    het = getattr(reg, "tau2", None)
    if het is None:
        het = float(getattr(reg, "sigma2_between", 0.0)) + float(getattr(reg, "sigma2_within", 0.0))
    yi, vi = np.asarray(reg.yi, float), np.asarray(reg.vi, float)
    w = 1.0 / (vi + float(het))
    area = np.maximum(260.0 * w / w.max(), 6.0)
    grid = np.linspace(x.min(), x.max(), 200)
    mu, lb, ub = _prediction(reg, grid)
    label = model_label if model_label is not None else _reg_label(reg)
    with theme():
        if ax is None:
            fig = _new_figure(4.6, 3.9)
            ax = fig.add_axes((0.14, 0.2, 0.82, 0.72))
        fig = _root_figure(ax)
        ax.fill_between(grid, f(lb), f(ub), color=PALETTE[0], alpha=0.2, lw=0, gid="ci_band")
        ax.plot(grid, f(mu), color=PALETTE[0], lw=1.4, gid="fit")
        ax.scatter(x, f(yi), s=area, facecolor=PALETTE[5], edgecolor=INK, lw=0.5,
                   alpha=0.75, zorder=3, gid="studies")
        ax.axhline(0, color=MUTED, lw=0.6, zorder=0, gid="null_line")
        if np.allclose(x, np.round(x)):
            _integer_ticks(ax.xaxis)
        ax.set_xlabel(xlabel if xlabel is not None else moderator)
        ax.set_ylabel(ylabel)
        fig.text(0.02, 0.015, _wrap(f"Model: {label}", 4.4, 7.0), fontsize=7.0,
                 color="#444444", va="bottom", gid="model_label")
        if title:
            ax.set_title(title, loc="left")
        return _finish(fig)
