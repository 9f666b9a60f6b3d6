"""Helpers that keep the notebooks thin: selecting data, the one headline model of a run and
its follow-ups, writing tables and figures deterministically (and showing them).

Notebooks call these; they hold no statistics themselves. Every model here is a call into
:mod:`alliance_meta.stats`; where the stats floor has no sample-level version of a follow-up
(leave-one-sample-out or cumulative-by-sample of a three-level or CR2 fit), the follow-up is a
loop of headline fits on subsets of samples, not new statistics. Moderator analyses are in
:mod:`alliance_meta.workflow.moderators`, published syntheses in
:mod:`alliance_meta.workflow.syntheses`.
"""

from __future__ import annotations

import hashlib
import html
import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import load_studies, studies_dir
from ..stats.escalc import aggregate
from ..stats.rma import random_effects
from ..stats.rma_mv import three_level
from ..stats.robust import robust
from . import report as _report
from .table1 import parse_bib, study_labels

__all__ = [
    "Attempt",
    "Outputs",
    "HeadlineModel",
    "DEPENDENCE",
    "attempt",
    "select",
    "cache_file",
    "labels",
    "sample_labels",
    "headline_model",
    "headline_table",
    "sensitivity_table",
    "forest",
    "forest_figures",
    "forest_caption",
    "funnel",
    "write_report",
    "counts",
    "pooled_models",
    "pooled_table",
]

#: How effects of one sample are handled by the headline model (the first is the default).
DEPENDENCE = ("three-level", "robust", "aggregate")


@dataclass(frozen=True)
class Attempt:
    """The result of an analysis, or the reason it could not be run."""

    label: str
    result: Any = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result is not None

    def _repr_html_(self) -> str:
        if self.ok:
            inner = getattr(self.result, "_repr_html_", None)
            return inner() if inner else html.escape(repr(self.result))
        return (f"<p><b>{html.escape(self.label)}</b>: not estimable &mdash; "
                f"{html.escape(self.reason)}</p>")

    def __repr__(self) -> str:
        return repr(self.result) if self.ok else f"{self.label}: not estimable ({self.reason})"


def attempt(label: str, fn: Callable, *args, **kwargs) -> Attempt:
    """Run ``fn``; a ValueError (too few studies, impossible input) becomes a stated reason."""
    try:
        return Attempt(label, fn(*args, **kwargs))
    except (ValueError, np.linalg.LinAlgError) as e:
        return Attempt(label, None, str(e))


def cache_file(name: str, variant: str = "") -> Path | None:
    """A file for results this run may reuse next time (``outputs/.cache/<name>`` under the
    pipeline, which empties the folder on ``--force``); None when the notebook runs by hand.
    ``variant`` (e.g. the run's subset) gives each run of one notebook a file of its own."""
    root = os.environ.get("ALLIANCE_META_CACHE")
    if not root:
        return None
    if variant:
        stem, dot, ext = name.partition(".")
        name = f"{stem}-{hashlib.sha256(variant.encode()).hexdigest()[:12]}{dot}{ext}"
    return Path(root) / name


def select(data_path: str | None = None, subset: str = "", effects: str = "all") -> pd.DataFrame:
    """Load the studies and keep the rows a notebook analyses, with author-year ``label``s.

    ``subset`` is a pandas query expression over the study columns (e.g.
    ``"modality == 'CBT'"``); ``effects`` is ``"all"``, ``"zero-order"`` or ``"partial"``.
    """
    df = load_studies(data_path)
    if effects not in ("all", "zero-order", "partial"):
        raise ValueError(f"effects must be 'all', 'zero-order' or 'partial', not {effects!r}")
    if effects != "all":
        df = df[df["r_kind"] == effects]
    if subset and subset.strip():
        try:
            df = df.query(subset, engine="python")
        except Exception as e:
            raise ValueError(f"subset expression {subset!r} cannot be applied: {e}") from e
    df = df.reset_index(drop=True)
    df["label"] = labels(df, data_path)
    return df


