"""Leave-one-out and cumulative forest plots.

References
----------
Viechtbauer, W., & Cheung, M. W.-L. (2010). Outlier and influence diagnostics for
    meta-analysis. Res Synth Methods, 1(2), 112-125. doi:10.1002/jrsm.11
Lau, J., Antman, E. M., Jimenez-Silva, J., et al. (1992). Cumulative meta-analysis of
    therapeutic trials for myocardial infarction. N Engl J Med, 327, 248-254.
    doi:10.1056/NEJM199207233270406
"""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..stats.rma import RandomEffectsResult
from .forest import _draw_forest, _Row
from .theme import (
    _ROW_HEIGHT,
    _as_frame,
    _check_ax,
    _check_re,
    _ci_text,
    _finish,
    _scale,
    theme,
)


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


