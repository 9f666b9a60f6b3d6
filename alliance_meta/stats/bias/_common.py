"""Shared pieces of the publication-bias methods: the low-power note, r columns, HTML blocks,
the check that a model has no moderators, and the regression predictor (sei or vi)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from ..results import df_html
from ..rma import MetaRegressionResult, RandomEffectsResult
from ..rma_mv import ThreeLevelResult

LOW_POWER_K = 10


def _low_power_note(k: int, what: str, unit: str = "effect sizes") -> str:
    if k < LOW_POWER_K:
        return (
            f"k = {k} {unit} (< {LOW_POWER_K}): the power of {what} is low; a non-significant "
            f"result is no evidence of the absence of bias (Sterne et al. 2011)."
        )
    return ""


def _r_cols(row: dict, measure: str) -> dict:
    """Add r = tanh(z) columns for estimates on Fisher's z scale."""
    if measure == "ZCOR":
        for c in ("estimate", "ci_lb", "ci_ub"):
            if c in row:
                row["r" if c == "estimate" else "r_" + c] = np.tanh(row[c])
    return row


def _html_block(title: str, df: pd.DataFrame, note: str) -> str:
    n = f"<br><i>{html.escape(note)}</i>" if note else ""
    return f"<div><b>{html.escape(title)}</b>{df_html(df)}{n}</div>"


def _uni(res, who: str) -> RandomEffectsResult:
    if isinstance(res, MetaRegressionResult):
        raise ValueError(f"{who}: only applicable to models without moderators")
    if isinstance(res, ThreeLevelResult):
        raise ValueError(
            f"{who}: not defined for a three-level model (its effects are dependent); use "
            f"egger_test or pet_peese on the three-level fit, or aggregate the effects first"
        )
    if not isinstance(res, RandomEffectsResult):
        raise TypeError(f"{who}: needs a RandomEffectsResult, got {type(res).__name__}")
    return res


def _predictor(v: np.ndarray, predictor: str, who: str) -> np.ndarray:
    if predictor == "sei":
        return np.sqrt(v)
    if predictor == "vi":
        return v.copy()
    raise ValueError(f"{who}: predictor must be 'sei' or 'vi', got {predictor!r}")
