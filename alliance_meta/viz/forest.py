"""Forest plot of the headline model: every effect, or grouped, or split across pages.

:func:`forest_plot` draws one row per effect (author-year labels, an n column, optional sort by
year or effect) and closes with the diamond of whichever model the caller fitted (random
effects, three-level, CR2-robust), its prediction interval, its heterogeneity and the
description of the model and its CI type; cautions are printed when k < 5 and when the
prediction interval equals the CI. Above ``max_rows`` effects the plot is grouped (one row per
group: sample or subgroup) unless ``full=True``; :func:`forest_pages` splits it across pages
instead. Subgroup estimates come from the package's one subgroup fitter
(:func:`alliance_meta.subgroup_analysis`).

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

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..stats.subgroup import SubgroupResult, subgroup_analysis
from ._forest_layout import MAX_ROWS, Header, _Row, draw_forest, marker_areas, x_range
from .theme import (
    _ROW_HEIGHT,
    Model,
    _check_ax,
    _ci_text,
    _crit,
    _finish,
    _model,
    _num,
    _pfmt,
    _scale,
    theme,
)

_SORTS = (None, "year", "effect")


@dataclass
class _Studies:
    """Per-effect columns in the model's order."""

    yi: np.ndarray
    vi: np.ndarray
    label: list[str]
    n: np.ndarray | None
    year: np.ndarray | None
    group: np.ndarray | None


def _column(explicit, data: pd.DataFrame | None, name: str, k: int, who: str, arg: str = ""):
    """An explicit sequence (argument ``arg``) wins over ``data[name]``; either must have k
    entries."""
    val = explicit if explicit is not None else (
        data[name] if data is not None and name in data.columns else None)
    if val is None:
        return None
    out = pd.Series(list(val), dtype=object)
    if len(out) != k:
        what = arg or name if explicit is not None else f"data[{name!r}]"
        raise ValueError(f"{who}: {what} has {len(out)} entries but the model has k = {k}")
    return out


def _studies(m: Model, res, who: str, labels, groups, n, year, yi, vi, data) -> _Studies:
    if data is not None and not isinstance(data, pd.DataFrame):
        raise ValueError(f"{who}: data must be a pandas DataFrame, got {type(data).__name__}")
    y = yi if yi is not None else data["yi"] if data is not None and "yi" in data else m.yi
    v = vi if vi is not None else data["vi"] if data is not None and "vi" in data else m.vi
    if y is None or v is None:
        raise ValueError(f"{who}: this {type(res).__name__} carries no study data; pass yi= and "
                         "vi= (or data with yi and vi columns) in the model's order")
    y, v = np.asarray(y, dtype=float).ravel(), np.asarray(v, dtype=float).ravel()
    k = y.size
    if v.size != k or not (np.isfinite(y).all() and np.isfinite(v).all()) or (v <= 0).any():
        raise ValueError(f"{who}: yi and vi need one finite value per effect (vi > 0)")
    lab = _column(labels, data, "label", k, who, "labels")
    if lab is None:
        own = tuple(getattr(res, "labels", ()) or ())
        lab = pd.Series(own if len(own) == k else [f"Study {i + 1}" for i in range(k)])
    g = _column(groups, data, "group", k, who, "groups")
    if g is not None and g.isna().any():
        raise ValueError(f"{who}: groups has missing values at positions "
                         f"{np.flatnonzero(g.isna().to_numpy())[:10].tolist()}")
    nn = _column(n, data, "n", k, who)
    yr = _column(year, data, "year", k, who)
    return _Studies(
        yi=y, vi=v, label=[str(s) for s in lab],
        n=None if nn is None else pd.to_numeric(nn, errors="coerce").to_numpy(float),
        year=None if yr is None else pd.to_numeric(yr, errors="coerce").to_numpy(float),
        group=None if g is None else g.astype(str).to_numpy(),
    )


def _order(idx: np.ndarray, s: _Studies, sort: str | None) -> np.ndarray:
    """Indices ``idx`` in the requested order (stable: ties keep input order)."""
    if sort == "year":
        key = s.year[idx]
        return idx[np.lexsort((np.arange(idx.size), np.nan_to_num(key, nan=np.inf)))]
    if sort == "effect":
        return idx[np.argsort(s.yi[idx], kind="stable")]
    return idx


def _n_text(x: float) -> str:
    return f"{int(round(x)):,}" if np.isfinite(x) else ""