def labels(df: pd.DataFrame, data_path: str | None = None) -> list[str]:
    """Author-year labels from the review's references.bib; a study with several effects gets
    its outcome measure in brackets (the effect number when outcomes repeat)."""
    try:
        bib = parse_bib(studies_dir(data_path) / "references.bib")
    except (OSError, ValueError):
        bib = {}
    base = study_labels(df["study_id"].astype(str).unique(), bib)
    out = []
    for s, g in df.groupby(df["study_id"].astype(str), sort=False):
        outc = g.get("outcome_measure", pd.Series([""] * len(g), index=g.index)).fillna("")
        outc = outc.astype(str).map(lambda o: o if len(o) <= 32 else o[:31].rstrip() + "\u2026")
        distinct = outc.nunique() == len(g) and (outc != "").all()
        for i, (idx, o) in enumerate(outc.items(), start=1):
            tag = "" if len(g) == 1 else f" [{o}]" if distinct else f" [{i}]"
            out.append((idx, base[s] + tag))
    return [lab for _, lab in sorted(out)]


class Outputs:
    """Where a notebook writes: ``<output_dir>/tables/*.csv`` and ``<output_dir>/figures/*``.

    PNGs are written at ``dpi`` (200: a 7-inch figure is 1,400 pixels, twice the width the
    notebooks and the site show it at; 300 dpi made outputs/ of a 300-effect review half again
    as large). For print, add "pdf" to ``formats`` (vector) or raise ``dpi``."""

    def __init__(self, output_dir: str | Path, formats=("png",), dpi: float = 200):
        self.dir = Path(output_dir)
        self.formats = tuple(formats)
        self.dpi = dpi
        (self.dir / "tables").mkdir(parents=True, exist_ok=True)
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)

    def table(self, df: pd.DataFrame, name: str, caption: str = "", model: str = "",
              compress: bool = False) -> pd.DataFrame:
        """Write a CSV with a fixed number format (byte-identical for identical inputs); a
        caption (and the model that produced the numbers) goes to tables/captions.json.
        ``compress`` writes ``<name>.csv.gz`` instead (no time stamp, so still byte-identical;
        pandas and R's read.csv read it as it is): for tables of thousands of rows, such as
        the multiverse's, that no one diffs by eye."""
        text = df.to_csv(index=False, float_format="%.10g", lineterminator="\n")
        path = self.dir / "tables" / f"{name}.csv"
        if compress:
            import gzip

            path.with_name(path.name + ".gz").write_bytes(
                gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
        else:
            path.write_text(text, encoding="utf-8")
        if caption:
            _report.record_caption(self.dir, name, caption, model, kind="tables")
        return df

    def figure(self, fig, name: str, caption: str = "", model: str = "") -> None:
        """Save a Figure in every configured format (deterministic, atomic), record its caption
        and the model that drew it, then show the saved file in the notebook. The saved bytes
        are what is displayed (PNG if written, else SVG), so showing changes no file."""
        from ..viz.theme import save_figure

        paths = save_figure(fig, self.dir / "figures" / name, self.formats, dpi=self.dpi)
        if caption:
            _report.record_caption(self.dir, name, caption, model)
        _show(paths)


def _show(paths: dict[str, Path]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import SVG, Image, display
    except ImportError:  # plain Python: the files are the output
        return
    if get_ipython() is None:
        return
    if "png" in paths:
        display(Image(filename=str(paths["png"]), width=720))
    elif "svg" in paths:
        display(SVG(filename=str(paths["svg"])))


# ---------------------------------------------------------------------------------------------
# the headline model


@dataclass(frozen=True, repr=False)
class HeadlineModel:
    """The one model a run reports, with what its figures and tables need.

    ``result`` gives the pooled estimate and CI (a three-level fit, a CR2-robust result, or a
    random-effects fit); ``fit`` is the fitted model under it (for ``robust``, the
    random-effects fit the CR2 sits on; else ``result``); ``points`` the rows pooled (effects,
    or one composite per sample under ``aggregate``) with ``label``, ``yi``, ``vi``, ``n``,
    ``year``, ``sample_id``; ``effects`` the effects before aggregation; ``label`` one line
    naming the model and its test; ``note`` says when the model fell back to another.
    """

    dependence: str
    label: str
    result: Any
    fit: Any
    points: pd.DataFrame = field(repr=False)
    effects: pd.DataFrame = field(repr=False)
    method: str
    rho: float
    level: float
    note: str = ""

    @property
    def robust(self):
        return self.result if self.dependence == "robust" else None

    @property
    def unit(self) -> str:
        return "sample" if self.dependence == "aggregate" else "effect"

    def headline(self, **options: Any) -> _report.Headline:
        """The run's headline numbers (:func:`.report.headline`; ``variance_cis=False``)."""
        return _report.headline(self.fit, self.effects, robust=self.robust, model=self.label,
                                rho=self.rho if self.dependence == "aggregate" else None, **options)

    def __repr__(self) -> str:
        return f"Headline model: {self.label}" + (f"\n{self.note}" if self.note else "")

    def _repr_html_(self) -> str:
        note = f"<p><i>{html.escape(self.note)}</i></p>" if self.note else ""
        inner = getattr(self.result, "_repr_html_", None)
        body = inner() if inner else html.escape(repr(self.result))
        return f"<p><b>Headline model</b>: {html.escape(self.label)}</p>{note}{body}"


def _tl_options(test: str, dfs: str) -> dict[str, Any]:
    """three_level's test options; ``dfs`` is passed when the installed stats floor takes it."""
    if "dfs" in inspect.signature(three_level).parameters:
        return {"test": test, "dfs": dfs}
    return {"test": test}


def _df_text(res) -> str:
    d = getattr(res, "dfs", getattr(res, "df", np.inf))
    d = float(np.ravel(np.asarray(d, dtype=float))[0])
    return f"{d:.3g}" if np.isfinite(d) else "inf"


def _points(df: pd.DataFrame) -> pd.DataFrame:
    cols = ["label", "yi", "vi", "n", "year", "sample_id", "study_id"]
    return df[[c for c in cols if c in df]].reset_index(drop=True)


def sample_labels(df: pd.DataFrame) -> dict[Any, str]:
    """Each sample's label: its study's (without an effect's " [outcome]" suffix), and the
    sample's id in brackets when the study has several samples."""
    first = df.drop_duplicates("sample_id")
    per_study = df.groupby("study_id")["sample_id"].nunique()
    return {s: str(lab).split(" [")[0] + (f" [{s}]" if per_study[st] > 1 else "")
            for s, lab, st in zip(first["sample_id"], first["label"], first["study_id"],
                                  strict=True)}


def _composites(df: pd.DataFrame, rho: float) -> pd.DataFrame:
    """One row per sample: the composite (stats' ``aggregate``) and the sample's label."""
    ag = aggregate(df["yi"], df["vi"], df["sample_id"], rho=rho)
    first = df.drop_duplicates("sample_id").set_index("sample_id")
    labels = sample_labels(df)
    lab = [labels[s] for s in ag["cluster"]]
    return pd.DataFrame({"label": lab, "yi": ag["yi"].to_numpy(), "vi": ag["vi"].to_numpy(),
                         "n": first.loc[ag["cluster"], "n"].to_numpy(),
                         "year": first.loc[ag["cluster"], "year"].to_numpy(),
                         "sample_id": ag["cluster"].to_numpy(),
                         "study_id": first.loc[ag["cluster"], "study_id"].to_numpy(),
                         "m": ag["m"].to_numpy()})


_FALLBACK = ("Every sample contributes one effect ({m} samples), so the three-level model's "
             "within-sample variance is not identified: it falls back to a random-effects model, "
             "which it equals.")


def headline_model(df: pd.DataFrame, dependence: str = "three-level", method: str = "REML",
                   rho: float = 0.5, level: float = 0.95, dfs: str = "contain",
                   sigma2_init: Sequence[float] | None = None) -> HeadlineModel:
    """Fit the run's headline model to the effects in ``df`` (columns ``yi``, ``vi``,
    ``sample_id``, ``study_id``, ``label``, ``n``, ``year``).

    ``dependence``:

    - ``"three-level"`` (default): effects nested in samples (``am.three_level``, REML or ML),
      t-test with ``dfs="contain"`` df (metafor's ``rma.mv(..., test="t", dfs="contain")``).
      When every sample contributes one effect the within-sample variance is not identified:
      ``am.three_level`` then fits random effects (its ``fallback``) and the label and
      ``note`` say so; with fewer than 3 such effects, where ``three_level`` cannot fit, the
      fallback is ``am.random_effects`` with a Knapp-Hartung t-test (k - 1 df).
    - ``"robust"``: random effects treating effects as independent, with CR2 cluster-robust
      SEs and Satterthwaite t-tests, samples as clusters (``am.robust``; Pustejovsky & Tipton
      2018, doi:10.1080/07350015.2016.1247004).
    - ``"aggregate"``: one composite per sample with within-sample correlation ``rho``
      (``am.aggregate``; Borenstein et al. 2009, ch. 24), pooled by random effects with a
      Knapp-Hartung t-test.

    ``sigma2_init`` starts a three-level fit there (a refit on a subset, see
    :mod:`.by_sample`); the estimates are the same.
    """
    if dependence not in DEPENDENCE:
        raise ValueError(f"headline_model: dependence must be one of {DEPENDENCE}, not "
                         f"{dependence!r}")
    df = df.reset_index(drop=True)
    if "label" not in df:
        df = df.assign(label=df["study_id"].astype(str))
    y, v, s = df["yi"].to_numpy(float), df["vi"].to_numpy(float), df["sample_id"].to_numpy()
    m = pd.Series(s).nunique()
    kw = dict(effects=df, method=method, rho=float(rho), level=level)
    if dependence == "three-level":
        tl_method = method if method in ("REML", "ML") else "REML"
        note = ("" if tl_method == method else
                f"The three-level model is fitted by REML ({method} is for random effects only).")
        tl = attempt("three-level", three_level, y, v, s, method=tl_method, level=level,
                     sigma2_init=sigma2_init, **_tl_options("t", dfs))
        if not tl.ok and m == len(df):  # too few effects for three_level's own fallback
            re = random_effects(y, v, method=method, test="knha", level=level,
                                labels=list(df["label"]))
            note = " ".join(x for x in (note, _FALLBACK.format(m=m)) if x)
            lab = (f"random effects {method}, Knapp\u2013Hartung t-test (df = {_df_text(re)}); "
                   "three-level fallback, one effect per sample")
            return HeadlineModel(dependence, lab, re, re, _points(df), note=note, **kw)
        if not tl.ok:
            raise ValueError(tl.reason)
        tl = tl.result
        df_kind = f"{getattr(tl, 'dfs_method', dfs)} df"
        if getattr(tl, "fallback", False):
            note = " ".join(x for x in (note, tl.fallback_message) if x)
            lab = (f"three-level {tl_method} fitted as random effects (one effect per sample), "
                   f"t-test with {df_kind} (df = {_df_text(tl)})")
        else:
            lab = f"three-level {tl_method}, t-test with {df_kind} (df = {_df_text(tl)})"
        return HeadlineModel(dependence, lab, tl, tl, _points(df), note=note, **kw)
    if dependence == "robust":
        re = random_effects(y, v, method=method, test="z", level=level, labels=list(df["label"]))
        rb = robust(re, s)
        lab = (f"random effects {method} with CR2 cluster-robust SEs (samples as clusters), "
               f"Satterthwaite t-test (df = {_df_text(rb)})")
        return HeadlineModel(dependence, lab, rb, re, _points(df), **kw)
    comp = _composites(df, rho)
    re = random_effects(comp["yi"], comp["vi"], method=method, test="knha", level=level,
                        labels=list(comp["label"]))
    lab = (f"random effects {method} on per-sample composites (\u03c1 = {rho:g}), "
           f"Knapp\u2013Hartung t-test (df = {_df_text(re)})")
    return HeadlineModel(dependence, lab, re, re, comp, **kw)


def headline_table(models: dict[str, Attempt | HeadlineModel]) -> pd.DataFrame:
    """One row per model with the headline numbers (``report.Headline`` fields), ``model``
    naming it; a model that could not be fitted gets its reason in ``note``."""
    cols = ["model", "dependence", "rho", "k", "n_samples", "n_studies", "N", "k_pooled", "r",
            "r_ci_lb", "r_ci_ub", "r_pi_lb", "r_pi_ub", "estimate", "se", "stat", "df", "pval",
            "tau2", "sigma2_between", "sigma2_within", "I2", "I2_between", "I2_within", "note"]
    rows = []
    for name, a in models.items():
        hm = a.result if isinstance(a, Attempt) else a
        if hm is None:
            rows.append({"model": name, "note": f"not estimable: {a.reason}"})
            continue
        row = hm.headline().to_frame().iloc[0].to_dict()
        row.update(model=hm.label, dependence=name, note=hm.note)
        if hm.dependence != "aggregate":
            row["rho"] = np.nan
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=cols)


def sensitivity_table(df: pd.DataFrame, method: str = "REML", rhos: Sequence[float] = (.2, .5, .8),
                      level: float = 0.95, dfs: str = "contain",
                      headline: str | None = None) -> pd.DataFrame:
    """The headline under each handling of dependence side by side: three-level, CR2-robust,
    composites for each ``rho``, and (for reference only) random effects treating every
    effect as independent. ``headline`` (a ``dependence`` value) marks the run's headline row."""
    fits: dict[str, Attempt] = {
        "three-level": attempt("three-level", headline_model, df, "three-level", method,
                               level=level, dfs=dfs),
        "robust": attempt("robust", headline_model, df, "robust", method, level=level),
    }
    for r in rhos:
        fits[f"aggregate, rho = {r:g}"] = attempt("aggregate", headline_model, df, "aggregate",
                                                  method, rho=r, level=level)
    out = headline_table(fits)
    ind = attempt("independent", random_effects, df["yi"], df["vi"], method=method,
                  test="knha", level=level)
    if ind.ok:
        h = _report.headline(ind.result, df, model="random effects, every effect treated as "
                             f"independent (ignores dependence), {method}, Knapp\u2013Hartung")
        row = h.to_frame().assign(dependence="none (reference only)", note="")
        out = pd.concat([out, row.reindex(columns=out.columns)], ignore_index=True)
    out.insert(1, "headline", [d == headline or (headline == "aggregate" and str(d).startswith(
        "aggregate") and np.isclose(out.loc[i, "rho"], 0.5)) for i, d in
        enumerate(out["dependence"])])
    return out


# ---------------------------------------------------------------------------------------------
# figures of the headline model


def _forest_args(hm: HeadlineModel, title: str | None, sort: str | None) -> dict[str, Any]:
    """What every forest of the headline model is drawn from: its points, labels and model."""
    p = hm.points
    return dict(labels=list(p["label"]), n=p["n"].to_numpy(float),
                year=p["year"].to_numpy(float), yi=p["yi"], vi=p["vi"], sort=sort,
                model_label=hm.label, title=title)


def _sample_groups(hm: HeadlineModel) -> list[str]:
    """Each point's sample, labelled as the sample-level tables label it (the sample ids when
    two samples would read alike), for forests of one row per sample."""
    labels = sample_labels(hm.effects)
    if len(set(labels.values())) < len(labels):
        labels = {s: str(s) for s in labels}
    return [labels[s] for s in hm.points["sample_id"]]


def forest(hm: HeadlineModel, title: str | None = None, sort: str | None = None):
    """Forest plot of the headline model: its diamond, CI and PI; one row per pooled unit, or
    one per sample when the effects of a three-level or CR2 fit are more than the forest's
    ``MAX_ROWS``."""
    from ..viz.forest import MAX_ROWS, forest_plot

    many = hm.dependence != "aggregate" and len(hm.points) > MAX_ROWS
    return forest_plot(hm.result, groups=_sample_groups(hm) if many else None,
                       group_name="sample", **_forest_args(hm, title, sort))


def forest_figures(hm: HeadlineModel, title: str | None = None, sort: str | None = None,
                   full: bool = False) -> dict[str, Any]:
    """The run's forest plot(s) by name, each at most ``viz.forest.MAX_ROWS`` rows (issue 16):
    ``{"forest": fig}`` when the forest fits (effects, or one row per sample when the effects
    exceed it), else its rows split across pages ``forest_page1``, ``forest_page2``, ...;
    ``full=True`` adds every effect, paged as ``forest_full_page1``, ... ."""
    from ..viz.forest import MAX_ROWS, forest_pages

    p = hm.points
    by_sample = len(p) > MAX_ROWS and hm.dependence != "aggregate"
    units = p["sample_id"].nunique() if by_sample else len(p)
    kw = _forest_args(hm, title, sort)
    if units <= MAX_ROWS:
        figs = {"forest": forest(hm, title, sort)}
    else:
        pages = forest_pages(hm.result, groups=_sample_groups(hm) if by_sample else None,
                             group_name="sample", collapse=by_sample, **kw)
        figs = {f"forest_page{i}": f for i, f in enumerate(pages, 1)}
    if full and (by_sample or "forest" not in figs):
        pages = forest_pages(hm.result, **kw)
        figs.update({f"forest_full_page{i}": f for i, f in enumerate(pages, 1)})
    return figs


def forest_caption(fig_name: str, subset: str) -> str:
    """The caption of one of :func:`forest_figures`' figures (``subset`` names the data)."""
    what = "every effect; " if "full" in fig_name else ""
    page = fig_name.rpartition("page")[2] if "page" in fig_name else ""
    return (f"Forest plot of the alliance\u2013outcome correlations ({what}{subset}"
            + (f"; page {page}" if page else "") + "); the diamond, CI and prediction "
            "interval are the headline model's.")


def funnel(hm: HeadlineModel, trimfill=None, title: str | None = None):
    """Contour-enhanced funnel with the headline estimate as the centre line; its points are
    the units the model pools (effects, or per-sample composites)."""
    from ..viz.funnel import funnel_plot

    p = hm.points
    pts = "Per-sample composites" if hm.dependence == "aggregate" else "Effects"
    return funnel_plot(hm.result, trimfill=trimfill, yi=p["yi"], vi=p["vi"], points_label=pts,
                       model_label=hm.label, title=title)


# ---------------------------------------------------------------------------------------------
# report and counts


def write_report(out: Outputs, hm: HeadlineModel, title: str = "", caution: str = "",
                 moderators: dict | None = None, bias: dict | None = None) -> Path:
    """Write the run's report.md and headline.json (R's report layer) from the headline model
    and show its methods and results paragraphs in the notebook."""
    rho = hm.rho if hm.dependence == "aggregate" else None
    caution = " ".join(x for x in (caution, hm.note) if x)  # a fallback is said up front
    path = _report.write_report(out.dir, hm.fit, hm.effects, title=title, caution=caution,
                                robust=hm.robust, rho=rho, model=hm.label,
                                moderators=moderators, bias=bias)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        return path
    if get_ipython() is not None:
        text = path.read_text(encoding="utf-8")
        display(Markdown(text.split("## References")[0]))
    return path


def counts(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Numbers of studies, samples and effects by each level of each column (tidy)."""
    rows = []
    for c in columns:
        for level, g in df.groupby(c, sort=True, dropna=False):
            rows.append({"variable": c, "level": str(level), "studies": g["study_id"].nunique(),
                         "samples": g["sample_id"].nunique(), "effects": len(g)})
    return pd.DataFrame(rows, columns=["variable", "level", "studies", "samples", "effects"])


# every model at once (kept for the report layer's tests; the notebooks use headline_model)


def pooled_models(df: pd.DataFrame, method: str = "REML", test: str = "knha",
                  rho: float = 0.5) -> dict[str, Attempt]:
    """The pooled alliance-outcome correlation under each way of handling dependent effects:
    all effects as independent (random effects), three-level model (effects in samples),
    CR2 cluster-robust inference on the random-effects fit, and one composite per sample
    (Borenstein et al. 2009, ch. 24, with inter-correlation ``rho``)."""
    out: dict[str, Attempt] = {}
    y, v, s = df["yi"].to_numpy(float), df["vi"].to_numpy(float), df["sample_id"].to_numpy()
    out["random effects"] = attempt("random effects", random_effects, y, v, method=method,
                                    test=test, labels=list(df.get("label", df["study_id"])))
    t3 = "t" if test == "knha" else "z"
    out["three-level"] = attempt("three-level", three_level, y, v, s,
                                 method="ML" if method == "ML" else "REML", test=t3)
    if out["random effects"].ok:
        out["robust (CR2)"] = attempt("robust (CR2)", robust, out["random effects"].result, s)
    else:
        out["robust (CR2)"] = Attempt("robust (CR2)", None, out["random effects"].reason)
    ag = aggregate(y, v, s, rho=rho) if len(df) else pd.DataFrame(columns=["yi", "vi"])
    out["aggregated per sample"] = attempt("aggregated per sample", random_effects, ag["yi"],
                                           ag["vi"], method=method, test=test)
    return out


def pooled_table(models: dict[str, Attempt], df: pd.DataFrame) -> pd.DataFrame:
    """One tidy row per model: k, samples, estimate (z), r with CI and PI, tau2/sigma2, I2."""
    rows = []
    n_samples = df["sample_id"].nunique() if len(df) else 0
    for name, a in models.items():
        row: dict[str, Any] = {"model": name, "k": len(df), "n_samples": n_samples}
        if name == "aggregated per sample":
            row["k"] = n_samples
        if not a.ok:
            row["note"] = f"not estimable: {a.reason}"
            rows.append(row)
            continue
        res = a.result
        est = float(np.ravel(getattr(res, "coef", [getattr(res, "estimate", np.nan)]))[0])
        lb = float(np.ravel(res.ci_lb)[0])
        ub = float(np.ravel(res.ci_ub)[0])
        row.update(estimate=est, se=float(np.ravel(res.se)[0]),
                   pval=float(np.ravel(res.pval)[0]), r=np.tanh(est), r_ci_lb=np.tanh(lb),
                   r_ci_ub=np.tanh(ub))
        if hasattr(res, "pi_lb"):
            row.update(r_pi_lb=np.tanh(res.pi_lb), r_pi_ub=np.tanh(res.pi_ub),
                       tau2=res.tau2, I2=res.I2)
        if hasattr(res, "sigma2_between"):
            row.update(tau2=res.sigma2_between + res.sigma2_within,
                       I2=res.I2_between + res.I2_within)
        if hasattr(res, "df") and not hasattr(res, "pi_lb"):
            row["note"] = f"CR2, Satterthwaite df = {float(np.ravel(res.df)[0]):.2f}"
        rows.append(row)
    cols = ["model", "k", "n_samples", "estimate", "se", "pval", "r", "r_ci_lb", "r_ci_ub",
            "r_pi_lb", "r_pi_ub", "tau2", "I2", "note"]
    return pd.DataFrame(rows).reindex(columns=cols)



# the sensitivity analyses by sample moved to .by_sample; notebooks copied into a review before
# that (``alliance-meta init`` copies them) still call them here
_MOVED = ("leave_one_sample_out", "cumulative_by_sample", "influence_by_sample", "without_samples")


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from . import by_sample

        return getattr(by_sample, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
