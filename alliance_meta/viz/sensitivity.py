"""Leave-one-out and cumulative forest plots, drawn against the headline model.

Both take the tidy frames of :func:`alliance_meta.leave_one_out` and
:func:`alliance_meta.cumulative` (one row per omitted or added unit: a study, a sample or an
effect, as ``unit`` says) and, as reference, any fitted model with ``estimate``, ``ci_lb`` and
``ci_ub`` (random effects, three-level, CR2-robust), whose description is printed under the
rows so that the figure says which model drew the band.

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

from ._forest_layout import Header, _Row, draw_forest, x_range
from .theme import (
    _ROW_HEIGHT,
    _as_frame,
    _check_ax,
    _ci_text,
    _finish,
    _model,
    _scale,
    theme,
)


def _estimate_forest(df, who: str, label_header: str, measure: str | None, res, ax, title,
                     model_label: str | None, row_height: float, plot_width: float) -> Figure:
    df = _as_frame(df, ("estimate", "ci_lb", "ci_ub"), who, may_be_nan=("ci_lb", "ci_ub"))
    _check_ax(ax, who)
    m = _model(res, who, model_label) if res is not None else None
    if measure is None:
        measure = m.measure if m is not None else "ZCOR"
    f, xlabel, name = _scale(measure, who)
    # NaN bounds (e.g. the first row of a Knapp-Hartung cumulative analysis) compare False
    if (df["ci_lb"] > df["estimate"] + 1e-12).any() or (df["ci_ub"] < df["estimate"] - 1e-12).any():
        raise ValueError(f"{who}: every row needs ci_lb <= estimate <= ci_ub")
    side = 0.45 * row_height * 72.0
    rows = []
    for _, r in df.iterrows():
        e, a, b = float(f(r["estimate"])), float(f(r["ci_lb"])), float(f(r["ci_ub"]))
        rows.append(_Row("study", str(r["label"]), e, a, b, side**2, ci=_ci_text(e, a, b)))
    band = None
    if m is not None:
        band = (float(f(m.estimate)), float(f(m.ci_lb)), float(f(m.ci_ub)))
        e, a, b = band
        rows += [_Row("blank"),
                 _Row("note", f"Dashed line and band: all data, {_ci_text(e, a, b)}"),
                 _Row("note", f"Model: {m.label}")]
        rows += [_Row("caution", c) for c in m.cautions]
    elif model_label:
        rows += [_Row("blank"), _Row("note", f"Model: {model_label}")]
    lvl = f"{100 * m.level:g}% CI" if m is not None else "CI"
    with theme():
        fig = draw_forest(
            rows, header=Header(label_header, None, None, f"{name} [{lvl}]"), xlabel=xlabel,
            lims=x_range(rows, 0.0, band, (-1.0, 1.0) if measure == "ZCOR" else None, None),
            ax=ax, title=title, row_height=row_height, plot_width=plot_width, band=band,
            study_marker="o",
        )
        return _finish(fig)


def leave_one_out_plot(
    df: pd.DataFrame,
    *,
    measure: str | None = None,
    res=None,
    unit: str = "study",
    model_label: str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Leave-one-out forest plot (Viechtbauer & Cheung 2010, Res Synth Methods 1:112-125,
    doi:10.1002/jrsm.11): one row per omitted ``unit`` ("study", "sample" or "effect": say what
    was dropped) with the pooled estimate and CI of the rest. ``df`` has columns estimate,
    ci_lb, ci_ub (on the scale of yi) and label (or study), as ``leave_one_out`` returns.

    ``res`` (the headline model: random effects, three-level or CR2-robust) adds the full-data
    estimate (dashed line) and CI (band), a "Model: ..." line (``model_label`` replaces it)
    and its small-k cautions; ``measure`` defaults to the model's (else "ZCOR", drawn as r)."""
    return _estimate_forest(df, "leave_one_out_plot", f"Omitted {unit}", measure, res, ax,
                            title, model_label, row_height, plot_width)


def cumulative_plot(
    df: pd.DataFrame,
    *,
    measure: str | None = None,
    res=None,
    unit: str = "study",
    model_label: str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Cumulative meta-analysis forest plot (Lau et al. 1992, N Engl J Med 327:248-254,
    doi:10.1056/NEJM199207233270406): row j shows the pooled estimate and CI of the first j
    units (``unit``: "study", "sample" or "effect") in the chosen order. ``df`` has columns
    estimate, ci_lb, ci_ub (scale of yi) and label (the unit added), as ``cumulative``
    returns; ``res``, ``model_label`` and ``measure`` as in :func:`leave_one_out_plot`."""
    return _estimate_forest(df, "cumulative_plot", f"{unit.capitalize()} added", measure, res,
                            ax, title, model_label, row_height, plot_width)
