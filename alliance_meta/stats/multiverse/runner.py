"""Running a multiverse: row sets from the filters, chunks run locally or on Dask, and the
table assembled in the grid's order."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .cache import RowSetCache
from .fits import _Design, _Payload, _run_chunk
from .grid import (
    MODEL_FACTORS,
    NUM_COLS,
    TEXT_COLS,
    _check_factors,
    _keeps_all,
    _mask,
    data_reason,
    model_reason,
)
from .result import MultiverseResult

# ---------------------------------------------------------------------------------------------
# running the chunks


def _run_local(payload, chunks, design, n_jobs: int) -> list:
    if n_jobs == 1 or len(chunks) <= 1:
        return [_run_chunk(payload, ch, design) for ch in chunks]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(_run_chunk, [payload] * len(chunks), chunks,
                             [design] * len(chunks)))


def _run_dask(scheduler, payload, chunks, design) -> tuple[list, str]:
    try:
        from dask.distributed import Client
    except ImportError as e:  # dask is an optional extra
        raise ImportError('multiverse: computing on a Dask scheduler needs Dask, an optional '
                          'extra: pip install "alliance-meta[dask]"') from e
    own = isinstance(scheduler, str)
    if own:
        client = Client(scheduler)
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        raise ValueError("multiverse: scheduler must be None, a scheduler address such as "
                         f"'tcp://host:8786' or a dask.distributed.Client, got "
                         f"{type(scheduler).__name__}")
    try:
        address = str(client.scheduler.address) if client.scheduler else "dask"
        # hash=False: a fresh key per call; with content hashing, repeated calls share the key
        # and the release of an earlier call's future can cancel a later call's tasks
        [data] = client.scatter([payload], broadcast=True, hash=False)
        futures = client.map(_run_chunk, [data] * len(chunks), chunks,
                             [design] * len(chunks), pure=False)
        return client.gather(futures), address
    finally:
        if own:
            client.close()


def _filter_labels(factors: dict[str, tuple], filt: list[str], combo: tuple) -> str:
    return ", ".join(f"{n} = {factors[n][j]}" for n, j in zip(filt, combo, strict=True)
                     if not _keeps_all(n, factors[n][j])) or "no filter"


def _reasons(factors: dict[str, tuple], design: _Design, combos: list[tuple],
             combo_rowset: np.ndarray, first_combo: list[int], stats: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Why combinations are not specifications: per filter combination (the same rows as an
    earlier one), per model cell (:func:`model_reason`) and per row set, dependency and bias
    (:func:`data_reason`); "" where they are."""
    filt = [n for n in factors if n not in MODEL_FACTORS]
    dup = np.full(len(combos), "", dtype=object)
    for c, r in enumerate(combo_rowset):
        f = first_combo[r]
        if f != c and stats[r, 0] > 0:  # an empty row set says so (data_reason)
            dup[c] = f"the same effects as {_filter_labels(factors, filt, combos[f])}"
    mr = np.full(design.shape, "", dtype=object)
    for ix in np.ndindex(*design.shape):
        d, m, t, b = ix
        mr[ix] = model_reason(design.dependency[d], design.method[m], design.test[t],
                              design.bias[b])
    D, B = len(design.dependency), len(design.bias)
    dr = np.full((len(first_combo), D, B), "", dtype=object)
    for r, (k, n_s, single) in enumerate(stats):
        for d, b in np.ndindex(D, B):
            dr[r, d, b] = data_reason(design.dependency[d], design.bias[b], int(k), int(n_s),
                                      bool(single))
    return dup, mr, dr


