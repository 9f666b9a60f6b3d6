"""What the dataset holds: an overview of the coded effects and the distribution of effects
across moderator levels, drawn with seaborn (on the package's theme and palette, never with
seaborn's global ``set_theme``, so that no rcParams leak).

Counts are effects or samples (``unit``), always on integer axes; years are binned by calendar
year, so no axis shows "2012.5" or "1.5 studies".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from .theme import INK, PALETTE, _finish, _integer_ticks, _new_figure, _text_width, theme

DEFAULT_COLUMNS = ("modality", "format", "alliance_rater", "outcome_rater")
_UNITS = ("effects", "samples")
#: Above this many effects moderator_distribution draws jittered points instead of a swarm.
SWARM_MAX = 120


def _jitter(n: int, width: float = 0.5) -> np.ndarray:
    """Deterministic vertical offsets in (-width/2, width/2): the golden-ratio sequence, so
    the figure is the same on every run without a random generator."""
    return ((np.arange(n) * 0.6180339887498949) % 1.0 - 0.5) * width


def _rows(df, unit: str, who: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{who}: needs a pandas DataFrame of effects, got {type(df).__name__}")
    if len(df) == 0:
        raise ValueError(f"{who}: the DataFrame has no rows")
    if unit not in _UNITS:
        raise ValueError(f"{who}: unit must be 'effects' or 'samples', got {unit!r}")
    if unit == "samples":
        if "sample_id" not in df.columns:
            raise ValueError(f"{who}: unit='samples' needs a sample_id column")
        return df.drop_duplicates("sample_id").reset_index(drop=True)
    return df.reset_index(drop=True)


def _levels(s: pd.Series) -> list[str]:
    """Levels by decreasing count, ties alphabetical (a stable order for identical files)."""
    c = s.value_counts()
    return sorted(c.index, key=lambda v: (-int(c[v]), str(v)))


def dataset_overview(
    df: pd.DataFrame,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    *,
    unit: str = "effects",
    year: str | None = "year",
    n: str | None = "n",
    title: str | None = None,
) -> Figure:
    """Overview of a coded dataset: one bar chart of counts per categorical column in
    ``columns`` (e.g. modality, format, alliance and outcome rater; missing values counted as
    "not reported"), a histogram of publication ``year`` with one bin per year, and the
    distribution of sample sizes ``n`` (one value per sample when a ``sample_id`` column exists,
    on a log axis). ``unit`` counts "effects" (rows) or "samples" (first row of each sample).
    Every count axis has integer ticks; ``title`` names the subset. Pass ``year=None`` or
    ``n=None`` to leave a panel out."""
    who = "dataset_overview"
    cols = [columns] if isinstance(columns, str) else list(columns)
    missing = [c for c in cols + [x for x in (year, n) if x] if c not in df.columns] \
        if isinstance(df, pd.DataFrame) else []
    if missing:
        raise ValueError(f"{who}: the DataFrame lacks the column(s) {missing}")
    d = _rows(df, unit, who)
    panels = [("count", c) for c in cols] + ([("year", year)] if year else []) + \
        ([("n", n)] if n else [])
    if not panels:
        raise ValueError(f"{who}: nothing to draw (no columns, year=None and n=None)")
    data = {c: d[c].astype("string").fillna("not reported").astype(str) for c in cols}
    n_levels = [len(data[c].unique()) if kind == "count" else 4 for kind, c in panels]
    label_w = max([_text_width(data[c].unique().tolist(), 7.5) for c in cols] + [0.3])
    ncol = 2 if len(panels) > 1 else 1
    nrow = -(-len(panels) // ncol)
    heights = [max(n_levels[i * ncol: (i + 1) * ncol]) * 0.22 + 0.9 for i in range(nrow)]
    ylab = "Effects" if unit == "effects" else "Samples"
    with theme():
        fig = _new_figure(ncol * (label_w + 2.6), sum(heights) + (0.35 if title else 0.1))
        fig.set_layout_engine("constrained")
        gs = fig.add_gridspec(nrow, ncol, height_ratios=heights)
        for i, (kind, c) in enumerate(panels):
            ax = fig.add_subplot(gs[i // ncol, i % ncol])
            if kind == "count":
                order = _levels(data[c])
                sns.countplot(y=data[c], order=order, color=PALETTE[0], ax=ax, width=0.7)
                ax.set_xlabel(ylab)
                ax.set_ylabel("")
                ax.set_title(c.replace("_", " ").capitalize(), loc="left")
                _integer_ticks(ax.xaxis)
                ax.tick_params(axis="y", length=0)
                for bar, lev in zip(ax.patches, order, strict=False):
                    bar.set_gid(f"bar:{c}:{lev}")
            elif kind == "year":
                y = pd.to_numeric(d[c], errors="coerce").dropna().astype(int)
                if y.empty:
                    raise ValueError(f"{who}: column {c!r} has no numeric years")
                sns.histplot(x=y, discrete=True, color=PALETTE[2], ax=ax, shrink=0.85,
                             edgecolor="white")
                ax.set_xlabel("Publication year")
                ax.set_ylabel(ylab)
                ax.set_title("Year", loc="left")
                _integer_ticks(ax.xaxis)
                _integer_ticks(ax.yaxis)
            else:
                per = df.drop_duplicates("sample_id") if "sample_id" in df.columns else d
                nv = pd.to_numeric(per[c], errors="coerce").dropna()
                nv = nv[nv > 0]
                if nv.empty:
                    raise ValueError(f"{who}: column {c!r} has no positive sample sizes")
                bins = np.unique(np.round(np.geomspace(nv.min(), nv.max() * 1.0001,
                                                       min(12, max(3, nv.size)) + 1), 6))
                sns.histplot(x=nv, bins=bins, color=PALETTE[4], ax=ax, edgecolor="white")
                ax.set_xscale("log")
                # plain numbers at 1-2-5 steps; no minor labels (they overprint on a log axis)
                nice = np.array([m * 10.0**e for e in range(0, 7) for m in (1, 2, 5)])
                ticks = nice[(nice >= bins[0]) & (nice <= bins[-1])]
                if ticks.size > 6:
                    ticks = ticks[::2]
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
                ax.set_xlabel("Sample size n (log scale)")
                ax.set_ylabel("Samples" if "sample_id" in df.columns else ylab)
                ax.set_title("Sample size", loc="left")
                _integer_ticks(ax.yaxis)
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=9.0)
        return _finish(fig)


def moderator_distribution(
    df: pd.DataFrame,
    moderators: Sequence[str],
    *,
    value: str | None = None,
    min_k_interpret: int = 3,
    title: str | None = None,
) -> Figure:
    """The effects across the levels of each categorical moderator: one panel per moderator,
    one row per level labelled with its k, every effect as a point (a seaborn swarm; above
    ``SWARM_MAX`` effects points with a deterministic vertical jitter, which a swarm of hundreds
    overflows) at its correlation and a box of its spread. ``value`` is the
    column drawn (default ``r`` when present, else tanh of ``yi``). Levels with fewer than
    ``min_k_interpret`` effects are marked with a dagger ("not interpreted", as the moderator
    tables flag them); missing values show as "not reported". ``title`` names the subset."""
    who = "moderator_distribution"
    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise ValueError(f"{who}: needs a non-empty pandas DataFrame of effects")
    mods = [moderators] if isinstance(moderators, str) else list(moderators)
    if not mods:
        raise ValueError(f"{who}: name at least one moderator")
    missing = [c for c in mods if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: the DataFrame lacks the moderator column(s) {missing}")
    if value is None:
        if "r" in df.columns:
            x = pd.to_numeric(df["r"], errors="coerce")
        elif "yi" in df.columns:
            x = np.tanh(pd.to_numeric(df["yi"], errors="coerce"))
        else:
            raise ValueError(f"{who}: needs a column r or yi (or name one with value=)")
        xlabel = "Correlation (r)"
    else:
        if value not in df.columns:
            raise ValueError(f"{who}: the DataFrame lacks the column {value!r}")
        x, xlabel = pd.to_numeric(df[value], errors="coerce"), value
    if not np.isfinite(x.to_numpy(float)).all():
        raise ValueError(f"{who}: the effect sizes must be finite")
    labelled = {}
    for c in mods:
        s = df[c].astype("string").fillna("not reported").astype(str)
        counts = s.value_counts()
        lab = {lev: f"{lev} (k = {int(counts[lev])})" + (
            " \u2020" if counts[lev] < min_k_interpret else "") for lev in counts.index}
        labelled[c] = (s.map(lab), [lab[v] for v in _levels(s)])
    label_w = max(_text_width(order, 7.5) for _, order in labelled.values())
    heights = [0.28 * len(order) + 0.75 for _, order in labelled.values()]
    few = any("\u2020" in lev for _, order in labelled.values() for lev in order)
    with theme():
        fig = _new_figure(label_w + 3.4, sum(heights) + (0.35 if title else 0.1)
                          + (0.15 if few else 0.0))
        fig.set_layout_engine("constrained")
        axes = fig.subplots(len(mods), 1, squeeze=False, height_ratios=heights)[:, 0]
        lo, hi = float(x.min()), float(x.max())
        pad = 0.06 * (hi - lo) if hi > lo else 0.1
        for ax, c in zip(axes, mods, strict=True):
            lab, order = labelled[c]
            frame = pd.DataFrame({"x": x.to_numpy(float), "level": lab.to_numpy()})
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated vert=
                warnings.simplefilter("ignore", DeprecationWarning)
                sns.boxplot(data=frame, x="x", y="level", order=order, ax=ax, color="0.92",
                            linecolor="0.45", width=0.6, fliersize=0, linewidth=0.7)
            if len(frame) <= SWARM_MAX:
                with warnings.catch_warnings():  # crowded levels: seaborn warns, still drawn
                    warnings.simplefilter("ignore", UserWarning)
                    sns.swarmplot(data=frame, x="x", y="level", order=order, ax=ax, size=3.2,
                                  color=PALETTE[0], edgecolor=INK, linewidth=0.3)
            else:  # a swarm of hundreds of points overflows its row and takes seconds
                row = frame["level"].map({lv: i for i, lv in enumerate(order)}).to_numpy(float)
                ax.scatter(frame["x"], row + _jitter(len(frame)), s=7, color=PALETTE[0],
                           edgecolors=INK, linewidths=0.2, alpha=0.7, zorder=3)
            ax.axvline(0, color="0.6", lw=0.6, ls=(0, (4, 2)), zorder=0, gid="null_line")
            ax.set_xlim(min(lo - pad, -pad), hi + pad)
            ax.set_ylabel("")
            ax.set_xlabel(xlabel)
            ax.set_title(c.replace("_", " ").capitalize(), loc="left")
            ax.tick_params(axis="y", length=0)
        if few:  # in the last axis label, where the layout engine makes room for it
            axes[-1].set_xlabel(f"{xlabel}\n\u2020 k < {min_k_interpret}: not interpreted")
        if title:
            fig.suptitle(title, x=0.01, ha="left", fontweight="bold", fontsize=9.0)
        return _finish(fig)
