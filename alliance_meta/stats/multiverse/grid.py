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
    "beta": "stat_type",
}
#: Levels of the ``beta`` factor: keep or drop effects converted from a standardised beta
#: (rows with ``stat_type == "beta"``; Peterson & Brown 2005, J Appl Psychol 90:175-181,
#: doi:10.1037/0021-9010.90.1.175).
BETA_LEVELS = ("include", "drop")
MODEL_FACTORS = ("dependency", "method", "test", "bias")
#: The level a factor is held at when ``factors`` does not list it; for a filter, the level
#: that keeps every row.
FIXED_LEVELS: dict[str, Any] = {
    "method": "REML", "test": "z", "dependency": "three-level", "bias": "none", "min_n": 0,
    "r_kind": "all", "rater": "all", "timing": "all", "publication": "all", "modality": "all",
    "beta": "include",
}
_CANONICAL = ("method", "test", "dependency", "min_n", "r_kind", "rater", "timing",
              "publication", "modality", "beta", "bias")
NUM_COLS = ("k", "n_samples", "estimate", "se", "ci_lb", "ci_ub", "pval", "tau2", "I2")
TEXT_COLS = ("adjustment", "status", "reason")
OK = "ok"
NOT_ESTIMABLE = "not estimable"
#: The dependency handlings whose inference is CR2 cluster-robust for a bias adjustment.
_CR2 = {("robust", "none"), ("robust", "PET-PEESE"), ("three-level", "PET-PEESE")}


def _keeps_all(name: str, level) -> bool:
    """True for the level of a filter that keeps every row (no column needed)."""
    if name == "min_n":
        return level == 0
    return isinstance(level, str) and level == FIXED_LEVELS.get(name, "all")


def _ordered(present: Sequence[str], vocab: Sequence | None) -> list[str]:
    order = [str(x) for x in (vocab or ())]
    return [m for m in order if m in present] + sorted(m for m in present if m not in order)


def default_factors(data: pd.DataFrame, vocabularies: Mapping[str, Sequence] | None = None
                    ) -> dict[str, list]:
    """The default grid, fitted to the review in ``data``.

    Model choices: the tau^2 estimators :data:`METHODS`, both tests, every dependency handling
    and bias adjustment. Inclusion filters (besides the level that keeps every row): minimum n
    of 50 and 100, zero-order r only, each alliance rater, timing and modality present, journal
    articles only, and dropping beta-converted effects. A filter level is offered only when the
    data make it a choice: it keeps at least two effects and not all of them (a level that keeps
    every row is the same row set as "all"), and a minimum n is dropped when it keeps the same
    rows as the one before. ``vocabularies`` (data column -> allowed values, e.g. the
    codebook's) orders the levels; without it they are sorted.
    """
    n_rows = len(data)
    voc = vocabularies or {}

    def useful(name: str, level) -> bool:
        col = FILTER_COLUMNS[name]
        if col not in data.columns:
            return False
        kept = int(_mask(data, name, level).sum())
        return 2 <= kept < n_rows

    def present(name: str) -> list[str]:
        col = FILTER_COLUMNS[name]
        if col not in data.columns:
            return []
        # "unspecified" records missing information, not a choice of studies to keep
        seen = set(pd.Series(data[col]).dropna().astype(str)) - {"unspecified", ""}
        return _ordered(sorted(seen), voc.get(col))

    min_n: list = [0]
    last = np.ones(n_rows, dtype=bool)
    for t in (50, 100):
        m = _mask(data, "min_n", t) if "n" in data.columns else last
        if useful("min_n", t) and not np.array_equal(m, last):
            min_n.append(t)
            last = m
    out: dict[str, list] = {
        "method": list(METHODS),
        "test": list(TESTS),
        "dependency": list(DEPENDENCIES),
        "min_n": min_n,
        "r_kind": ["all", *[lv for lv in ("zero-order",) if useful("r_kind", lv)]],
        "rater": ["all", *[lv for lv in present("rater") if useful("rater", lv)]],
        "timing": ["all", *[lv for lv in present("timing") if useful("timing", lv)]],
        "publication": ["all", *[lv for lv in ("journal",) if useful("publication", lv)]],
        "modality": ["all", *[lv for lv in present("modality") if useful("modality", lv)]],
        "beta": ["include", *[lv for lv in ("drop",) if useful("beta", lv)]],
        "bias": list(BIAS_ADJUSTMENTS),
    }
    return out


