"""The multiverse's grid: the factors, their levels, checking them, and the inclusion masks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..rma import TAU2_METHODS

#: tau^2 estimators of the default grid.
METHODS = ("DL", "REML", "PM", "SJ")
TESTS = ("z", "knha")
DEPENDENCIES = ("three-level", "aggregate", "robust", "first")
BIAS_ADJUSTMENTS = ("none", "trim-and-fill", "PET-PEESE")
#: Inclusion-filter factors and the data column each filters on.
FILTER_COLUMNS = {
    "min_n": "n",
    "r_kind": "r_kind",
    "rater": "alliance_rater",
    "timing": "alliance_timing",
    "publication": "publication_type",
    "modality": "modality",
}
MODEL_FACTORS = ("dependency", "method", "test", "bias")
#: The level a factor is held at when ``factors`` does not list it.
FIXED_LEVELS: dict[str, Any] = {
    "method": "REML", "test": "z", "dependency": "three-level", "bias": "none", "min_n": 0,
    "r_kind": "all", "rater": "all", "timing": "all", "publication": "all", "modality": "all",
}
_CANONICAL = ("method", "test", "dependency", "min_n", "r_kind", "rater", "timing",
              "publication", "modality", "bias")
NUM_COLS = ("k", "n_samples", "estimate", "se", "ci_lb", "ci_ub", "pval", "tau2", "I2")
TEXT_COLS = ("adjustment", "status", "reason")
OK = "ok"
NOT_ESTIMABLE = "not estimable"


def _present(data: pd.DataFrame, name: str) -> list[str]:
    """Levels of a filter factor that occur in ``data`` (sorted; used when no vocabulary is given)."""
    col = FILTER_COLUMNS.get(name, name)
    return sorted(set(pd.Series(data[col]).dropna().astype(str))) if col in data else []


def default_factors(data: pd.DataFrame, vocabularies: Mapping[str, Sequence] | None = None
                    ) -> dict[str, list]:
    """The default grid: tau^2 estimator, test, dependency handling, inclusion filters (minimum
    n, zero-order r only, alliance rater, timing, journal articles only, each modality present
    in ``data``) and bias adjustment. ``vocabularies`` (data column -> allowed values, e.g. the
    codebook's) only orders the modality levels; without it they are sorted."""
    present = _present(data, "modality")
    order = list((vocabularies or {}).get(FILTER_COLUMNS["modality"], ()))
    mods = [m for m in order if m in present] + [m for m in present if m not in order]
    return {
        "method": list(METHODS),
        "test": list(TESTS),
        "dependency": list(DEPENDENCIES),
        "min_n": [0, 50, 100],
        "r_kind": ["all", "zero-order"],
        "rater": ["all", *[lv for lv in ("client", "therapist", "observer")
                           if lv in _present(data, "rater")]],
        "timing": ["all", *[lv for lv in ("early", "late") if lv in _present(data, "timing")]],
        "publication": ["all", "journal"],
        "modality": ["all", *mods],
        "bias": list(BIAS_ADJUSTMENTS),
    }


# ---------------------------------------------------------------------------------------------
# checking the grid


def _check_factors(data: pd.DataFrame, factors: Mapping | None,
                   vocabularies: Mapping[str, Sequence] | None = None) -> dict[str, tuple]:
    who = "multiverse"
    if factors is None:
        factors = default_factors(data, vocabularies)
    if not isinstance(factors, Mapping):
        raise ValueError(f"{who}: factors must be a dict of factor name -> list of levels")
    out: dict[str, tuple] = {}
    for name, levels in factors.items():
        if isinstance(levels, (str, bytes)) or not isinstance(levels, Sequence | np.ndarray):
            levels = [levels]
        levels = tuple(levels)
        if not levels:
            raise ValueError(f"{who}: factor {name!r} has no levels")
        if len(set(map(str, levels))) != len(levels):
            raise ValueError(f"{who}: factor {name!r} lists a level twice: {list(levels)}")
        allowed = {
            "method": TAU2_METHODS + ("FE",), "test": TESTS, "dependency": DEPENDENCIES,
            "bias": BIAS_ADJUSTMENTS,
        }.get(name)
        if allowed is not None:
            bad = [lv for lv in levels if lv not in allowed]
            if bad:
                raise ValueError(f"{who}: unknown level(s) {bad} of factor {name!r}; use "
                                 f"{list(allowed)}")
        elif name == "min_n":
            for lv in levels:
                if isinstance(lv, bool) or not isinstance(lv, int | float | np.integer |
                                                          np.floating) or not lv >= 0:
                    raise ValueError(f"{who}: levels of min_n must be numbers >= 0, got {lv!r}")
        else:
            col = FILTER_COLUMNS.get(name, name)
            if col not in data.columns:
                raise ValueError(f"{who}: unknown factor {name!r} (neither a model factor, a "
                                 f"known filter {list(FILTER_COLUMNS)} nor a data column)")
            vocab = (vocabularies or {}).get(col)
            if vocab is not None:
                bad = [lv for lv in levels if lv != "all" and str(lv) not in map(str, vocab)]
                if bad:
                    raise ValueError(f"{who}: unknown level(s) {bad} of factor {name!r}; use "
                                     f"'all' or one of {list(vocab)}")
        out[name] = levels
    for name in _CANONICAL:
        if name not in out:
            out[name] = (FIXED_LEVELS[name],)
    for name in out:
        if name not in MODEL_FACTORS and FILTER_COLUMNS.get(name, name) not in data.columns:
            raise ValueError(f"{who}: the data have no column {FILTER_COLUMNS[name]!r} needed "
                             f"by the filter {name!r}")
    return out


def _mask(data: pd.DataFrame, name: str, level) -> np.ndarray:
    col = FILTER_COLUMNS.get(name, name)
    if name == "min_n":
        if level == 0:
            return np.ones(len(data), dtype=bool)
        n = pd.to_numeric(data[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        return np.nan_to_num(n, nan=-np.inf) >= level
    if isinstance(level, str) and level == "all":
        return np.ones(len(data), dtype=bool)
    s = data[col]
    return (s.astype(str).to_numpy() == str(level)) & s.notna().to_numpy()