def _subgroups(s: _Studies, m: Model, res, fit: SubgroupResult | None, who: str):
    """Per-group fits from the package's subgroup fitter (or the one the caller passes)."""
    if fit is not None:
        if not isinstance(fit, SubgroupResult):
            raise ValueError(f"{who}: subgroup_fit must be a SubgroupResult, got "
                             f"{type(fit).__name__}")
        return fit
    method = str(getattr(res, "method", "REML"))
    method = method if method in ("REML", "ML", "DL", "PM", "HS", "HE", "SJ", "EB", "FE") else "REML"
    test = str(getattr(res, "test", "z"))
    test = "knha" if test in ("knha", "t") else "z"
    try:
        return subgroup_analysis(s.yi, s.vi, s.group, method=method, test=test, level=m.level,
                                 measure=m.measure, min_k=1 if method == "FE" else 2)
    except ValueError:
        return None  # fewer than two groups with enough effects: blocks without diamonds


def _rows(m: Model, s: _Studies, res, *, sort, collapse: bool, group_name: str,
          subgroup_fit, row_height: float, who: str):
    """(body rows, closing rows) of the forest."""
    f, _, _ = _scale(m.measure, who)
    crit = _crit(m.level)
    k = s.yi.size
    w = m.weights if m.weights is not None and m.weights.size == k else None
    area = marker_areas(w if w is not None else 1.0 / s.vi, row_height)

    def study(i: int) -> _Row:
        lb, ub = s.yi[i] - crit * np.sqrt(s.vi[i]), s.yi[i] + crit * np.sqrt(s.vi[i])
        e, a, b = float(f(s.yi[i])), float(f(lb)), float(f(ub))
        wt = "" if w is None else f"{w[i]:.1f}%" if w[i] >= 0.1 else f"{w[i]:.2f}%"
        nt = "" if s.n is None else _n_text(s.n[i])
        return _Row("study", s.label[i], e, a, b, float(area[i]), wt, _ci_text(e, a, b), n=nt)

    def summary(r, label: str, weight: str, gid: str) -> _Row:
        e, a, b = float(f(r.estimate)), float(f(r.ci_lb)), float(f(r.ci_ub))
        return _Row("summary", label, e, a, b, weight=weight, ci=_ci_text(e, a, b), gid=gid)

    body: list[_Row] = []
    notes: list[_Row] = []
    if s.group is None:
        body += [study(i) for i in _order(np.arange(k), s, sort)]
        body.append(_Row("blank"))
    else:
        sg = _subgroups(s, m, res, subgroup_fit, who)
        fits = {} if sg is None else sg.groups
        levels = list(pd.unique(s.group))
        if collapse:
            if sort == "year":
                levels.sort(key=lambda g: np.nanmin(np.append(s.year[s.group == g], np.inf)))
            elif sort == "effect":
                levels.sort(key=lambda g: fits[g].estimate if g in fits else
                            float(s.yi[s.group == g][0]))
        if collapse:  # one marker per group, its area proportional to the group's weight
            base = w if w is not None else 1.0 / s.vi
            g_area = dict(zip(levels, marker_areas(
                np.array([base[s.group == lev].sum() for lev in levels]), row_height),
                strict=True))
        for lev in levels:
            idx = np.flatnonzero(s.group == lev)
            if collapse:
                if lev in fits:
                    r = fits[lev]
                    e, a, b = float(f(r.estimate)), float(f(r.ci_lb)), float(f(r.ci_ub))
                    wsum = "" if w is None else f"{w[idx].sum():.1f}%"
                    body.append(_Row("study", str(lev), e, a, b, float(g_area[lev]), wsum,
                                     _ci_text(e, a, b), n=str(idx.size)))
                else:
                    row = study(int(idx[0]))
                    row.label, row.n, row.size = str(lev), str(idx.size), float(g_area[lev])
                    body.append(row)
                continue
            body.append(_Row("group", str(lev)))
            body += [study(i) for i in _order(idx, s, sort)]
            if lev in fits:
                r = fits[lev]
                wsum = "" if w is None else f"{w[idx].sum():.1f}%"
                body.append(summary(r, f"Subgroup estimate (k = {idx.size})", wsum,
                                    "summary_subgroup"))
                if idx.size >= 2 and getattr(r, "method", "") != "FE":
                    body.append(_Row("note", f"Heterogeneity: \u03c4\u00b2 = {r.tau2:.4f}, "
                                     f"I\u00b2 = {r.I2:.1f}%, Q({r.k - 1}) = {r.Q:.2f}, "
                                     f"{_pfmt(r.Q_p)}"))
                elif idx.size >= 2:
                    body.append(_Row("note", f"Heterogeneity: I\u00b2 = {r.I2:.1f}%, "
                                     f"Q({r.k - 1}) = {r.Q:.2f}, {_pfmt(r.Q_p)}"))
            body.append(_Row("blank"))
        if collapse:
            body.append(_Row("blank"))
            notes.append(_Row("note", f"One row per {group_name}: {k} effects in "
                              f"{len(levels)} {group_name}s; {group_name}s with several effects "
                              "show their random-effects estimate (full=True draws every effect)."))
        if sg is not None and len(fits) >= 2:
            notes.append(_Row("note", f"Test for {group_name} differences: "
                              f"Q({sg.df_between}) = {sg.Q_between:.2f}, {_pfmt(sg.Q_between_p)}"))
    tail = [summary(m, m.short, "100%" if w is not None else "", "summary_overall")]
    if m.re_model and np.isfinite(m.pi_lb) and np.isfinite(m.pi_ub):
        a, b = float(f(m.pi_lb)), float(f(m.pi_ub))
        tail.append(_Row("pi", "Prediction interval", lb=a, ub=b, ci=f"[{_num(a)}, {_num(b)}]"))
    if m.heterogeneity:
        tail.append(_Row("note", f"Heterogeneity: {m.heterogeneity}"))
    tail += notes
    tail.append(_Row("note", f"Model: {m.label}"))
    tail += [_Row("caution", c) for c in m.cautions]
    return body, tail