# ---------------------------------------------------------------------------------------------
# which combinations are specifications


def model_reason(dependency: str, method: str, test: str, bias: str) -> str:
    """Why a combination of model choices is not a specification ("" if it is one); the same
    on any data.

    - the three-level model is fitted by REML or ML only (metafor's ``rma.mv``);
    - trim-and-fill is defined for independent effects (Duval & Tweedie 2000), so only for
      ``aggregate`` and ``first``;
    - CR2 cluster-robust inference (``robust``, and PET-PEESE under ``three-level``) is read
      with Satterthwaite t (Tipton 2015, Psychol Methods 20:375-393, doi:10.1037/met0000011:
      with few clusters the normal reference is too liberal), so the test ``z`` does not apply.
    """
    if dependency == "three-level" and method not in ("REML", "ML"):
        return "three-level models are fitted by REML or ML"
    if bias == "trim-and-fill" and dependency not in ("aggregate", "first"):
        return "trim-and-fill is defined for independent effects (aggregate or first)"
    if test == "z" and (dependency, bias) in _CR2:
        return "CR2 inference uses Satterthwaite t (test 'knha'), not z"
    return ""


def data_reason(dependency: str, bias: str, k: int, n_samples: int, singleton: bool) -> str:
    """Why a dependency handling and bias adjustment is not a specification on a row set of
    ``k`` effects in ``n_samples`` samples ("" if it is one). ``singleton``: every sample has
    one effect, so ``first`` is ``aggregate`` on the same effects and the three-level model has
    no within-sample level."""
    if k == 0:
        return "no effects match the inclusion filters"
    if n_samples < 2:
        return f"{dependency}: needs at least 2 samples, got 1"
    if dependency == "first" and singleton:
        return "first: one effect per sample, the same effects as 'aggregate'"
    if dependency == "three-level":
        if singleton:
            return "three-level: one effect per sample, no within-sample level"
        if k < 3:
            return f"three-level: needs at least 3 effects, got {k}"
    k_dep = n_samples if dependency in ("aggregate", "first") else k
    if bias != "none" and k_dep < 3:
        return f"{bias}: needs at least 3 effects, got {k_dep}"
    if bias == "PET-PEESE" and dependency in ("robust", "three-level") and n_samples < 3:
        return f"PET-PEESE with CR2: needs at least 3 samples, got {n_samples}"
    return ""


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
        elif name == "beta":
            bad = [lv for lv in levels if lv not in BETA_LEVELS]
            if bad:
                raise ValueError(f"{who}: unknown level(s) {bad} of factor 'beta'; use "
                                 f"{list(BETA_LEVELS)}")
        else:
            col = FILTER_COLUMNS.get(name, name)
            if col not in data.columns and not all(_keeps_all(name, lv) for lv in levels):
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
    for name, levels in out.items():
        if name in MODEL_FACTORS or all(_keeps_all(name, lv) for lv in levels):
            continue
        if FILTER_COLUMNS.get(name, name) not in data.columns:
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
    if _keeps_all(name, level):
        return np.ones(len(data), dtype=bool)
    s = data[col]
    if name == "beta":  # "drop": effects converted from a beta are left out
        return (s.astype(str).to_numpy() != "beta") | s.isna().to_numpy()
    return (s.astype(str).to_numpy() == str(level)) & s.notna().to_numpy()

