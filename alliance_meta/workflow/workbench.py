"""Helpers that keep the notebooks thin: selecting data, fitting what can be fitted (and saying
why the rest cannot), and writing tables and figures deterministically.

Notebooks call these; they hold no statistics themselves.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data import load_studies
from ..stats.escalc import aggregate
from ..stats.rma import random_effects, subgroup_analysis
from ..stats.rma_mv import three_level
from ..stats.robust import robust

__all__ = [
    "Attempt",
    "Outputs",
    "attempt",
    "select",
    "pooled_models",
    "pooled_table",
    "subgroup_table",
    "counts",
    "bias_verdict",
    "PUBLISHED",
]

DEPENDENCE = ("three-level", "aggregate", "robust")

#: Published pooled alliance-outcome correlations (summary level), for side-by-side tables.
PUBLISHED = pd.DataFrame(
    [
        {"source": "Horvath, Del Re, Flückiger & Symonds 2011, Psychotherapy 48:9-16, "
                   "doi:10.1037/a0022186", "k": 190, "r": 0.275, "r_ci_lb": np.nan,
         "r_ci_ub": np.nan},
        {"source": "Flückiger, Del Re, Wampold & Horvath 2018, Psychotherapy 55:316-340, "
                   "doi:10.1037/pst0000172", "k": 295, "r": 0.278, "r_ci_lb": 0.256,
         "r_ci_ub": 0.299},
    ]
)


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


def select(data_path: str | None = None, subset: str = "", effects: str = "all") -> pd.DataFrame:
    """Load the studies and keep the rows a notebook analyses.

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
    return df.reset_index(drop=True)


class Outputs:
    """Where a notebook writes: ``<output_dir>/tables/*.csv`` and ``<output_dir>/figures/*``."""

    def __init__(self, output_dir: str | Path, formats=("svg", "png", "pdf")):
        self.dir = Path(output_dir)
        self.formats = tuple(formats)
        (self.dir / "tables").mkdir(parents=True, exist_ok=True)
        (self.dir / "figures").mkdir(parents=True, exist_ok=True)

    def table(self, df: pd.DataFrame, name: str) -> pd.DataFrame:
        """Write a CSV with a fixed number format (byte-identical for identical inputs)."""
        df.to_csv(self.dir / "tables" / f"{name}.csv", index=False, float_format="%.10g",
                  lineterminator="\n")
        return df

    def figure(self, fig, name: str):
        """Save a Figure in every configured format (deterministic, atomic) and return it."""
        from ..viz.plots import save_figure

        save_figure(fig, self.dir / "figures" / name, self.formats)
        return fig


def _labels(df: pd.DataFrame) -> list[str]:
    lab = df["study_id"].astype(str)
    dup = lab.duplicated(keep=False)
    return [f"{s} ({e.split('_')[-1]})" if d else s
            for s, e, d in zip(lab, df["es_id"].astype(str), dup, strict=True)]


def pooled_models(df: pd.DataFrame, method: str = "REML", test: str = "knha",
                  rho: float = 0.5) -> dict[str, Attempt]:
    """The pooled alliance-outcome correlation under each way of handling dependent effects:
    all effects as independent (random effects), three-level model (effects in samples),
    CR2 cluster-robust inference on the random-effects fit, and one composite per sample
    (Borenstein et al. 2009, ch. 24, with inter-correlation ``rho``)."""
    out: dict[str, Attempt] = {}
    y, v, s = df["yi"].to_numpy(float), df["vi"].to_numpy(float), df["sample_id"].to_numpy()
    out["random effects"] = attempt("random effects", random_effects, y, v, method=method,
                                    test=test, labels=_labels(df))
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
            row["note"] = f"CR2, Satterthwaite df = {float(res.df[0]):.2f}"
        rows.append(row)
    cols = ["model", "k", "n_samples", "estimate", "se", "pval", "r", "r_ci_lb", "r_ci_ub",
            "r_pi_lb", "r_pi_ub", "tau2", "I2", "note"]
    return pd.DataFrame(rows).reindex(columns=cols)


def subgroup_table(df: pd.DataFrame, moderator: str, method: str = "REML",
                   test: str = "knha") -> tuple[pd.DataFrame, Attempt]:
    """Pooled r per level of a moderator (levels with < 2 effects are listed, not pooled) and
    the test of subgroup differences (Q-between)."""
    rows = []
    for level, g in df.groupby(moderator, sort=True, dropna=False):
        a = attempt(str(level), random_effects, g["yi"], g["vi"], method=method, test=test)
        row = {"moderator": moderator, "level": str(level), "k": len(g),
               "n_samples": g["sample_id"].nunique()}
        if a.ok:
            r = a.result
            row.update(r=np.tanh(r.estimate), r_ci_lb=np.tanh(r.ci_lb), r_ci_ub=np.tanh(r.ci_ub),
                       tau2=r.tau2, I2=r.I2)
        else:
            row["note"] = f"not pooled: {a.reason}"
        rows.append(row)
    test_a = attempt(f"subgroups by {moderator}", subgroup_analysis, df["yi"], df["vi"],
                     df[moderator].astype(str), method=method, test=test, moderator=moderator)
    cols = ["moderator", "level", "k", "n_samples", "r", "r_ci_lb", "r_ci_ub", "tau2", "I2",
            "note"]
    return pd.DataFrame(rows).reindex(columns=cols), test_a


def counts(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Numbers of studies, samples and effects by each level of each column (tidy)."""
    rows = []
    for c in columns:
        for level, g in df.groupby(c, sort=True, dropna=False):
            rows.append({"variable": c, "level": str(level), "studies": g["study_id"].nunique(),
                         "samples": g["sample_id"].nunique(), "effects": len(g)})
    return pd.DataFrame(rows, columns=["variable", "level", "studies", "samples", "effects"])


def bias_verdict(results: dict[str, Attempt], k: int) -> str:
    """A plain-language reading of the funnel-asymmetry and adjustment results."""
    parts = []
    if k < 10:
        parts.append(f"With k = {k} studies, every test of small-study effects has little power; "
                     "a non-significant test is not evidence that bias is absent.")
    eg = results.get("egger")
    if eg is not None and eg.ok:
        sig = eg.result.pval < 0.10
        parts.append(
            f"Egger's regression test {'suggests' if sig else 'does not suggest'} funnel "
            f"asymmetry (p = {eg.result.pval:.3f})."
        )
    tf = results.get("trim-and-fill")
    if tf is not None and tf.ok:
        t = tf.result
        parts.append(
            f"Trim-and-fill imputes {t.k0} stud{'y' if t.k0 == 1 else 'ies'} on the {t.side} side; "
            f"the adjusted r is {np.tanh(t.estimate):.3f}."
        )
    pp = results.get("PET-PEESE")
    if pp is not None and pp.ok:
        p = pp.result
        parts.append(f"The conditional PET-PEESE estimate ({p.chosen}) is r = "
                     f"{np.tanh(p.estimate):.3f}.")
    for name, a in results.items():
        if not a.ok:
            parts.append(f"{name} could not be run: {a.reason}")
    return " ".join(parts)
