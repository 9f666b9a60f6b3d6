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

import textwrap

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._forest_layout import MAX_ROWS, Header, _Row, draw_forest, x_range
from .theme import (
    _ROW_HEIGHT,
    INK,
    MUTED,
    PALETTE,
    _as_frame,
    _check_ax,
    _ci_text,
    _finish,
    _model,
    _new_figure,
    _scale,
    theme,
)

N_NAMED = 5  # rows named in the compact form: those farthest from the full-data estimate


def _estimate_forest(df, who: str, label_header: str, measure: str | None, res, ax, title,
                     model_label: str | None, row_height: float, plot_width: float,
                     max_rows: int = MAX_ROWS) -> Figure:
    df = _as_frame(df, ("estimate", "ci_lb", "ci_ub"), who, may_be_nan=("ci_lb", "ci_ub"))
    _check_ax(ax, who)
    m = _model(res, who, model_label) if res is not None else None
    if measure is None:
        measure = m.measure if m is not None else "ZCOR"
    f, xlabel, name = _scale(measure, who)
    # NaN bounds (e.g. the first row of a Knapp-Hartung cumulative analysis) compare False
    if (df["ci_lb"] > df["estimate"] + 1e-12).any() or (df["ci_ub"] < df["estimate"] - 1e-12).any():
        raise ValueError(f"{who}: every row needs ci_lb <= estimate <= ci_ub")
    if len(df) > max_rows and ax is None:
        return _estimate_index(df, label_header, f, xlabel, name, m, model_label, title,
                               plot_width, name_farthest=who == "leave_one_out_plot")
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


def _estimate_index(df, label_header: str, f, xlabel: str, name: str, m, model_label, title,
                    plot_width: float, name_farthest: bool) -> Figure:
    """The compact form of a long leave-one-out or cumulative frame: the rows in their order
    along x, each estimate with its CI as a vertical line, the full-data estimate and CI as a
    dashed line and band; ``name_farthest``: the ``N_NAMED`` rows farthest from it are
    numbered and named (leave-one-out: the most influential units)."""
    est = f(df["estimate"].to_numpy(float))
    lb, ub = f(df["ci_lb"].to_numpy(float)), f(df["ci_ub"].to_numpy(float))
    x = np.arange(1, len(df) + 1)
    labels = df["label"].astype(str).to_numpy()
    notes = []
    with theme():
        fig = _new_figure(plot_width + 3.5, 3.6)  # its height is set once the notes are known
        ax = fig.add_axes((0.1, 0.36, 0.86, 0.55))
        if m is not None:
            e0, a0, b0 = float(f(m.estimate)), float(f(m.ci_lb)), float(f(m.ci_ub))
            ax.axhspan(a0, b0, color=MUTED, alpha=0.18, lw=0, gid="band")
            ax.axhline(e0, color=INK, lw=0.8, ls="--", gid="full_estimate")
            notes += [f"Dashed line and band: all data, {_ci_text(e0, a0, b0)}",
                      f"Model: {m.label}", *m.cautions]
        elif model_label:
            notes.append(f"Model: {model_label}")
        ax.vlines(x, lb, ub, color=PALETTE[0], lw=0.6, alpha=0.6, gid="intervals")
        ax.plot(x, est, "o", ms=2.5, color=PALETTE[0], gid="estimates")
        ref = float(f(m.estimate)) if m is not None else float(np.nanmedian(est))
        far = [] if not name_farthest else sorted(np.argsort(-np.abs(np.nan_to_num(est - ref)), kind="stable")[:N_NAMED])
        # numbered rings on the plot, the names in a line under it (names collide on a plot)
        if far:
            ax.plot(x[far], est[far], "o", ms=6, mfc="none", mec=INK, mew=0.7, gid="named")
        for j, i in enumerate(far, 1):
            ax.annotate(str(j), (x[i], est[i]), xytext=(0, 5), textcoords="offset points",
                        ha="center", va="bottom", fontsize=6.5, color=INK)
        if far:
            notes.insert(0, "Farthest from the full-data estimate: " + "; ".join(
                f"{j} {labels[i]} ({_ci_text(est[i], lb[i], ub[i])})"
                for j, i in enumerate(far, 1)))
        ax.set_xlim(0, len(df) + 1)
        ax.set_xlabel(f"{label_header} (1 to {len(df)}, in the table's order)")
        ax.set_ylabel(f"{name} [{100 * m.level:g}% CI]" if m is not None else xlabel)
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=9.0)
        wrapped = [ln for text in notes for ln in textwrap.wrap(text, 125)]
        # inches: 0.35 title, 2.2 plot, 0.6 x axis, 0.17 per note line, 0.1 margin
        height = 3.25 + 0.17 * len(wrapped)
        fig.set_size_inches(plot_width + 3.5, height)
        ax.set_position((0.1, (0.7 + 0.17 * len(wrapped)) / height, 0.86, 2.2 / height))
        for j, text in enumerate(wrapped):
            fig.text(0.01, (0.1 + 0.17 * (len(wrapped) - j)) / height, text, fontsize=6.5,
                     color=INK, va="top")
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
    max_rows: int = MAX_ROWS,
) -> Figure:
    """Leave-one-out forest plot (Viechtbauer & Cheung 2010, Res Synth Methods 1:112-125,
    doi:10.1002/jrsm.11): one row per omitted ``unit`` ("study", "sample" or "effect": say what
    was dropped) with the pooled estimate and CI of the rest. ``df`` has columns estimate,
    ci_lb, ci_ub (on the scale of yi) and label (or study), as ``leave_one_out`` returns.

    ``res`` (the headline model: random effects, three-level or CR2-robust) adds the full-data
    estimate (dashed line) and CI (band), a "Model: ..." line (``model_label`` replaces it)
    and its small-k cautions; ``measure`` defaults to the model's (else "ZCOR", drawn as r).
    Above ``max_rows`` rows (and without ``ax``) the figure is compact: the rows along x, each
    estimate with its CI, the :data:`N_NAMED` farthest from the full-data estimate named."""
    return _estimate_forest(df, "leave_one_out_plot", f"Omitted {unit}", measure, res, ax,
                            title, model_label, row_height, plot_width, max_rows)


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
    max_rows: int = MAX_ROWS,
) -> Figure:
    """Cumulative meta-analysis forest plot (Lau et al. 1992, N Engl J Med 327:248-254,
    doi:10.1056/NEJM199207233270406): row j shows the pooled estimate and CI of the first j
    units (``unit``: "study", "sample" or "effect") in the chosen order. ``df`` has columns
    estimate, ci_lb, ci_ub (scale of yi) and label (the unit added), as ``cumulative``
    returns; ``res``, ``model_label``, ``measure`` and ``max_rows`` as in
    :func:`leave_one_out_plot`."""
    return _estimate_forest(df, "cumulative_plot", f"{unit.capitalize()} added", measure, res,
                            ax, title, model_label, row_height, plot_width, max_rows)
