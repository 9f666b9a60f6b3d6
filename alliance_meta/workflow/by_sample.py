"""Sensitivity analyses by sample of a run's headline model: leave one sample out, cumulative
by publication year, influence, and the headline without given samples.

A sample's effects leave or enter together. When the headline model pools one unit per sample
(composites, or the three-level model's one-effect-per-sample fallback) these are the stats
floor's batched ``leave_one_out``/``cumulative``/``influence``; for a three-level or CR2 fit of
several effects per sample the stats floor has no sample-level version, so they are a loop of
headline fits on subsets of samples (the same model, test and df rule), not new statistics.
Three-level refits start at the full fit's variance components (``sigma2_init``), which gives
the same estimates several times faster (at 150 samples, the loop was a third of the
sensitivity notebook's time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..stats.influence import cumulative, influence, leave_one_out
from ..stats.rma import RandomEffectsResult
from .workbench import Attempt, HeadlineModel, attempt, headline_model, sample_labels

__all__ = ["leave_one_sample_out", "cumulative_by_sample", "influence_by_sample",
           "without_samples"]

_BY_SAMPLE = ["label", "sample_id", "k", "n_samples", "estimate", "se", "pval", "ci_lb", "ci_ub",
              "r", "r_ci_lb", "r_ci_ub", "tau2", "I2", "model", "note"]
# what a headline refit reads of the effects (fewer columns: cheaper subsets)
_REFIT_COLUMNS = ["label", "yi", "vi", "n", "year", "sample_id", "study_id"]


class _Refits:
    """The headline model refitted on subsets of its effects (boolean masks)."""

    def __init__(self, hm: HeadlineModel):
        self.hm = hm
        e = hm.effects
        self.effects = e[[c for c in _REFIT_COLUMNS if c in e]].reset_index(drop=True)
        self.samples = self.effects["sample_id"].to_numpy()
        # warm start of three-level refits at the full fit's (sigma2_between, sigma2_within)
        self.start = None
        if hm.dependence == "three-level" and hasattr(hm.fit, "sigma2_between") \
                and not getattr(hm.fit, "fallback", False):
            self.start = (hm.fit.sigma2_between, hm.fit.sigma2_within)

    def fit(self, keep: np.ndarray, follow: bool = False) -> Attempt:
        """The refit on ``keep``; ``follow``: start the next refit at this one's variance
        components (the cumulative analysis, whose neighbouring subsets differ by a sample)."""
        hm = self.hm
        fit = attempt("refit", headline_model, self.effects[keep], hm.dependence, hm.method,
                      hm.rho, hm.level, sigma2_init=self.start)
        res = fit.result.fit if fit.ok else None
        if follow and self.start is not None and hasattr(res, "sigma2_between") \
                and not getattr(res, "fallback", False):
            self.start = (res.sigma2_between, res.sigma2_within)
        return fit

    def row(self, keep: np.ndarray, follow: bool = False) -> dict[str, Any]:
        fit = self.fit(keep, follow)
        if not fit.ok:
            return {"note": f"not estimable: {fit.reason}"}
        h = fit.result.headline(variance_cis=False)  # one refit per row: no profile CIs needed
        return {"k": h.k, "n_samples": h.n_samples, "estimate": h.estimate, "se": h.se,
                "pval": h.pval, "r": h.r, "r_ci_lb": h.r_ci_lb, "r_ci_ub": h.r_ci_ub,
                "ci_lb": np.arctanh(h.r_ci_lb), "ci_ub": np.arctanh(h.r_ci_ub), "tau2": h.tau2,
                "I2": h.I2, "model": fit.result.label, "note": fit.result.note or np.nan}

    def order(self) -> list[tuple[Any, str]]:
        """Samples by publication year (ties in data order), each with its label: the study's
        label, and the sample's id when its study has several samples."""
        first = self.effects.drop_duplicates("sample_id")
        first = first.sort_values(["year", "sample_id"], kind="stable")
        labels = sample_labels(self.effects)
        return [(s, labels[s]) for s in first["sample_id"]]


def _stats_floor_by_sample(hm: HeadlineModel) -> bool:
    """True when the stats floor's batched follow-ups work on the samples themselves: the model
    pools one unit per sample (composites, or the one-effect-per-sample fallback)."""
    return hm.dependence == "aggregate" or (isinstance(hm.fit, RandomEffectsResult)
                                            and hm.dependence == "three-level")


def leave_one_sample_out(hm: HeadlineModel) -> pd.DataFrame:
    """The headline model refitted without each sample in turn (all its effects leave
    together). Columns: ``label`` (the sample left out), ``k``, ``n_samples``, ``estimate``,
    ``ci_lb``, ``ci_ub`` (Fisher z), ``r`` with CI, heterogeneity, ``model``, ``note``.

    When the model pools one unit per sample this is ``am.leave_one_out`` (batched); for the
    three-level and CR2 fits it is a loop of headline fits, one per sample left out."""
    if _stats_floor_by_sample(hm):
        t = leave_one_out(hm.fit)
        return t.assign(label=t["study"].astype(str), k=len(hm.points) - 1,
                        n_samples=len(hm.points) - 1, model=hm.label)
    refits = _Refits(hm)
    rows = [{"label": lab, "sample_id": s, **refits.row(refits.samples != s)}
            for s, lab in refits.order()]
    return pd.DataFrame(rows).reindex(columns=_BY_SAMPLE)


def cumulative_by_sample(hm: HeadlineModel) -> pd.DataFrame:
    """Cumulative meta-analysis by sample: samples added in order of publication year (ties
    in data order), the headline model refitted after each; a sample's effects enter together.
    ``am.cumulative`` when the model pools one unit per sample, else a loop of headline fits;
    rows where the model cannot yet be fitted say why."""
    if _stats_floor_by_sample(hm):
        t = cumulative(hm.fit, order=hm.points["year"].to_numpy(float))
        return t.assign(label=t["study"].astype(str), model=hm.label)
    refits = _Refits(hm)
    rows, keep = [], np.zeros(len(refits.samples), dtype=bool)
    for j, (s, lab) in enumerate(refits.order(), start=1):
        keep = keep | (refits.samples == s)
        rows.append({"order": j, "label": lab, "sample_id": s, **refits.row(keep, follow=True)})
    return pd.DataFrame(rows).reindex(columns=["order", *_BY_SAMPLE])


def influence_by_sample(hm: HeadlineModel) -> tuple[pd.DataFrame, str]:
    """Influence diagnostics (``am.influence``: studentized residuals, DFFITS, Cook's distance,
    covariance ratio, hat values, metafor's flagging rule) per sample, and the model they come
    from. The stats floor has them for random-effects fits only, so for the three-level and
    CR2 headlines they are computed on one composite per sample (``rho`` of the run): the same
    samples, a model without the within-sample level; the returned label says so."""
    own = _stats_floor_by_sample(hm)
    m = hm if own else headline_model(hm.effects, "aggregate", hm.method, hm.rho, hm.level)
    t = influence(m.fit).assign(label=lambda d: d["study"].astype(str),
                                sample_id=m.points["sample_id"].to_numpy())
    return t, m.label + ("" if own else " (not available for the headline's own model)")


def without_samples(hm: HeadlineModel, samples: Sequence) -> Attempt:
    """The headline model refitted without the effects of ``samples``."""
    return _Refits(hm).fit(~hm.effects["sample_id"].isin(list(samples)).to_numpy())