def _check_args(who: str, ax, row_height: float, plot_width: float, sort, max_rows) -> None:
    _check_ax(ax, who)
    if not row_height > 0 or not plot_width > 0:
        raise ValueError(f"{who}: row_height and plot_width must be positive")
    if sort not in _SORTS:
        raise ValueError(f"{who}: sort must be None, 'year' or 'effect', got {sort!r}")
    if not isinstance(max_rows, (int, np.integer)) or max_rows < 1:
        raise ValueError(f"{who}: max_rows must be a positive integer, got {max_rows!r}")


def _header(m: Model, s: _Studies, collapse: bool, label_header: str) -> Header:
    _, _, name = _scale(m.measure, "forest_plot")
    return Header(
        label=label_header,
        n="k" if collapse else ("n" if s.n is not None else None),
        weight="Weight" if m.weights is not None and m.weights.size == s.yi.size else None,
        ci=f"{name} [{100 * m.level:g}% CI]",
    )


def forest_plot(
    res,
    labels: Sequence[str] | None = None,
    groups: Sequence | None = None,
    *,
    data: pd.DataFrame | None = None,
    n: Sequence[float] | None = None,
    year: Sequence[float] | None = None,
    yi: Sequence[float] | None = None,
    vi: Sequence[float] | None = None,
    sort: str | None = None,
    model_label: str | None = None,
    title: str | None = None,
    group_name: str = "subgroup",
    subgroup_fit: SubgroupResult | None = None,
    max_rows: int = MAX_ROWS,
    full: bool = False,
    ax: Axes | None = None,
    xlim: tuple[float, float] | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
) -> Figure:
    """Forest plot (Lewis & Clarke 2001, BMJ 322:1479, doi:10.1136/bmj.322.7300.1479) of the
    headline model ``res``: any fitted result with ``estimate``, ``ci_lb``, ``ci_ub`` (and
    ``pi_lb``/``pi_ub`` when it has them), e.g. ``random_effects``, ``three_level`` or
    ``robust``. Its diamond, prediction interval (Riley et al. 2011, doi:10.1136/bmj.d549),
    heterogeneity and a "Model: ..." line naming the model and its CI type (z, Knapp-Hartung
    t(df), t(df), CR2 t(df)) close the plot; ``model_label`` replaces that description.

    One row per effect: yi +/- z * sqrt(vi) at the model's level, a square of area
    proportional to the model's weight (metafor's ``weights()``; 1/vi when the model has none).
    Per-effect columns come from the arguments or, when an argument is None, from ``data``
    (a DataFrame in the model's order with columns ``label``, ``group``, ``n``, ``year``,
    ``yi``, ``vi``): ``labels`` (e.g. author-year, with the outcome for studies with several
    effects), ``n`` (an n column), ``year`` (for ``sort="year"``), ``yi``/``vi`` (needed when
    the result carries no study data, as CR2-robust results). ``sort`` orders rows by "year" or
    "effect" (within groups). ``title`` is printed on top (name the subset there).

    ``groups`` (one value per effect) shows blocks, each closed by a diamond from
    :func:`~alliance_meta.subgroup_analysis` (or ``subgroup_fit``) and followed by the test of
    differences between groups (``group_name`` names them, e.g. "sample"). With more than
    ``max_rows`` effects each group becomes one row (its estimate, k in the n column) unless
    ``full=True``; without ``groups`` a three-level model groups by its own samples, and any
    other model draws every effect with a caution naming :func:`forest_pages`. For
    ``measure="ZCOR"`` everything is back-transformed to r.

    When ``ax`` is None the figure is sized from its content (``row_height`` inches per row),
    so labels never overlap; with your own ``ax`` leave room for the text columns.
    """
    who = "forest_plot"
    _check_args(who, ax, row_height, plot_width, sort, max_rows)
    m = _model(res, who, model_label)
    s = _studies(m, res, who, labels, groups, n, year, yi, vi, data)
    if sort == "year" and s.year is None:
        raise ValueError(f"{who}: sort='year' needs year (or a year column in data)")
    k = s.yi.size
    collapse = k > max_rows and not full
    too_long = None
    if collapse:
        collapse, group_name = _collapse_groups(res, s, group_name)
        if not collapse:  # nothing to group by: every effect, and how to shorten the figure
            too_long = _Row("caution", f"{k} effects exceed max_rows = {max_rows}: pass groups "
                            "(e.g. the sample) for one row per group, or use forest_pages().")
    body, tail = _rows(m, s, res, sort=sort, collapse=collapse, group_name=group_name,
                       subgroup_fit=subgroup_fit, row_height=row_height, who=who)
    rows = body + tail + ([too_long] if too_long is not None else [])
    f, xlabel, _ = _scale(m.measure, who)
    with theme():
        fig = draw_forest(
            rows, header=_header(m, s, collapse, group_name.capitalize() if collapse else "Study"),
            xlabel=xlabel,
            lims=x_range(rows, 0.0, None, (-1.0, 1.0) if m.measure == "ZCOR" else None, xlim),
            ax=ax, title=title, row_height=row_height, plot_width=plot_width,
        )
        return _finish(fig)


