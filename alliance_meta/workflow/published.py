"""The published syntheses beside ours, and the caution a small curated set calls for.

:func:`read_syntheses` reads ``studies/syntheses.csv`` (the data floor validates it) and labels
each pooled estimate author-year from ``studies/syntheses.bib``; :func:`demonstration_caution`
writes the "demonstration, not a synthesis" sentence from the headline's own counts and the
largest published synthesis, so neither the site nor a report types a number by hand.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from .apa import fmt_int
from .table1 import parse_bib, study_labels

__all__ = ["read_syntheses", "largest_synthesis", "demonstration_caution",
           "CAUTION_BELOW_SAMPLES"]

#: The caution stays while the curated set has fewer independent samples than this (the first
#: milestone of the dataset; the syntheses it is compared with pool 100 to 300 studies).
CAUTION_BELOW_SAMPLES = 20


def read_syntheses(studies: str | Path) -> pd.DataFrame | None:
    """``<studies>/syntheses.csv`` (strings as written) with an author-year ``label`` per row,
    from ``syntheses.bib`` (keyed by synthesis_id) when it has the entry, else from the first
    author as printed; None when the file is absent."""
    p = Path(studies) / "syntheses.csv"
    if not p.exists():
        return None
    syn = pd.read_csv(p, dtype=str, keep_default_na=False)
    bibp = p.with_suffix(".bib")
    bib = parse_bib(bibp) if bibp.exists() else {}
    ids = syn["synthesis_id"] if "synthesis_id" in syn else pd.Series([""] * len(syn))
    labels = study_labels([i for i in ids if i in bib], bib)

    def label(i: int) -> str:
        sid = str(ids.iloc[i])
        if sid in labels:
            return labels[sid]
        first = (re.split(r",| and | & ", str(syn["authors"].iloc[i]))[0].strip()
                 if "authors" in syn else sid)
        return f"{first} et al. ({syn['year'].iloc[i]})" if "year" in syn else first

    syn["label"] = [label(i) for i in range(len(syn))]
    return syn


def largest_synthesis(syn: pd.DataFrame | None) -> tuple[str, int, str] | None:
    """(label, k, unit of k) of the pooled estimate with the largest k, or None."""
    if syn is None or syn.empty or "k" not in syn:
        return None
    k = pd.to_numeric(syn["k"], errors="coerce")
    if not k.notna().any():
        return None
    row = syn.loc[k.idxmax()]
    return (str(row.get("label") or row.get("synthesis_id", "")), int(k.max()),
            str(row.get("k_unit") or "").strip())


def _get(h, key: str):
    v = h.get(key) if isinstance(h, dict) else getattr(h, key, None)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def demonstration_caution(headline, syntheses: pd.DataFrame | None = None) -> str:
    """The caution while the curated set is small (fewer than :data:`CAUTION_BELOW_SAMPLES`
    samples), from a :class:`~.report.Headline` or its dict; "" once the set is large enough."""
    k, n = _get(headline, "k"), _get(headline, "n_samples")
    if n is None or k is None or n >= CAUTION_BELOW_SAMPLES:
        return ""
    text = (f"Demonstration, not a synthesis. The curated set holds {fmt_int(k)} effects from "
            f"{fmt_int(n)} independent samples, each traced to the sentence it was coded from")
    big = largest_synthesis(syntheses)
    if big is not None:
        label, kmax, unit = big
        text += (f", far fewer than the published syntheses (the largest listed, {label}, pooled "
                 f"k = {fmt_int(kmax)}" + (f" {unit}" if unit else "") + ")")
    return text + (". The pooled numbers show the workbench on real data; they are not a new "
                   "estimate of the alliance\u2013outcome association.")
