"""Back to R and to spreadsheets: :func:`export_effects` writes the review's effects for metafor
(with a script that fits the three-level model) or as a plain CSV with r, yi, vi and weights.

Weights are in percent, as metafor's ``weights()`` reports them: for the random-effects model
``100 w_i / sum(w)`` with ``w_i = 1 / (v_i + tau^2)``; for the three-level model the diagonal of
the inverse marginal covariance ``W = M^-1`` with ``M = V + sigma2_between Z Z' + sigma2_within I``
(``weights.rma.mv(type = "diagonal")``), computed per sample by Sherman-Morrison.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats.rma import random_effects
from ..stats.rma_mv import three_level
from .io import load_studies
from .schema import FIELDS

__all__ = ["export_effects", "EXPORT_FORMATS", "moderator_columns"]

EXPORT_FORMATS = ("metafor", "csv")
_IDS = ("es_id", "sample_id", "study_id")
# columns that say how a number was coded, not what the effect is about
_BOOKKEEPING = {"stat_type", "stat_value", "df", "n1", "n2", "sign", "doi", "source_url", "quote",
                "notes"}
_FREE_TEXT_MODERATORS = {"year", "n", "n_covariates", "country", "diagnosis", "alliance_session"}


def moderator_columns(df: pd.DataFrame) -> list[str]:
    """The codebook's moderator columns that hold at least one value, in codebook order."""
    cols = []
    for f in FIELDS:
        if f.name in _IDS or f.name in _BOOKKEEPING or f.name not in df.columns:
            continue
        if (f.enum is not None or f.name in _FREE_TEXT_MODERATORS) and df[f.name].notna().any():
            cols.append(f.name)
    return cols


def _three_level_weights(vi: np.ndarray, sample: np.ndarray, s2b: float, s2w: float) -> np.ndarray:
    """Diagonal of M^-1 per sample block, M_b = diag(v + s2w) + s2b 11' (Sherman-Morrison)."""
    w = np.empty_like(vi)
    for s in pd.unique(sample):
        idx = np.flatnonzero(sample == s)
        d_inv = 1.0 / (vi[idx] + s2w)
        w[idx] = d_inv - s2b * d_inv**2 / (1.0 + s2b * d_inv.sum())
    return 100.0 * w / w.sum()


_R_SCRIPT = """\
# Written by `alliance-meta export --format metafor`: the review's effects in metafor.
# yi = Fisher's z of the alliance-outcome correlation, vi = its sampling variance.
library(metafor)
dat <- read.csv("{csv}", stringsAsFactors = FALSE)

# the headline: three-level model, effects (es_id) within independent samples (sample_id),
# t-test with "contain" df as alliance-meta's pooled notebook (use test = "z" for metafor's default)
res <- rma.mv(yi, vi, random = ~ 1 | sample_id/es_id, data = dat, method = "REML",
              test = "t", dfs = "contain")
print(res)
predict(res, transf = transf.ztor)  # pooled r with CI and prediction interval

# every effect as independent (compare), and a moderator, e.g.:
# rma(yi, vi, data = dat, method = "REML", test = "knha")
# rma.mv(yi, vi, mods = ~ factor(modality), random = ~ 1 | sample_id/es_id, data = dat)
"""


def export_effects(out: str | os.PathLike, fmt: str = "metafor",
                   path: str | os.PathLike | None = None, method: str = "REML") -> list[Path]:
    """Write the review's effects to ``out`` and return the files written.

    ``fmt = "metafor"``: ``es_id, sample_id, study_id, yi, vi`` and every moderator column that
    holds a value, plus ``<out stem>.R`` beside it, which reads the CSV and fits
    ``rma.mv(yi, vi, random = ~ 1 | sample_id/es_id)``. ``fmt = "csv"``: all codebook columns
    with ``r``, ``yi``, ``vi`` and the weights (percent) of the random-effects and three-level
    models (``method``) fitted to all rows; a weight column is empty when its model cannot be
    fitted (fewer than 2 or 3 effects). ``path`` is the studies folder (default: the review's).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export: format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
    df = load_studies(path)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "metafor":
        table = df[[*_IDS, "yi", "vi", *moderator_columns(df)]]
        table.to_csv(out, index=False, lineterminator="\n")
        script = out.with_suffix(".R")
        script.write_text(_R_SCRIPT.format(csv=out.name), encoding="utf-8")
        return [out, script]
    table = df.copy()
    yi, vi = df["yi"].to_numpy(float), df["vi"].to_numpy(float)
    table["weight_random_effects"] = np.nan
    table["weight_three_level"] = np.nan
    if len(df) >= 2:
        re = random_effects(yi, vi, method=method)
        w = 1.0 / (vi + re.tau2)
        table["weight_random_effects"] = 100.0 * w / w.sum()
    if len(df) >= 3:
        sample = df["sample_id"].to_numpy(dtype=object)
        tl = three_level(yi, vi, sample, method=method)
        table["weight_three_level"] = _three_level_weights(vi, sample, tl.sigma2_between,
                                                           tl.sigma2_within)
    table.to_csv(out, index=False, lineterminator="\n")
    return [out]