def _collapse_groups(res, s: _Studies, group_name: str) -> tuple[bool, str]:
    """Whether a forest can show one row per group, and the groups' name: the given groups,
    else a three-level model's own samples (set on ``s``)."""
    if s.group is not None:
        return True, group_name
    cluster = getattr(res, "cluster", None)
    if cluster is not None and np.size(cluster) == s.yi.size:
        s.group = pd.Series(list(cluster), dtype=object).astype(str).to_numpy()
        return True, "sample" if group_name == "subgroup" else group_name
    return False, group_name


def forest_pages(
    res,
    labels: Sequence[str] | None = None,
    groups: Sequence | None = None,
    *,
    data: pd.DataFrame | None = None,
    n: Sequence[float] | None = None,
    year: Sequence[float] | None = None,
    yi: Sequence[float] | None = None,
    vi: Sequence[float] | None = None,
    sort: str | None = None,
    model_label: str | None = None,
    title: str | None = None,
    group_name: str = "subgroup",
    subgroup_fit: SubgroupResult | None = None,
    max_rows: int = MAX_ROWS,
    xlim: tuple[float, float] | None = None,
    row_height: float = _ROW_HEIGHT,
    plot_width: float = 3.0,
    collapse: bool = False,
) -> list[Figure]:
    """Every effect of :func:`forest_plot`, split across pages of at most ``max_rows`` rows
    (same arguments). All pages share one x range; each title ends in "(page i of P)"; the
    pooled rows, notes and cautions close the last page. ``collapse=True`` pages the rows of
    :func:`forest_plot`'s grouped form instead: one row per group (``groups``, or a
    three-level model's samples), for when even the groups are more than ``max_rows``."""
    who = "forest_pages"
    _check_args(who, None, row_height, plot_width, sort, max_rows)
    m = _model(res, who, model_label)
    s = _studies(m, res, who, labels, groups, n, year, yi, vi, data)
    if sort == "year" and s.year is None:
        raise ValueError(f"{who}: sort='year' needs year (or a year column in data)")
    if collapse:
        collapse, group_name = _collapse_groups(res, s, group_name)
        if not collapse:
            raise ValueError(f"{who}: collapse=True needs groups (or a three-level model)")
    body, tail = _rows(m, s, res, sort=sort, collapse=collapse, group_name=group_name,
                       subgroup_fit=subgroup_fit, row_height=row_height, who=who)
    while body and body[-1].kind == "blank":
        body.pop()
    pages = [body[i: i + max_rows] for i in range(0, max(len(body), 1), max_rows)]
    pages[-1] = pages[-1] + [_Row("blank")] + tail
    f, xlabel, _ = _scale(m.measure, who)
    lims = x_range(body + tail, 0.0, None, (-1.0, 1.0) if m.measure == "ZCOR" else None, xlim)
    header = _header(m, s, collapse, group_name.capitalize() if collapse else "Study")
    figs = []
    with theme():
        for j, rows in enumerate(pages):
            t = f"{title} (page {j + 1} of {len(pages)})" if title else \
                f"Page {j + 1} of {len(pages)}"
            figs.append(_finish(draw_forest(
                rows, header=header, xlabel=xlabel, lims=lims, ax=None, title=t,
                row_height=row_height, plot_width=plot_width,
            )))
    return figs