def _assemble(factors: dict[str, tuple], combo_rowset: np.ndarray, why: tuple,
              results: dict[int, dict], design: _Design) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table of specifications (in the grid's product order) and of the combinations that
    are not specifications, with the reason."""
    names = list(factors)
    shape = tuple(len(factors[n]) for n in names)
    N = int(np.prod(shape))
    codes = np.unravel_index(np.arange(N), shape)
    filt = [n for n in names if n not in MODEL_FACTORS]
    fshape = tuple(len(factors[n]) for n in filt)
    fcodes = tuple(codes[names.index(n)] for n in filt)
    combo = np.ravel_multi_index(fcodes, fshape) if filt else np.zeros(N, int)
    rid = combo_rowset[combo]
    mc = tuple(codes[names.index(n)] for n in MODEL_FACTORS)
    dup, mr, dr = why
    reason = dup[combo]
    reason = np.where(reason == "", mr[mc], reason)
    reason = np.where(reason == "", dr[(rid, mc[0], mc[3])], reason)
    valid = reason == ""
    levels: dict[str, np.ndarray] = {}
    for n, cd in zip(names, codes, strict=True):
        col = np.empty(len(factors[n]), dtype=object)
        col[:] = list(factors[n])
        levels[n] = col[cd]
    sel = np.flatnonzero(valid)
    rid, mc = rid[sel], tuple(c[sel] for c in mc)
    table: dict[str, Any] = {"spec_id": np.arange(sel.size)}
    table.update({n: levels[n][sel] for n in names})
    n_rs = len(dr)
    full = {c: np.full((n_rs, *design.shape), np.nan) for c in NUM_COLS}
    full.update({c: np.full((n_rs, *design.shape), "", dtype=object) for c in TEXT_COLS})
    for r, arrays in results.items():
        for c in full:
            full[c][r] = arrays[c]
    for c in NUM_COLS:
        table[c] = full[c][(rid, *mc)]
    out = pd.DataFrame(table)
    pos = out.columns.get_loc("ci_ub") + 1
    out.insert(pos, "r", np.tanh(out["estimate"]))
    out.insert(pos + 1, "r_ci_lb", np.tanh(out["ci_lb"]))
    out.insert(pos + 2, "r_ci_ub", np.tanh(out["ci_ub"]))
    for c in TEXT_COLS:
        out[c] = full[c][(rid, *mc)]
    for c in ("k", "n_samples"):
        out[c] = pd.array(np.where(np.isfinite(out[c]), out[c], np.nan)).astype("Int64")
    drop = np.flatnonzero(~valid)
    excluded = pd.DataFrame({n: levels[n][drop] for n in names})
    excluded["reason"] = reason[drop]
    for frame in (out, excluded):
        for n in names:
            frame[n] = pd.to_numeric(frame[n]) if n == "min_n" else frame[n].astype(str)
    return out, excluded


def multiverse(
    data: pd.DataFrame,
    factors: Mapping[str, Sequence] | None = None,
    scheduler=None,
    seed: int = 0,
    level: float = 0.95,
    *,
    rho: float = 0.5,
    chunk_size: int = 32,
    n_jobs: int = 1,
    vocabularies: Mapping[str, Sequence] | None = None,
    cache: str | os.PathLike | None = None,
) -> MultiverseResult:
    """Fit every specification of a multiverse (Steegen et al. 2016; Simonsohn et al. 2020).

    Parameters
    ----------
    data : the effects, one row per effect, with ``yi`` (Fisher's z), ``vi``, ``sample_id`` and
        the columns the filters use (as :func:`alliance_meta.data.load_studies` returns).
    factors : factor name -> list of levels; ``None`` is :func:`default_factors`. Factors not
        listed are held at one level (REML, z, three-level, no bias adjustment, no filter).
        See the module docstring for the factors and their levels.
    scheduler : ``None`` computes locally; a scheduler address (``"tcp://host:8786"``) or a
        ``dask.distributed.Client`` computes the chunks on that Dask cluster. The table is
        identical either way.
    seed : recorded with the result. No step of the current factors is random; the chunks are
        deterministic, so the same seed and grid give the same table locally and on Dask.
    level : confidence level of every CI; significance in summaries is p < 1 - level.
    rho : assumed correlation between effects of one sample for ``dependency="aggregate"``.
    chunk_size : row sets per chunk (the unit of work sent to a process or Dask worker); a
        chunk batches its fits, so larger chunks run faster in one process.
    n_jobs : local processes (1: in this process; -1: one per core).
    cache : a file (``.npz``) keeping each row set's results between runs (:mod:`.cache`): a
        re-run reads the row sets whose data, wanted analyses and the stats code are unchanged
        and fits the others; the table is identical to an uncached run's. ``None`` (default)
        fits every row set.
    vocabularies : data column -> allowed values (e.g. ``alliance_meta.data.ENUMS``, the
        codebook's); filter levels are checked against it. Without it any level is accepted
        (a level absent from the data gives specifications that are not estimable).

    Returns
    -------
    MultiverseResult whose ``table`` has one row per specification: ``spec_id``, every factor,
    ``k`` (effects in the model: samples for aggregate/first), ``n_samples``, ``estimate``,
    ``se``, ``ci_lb``, ``ci_ub`` (Fisher's z), ``r``, ``r_ci_lb``, ``r_ci_ub``, ``pval``,
    ``tau2`` and ``I2`` (of the unadjusted model of the same rows, dependency and estimator;
    the sum of both variance components for the three-level model), ``adjustment`` (k0 of
    trim-and-fill, the estimator PET-PEESE chose), ``status`` ("ok" or "not estimable") and
    ``reason``.
    """
    who = "multiverse"
    if not isinstance(data, pd.DataFrame):
        raise ValueError(f"{who}: data must be a pandas DataFrame of effects")
    for col in ("yi", "vi", "sample_id"):
        if col not in data.columns:
            raise ValueError(f"{who}: data have no column {col!r}")
    if not 0 < level < 1:
        raise ValueError(f"{who}: level must lie in (0, 1), got {level}")
    if not -1 <= rho <= 1:
        raise ValueError(f"{who}: rho must lie in [-1, 1], got {rho}")
    if int(chunk_size) < 1:
        raise ValueError(f"{who}: chunk_size must be at least 1, got {chunk_size}")
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if int(n_jobs) < 1:
        raise ValueError(f"{who}: n_jobs must be a positive number of processes or -1")
    y = pd.to_numeric(data["yi"]).to_numpy(dtype=float, na_value=np.nan)
    v = pd.to_numeric(data["vi"]).to_numpy(dtype=float, na_value=np.nan)
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v > 0).all()):
        raise ValueError(f"{who}: yi and vi must be finite and vi positive in every row")
    if data["sample_id"].isna().any():
        raise ValueError(f"{who}: sample_id has missing values")
    fac = _check_factors(data, factors, vocabularies)
    codes, _ = pd.factorize(data["sample_id"].astype(str), sort=False)
    payload = _Payload(y=y, v=v, codes=codes.astype(np.int64))
    design = _Design(dependency=fac["dependency"], method=fac["method"], test=fac["test"],
                     bias=fac["bias"], level=float(level), rho=float(rho))
    # the distinct row sets of the inclusion filters, in order of first appearance
    filt = [n for n in fac if n not in MODEL_FACTORS]
    masks = {n: [_mask(data, n, lv) for lv in fac[n]] for n in filt}
    ids: dict[bytes, int] = {}
    rowsets: list[np.ndarray] = []
    first_combo: list[int] = []
    combos = list(itertools.product(*(range(len(fac[n])) for n in filt)))
    combo_rowset = np.empty(len(combos), dtype=np.int64)
    for c, combo in enumerate(combos):
        m = np.ones(len(data), dtype=bool)
        for n, j in zip(filt, combo, strict=True):
            m &= masks[n][j]
        key = m.tobytes()
        if key not in ids:
            ids[key] = len(rowsets)
            rowsets.append(np.flatnonzero(m))
            first_combo.append(c)
        combo_rowset[c] = ids[key]
    stats = np.zeros((len(rowsets), 3), dtype=np.int64)  # k, samples, one effect per sample
    for r, idx in enumerate(rowsets):
        counts = np.bincount(codes[idx]) if idx.size else np.zeros(0, int)
        counts = counts[counts > 0]
        stats[r] = idx.size, counts.size, int(counts.size > 0 and counts.max() == 1)
    why = _reasons(fac, design, combos, combo_rowset, first_combo, stats)
    mr_ok = why[1] == ""
    results: dict[int, dict] = {}
    work = []
    for rid, idx in enumerate(rowsets):
        # (dependency, bias) pairs that are specifications on these rows for some model cell
        todo = (why[2][rid] == "") & mr_ok.any(axis=(1, 2))
        if todo.any():
            work.append((rid, idx, todo))
    store = RowSetCache(cache, design) if cache is not None else None
    if store is not None:  # row sets of the same data as in the last run are read, not fitted
        keys = {rid: store.key(payload, idx, todo) for rid, idx, todo in work}
        for rid, _, _ in work:
            got = store.get(keys[rid])
            if got is not None:
                results[rid] = got
        work = [w for w in work if w[0] not in results]
    chunks = [work[i : i + chunk_size] for i in range(0, len(work), chunk_size)]
    where = "local"
    if scheduler is None:
        parts = _run_local(payload, chunks, design, int(n_jobs))
    else:
        parts, where = _run_dask(scheduler, payload, chunks, design)
    for part in parts:
        for rid, arrays in part:
            results[rid] = arrays
            if store is not None:
                store.put(keys[rid], arrays)
    if store is not None:
        store.save()
    table, excluded = _assemble(fac, combo_rowset, why, results, design)
    return MultiverseResult(
        table=table, factors={n: list(lv) for n, lv in fac.items()}, level=float(level),
        seed=seed, rho=float(rho), scheduler=where, n_chunks=len(chunks),
        n_rowsets=len(rowsets), excluded=excluded,
        n_cached=store.hits if store is not None else 0,
    )

