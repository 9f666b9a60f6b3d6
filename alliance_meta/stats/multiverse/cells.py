"""What every multiverse fit shares: the payload and design sent to the workers, the result
arrays of one row set (indexed dependency, method, test, bias) and the scalar inference."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .. import inference
from .grid import NOT_ESTIMABLE, NUM_COLS, OK, TEXT_COLS

# ---------------------------------------------------------------------------------------------
# what travels to the workers


@dataclass(frozen=True)
class _Payload:
    """The data every chunk needs: Fisher z, sampling variances, sample codes."""

    y: np.ndarray
    v: np.ndarray
    codes: np.ndarray


@dataclass(frozen=True)
class _Design:
    dependency: tuple
    method: tuple
    test: tuple
    bias: tuple
    level: float
    rho: float

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return len(self.dependency), len(self.method), len(self.test), len(self.bias)


@contextlib.contextmanager
def _single_blas_thread() -> Iterator[None]:
    """One BLAS thread while fitting: the matrices are tiny, and on a busy machine OpenBLAS'
    threads cost more than they give (a three-level fit took 15x longer under load)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------------------------
# the computations of one chunk


class _Cell:
    """Result arrays of one row set, indexed (dependency, method, test, bias)."""

    def __init__(self, design: _Design, k_rows: int, n_samples: int):
        shape = design.shape
        self.d = design
        self.num = {c: np.full(shape, np.nan) for c in NUM_COLS}
        self.num["n_samples"][...] = n_samples
        self.text = {c: np.full(shape, "", dtype=object) for c in TEXT_COLS}
        self.text["status"][...] = NOT_ESTIMABLE
        self.k_rows = k_rows

    def ix(self, dep: str, method: str | None = None, test: str | None = None,
           bias: str | None = None) -> tuple:
        d = self.d
        return (d.dependency.index(dep),
                slice(None) if method is None else d.method.index(method),
                slice(None) if test is None else d.test.index(test),
                slice(None) if bias is None else d.bias.index(bias))

    def fail(self, ix: tuple, reason: str) -> None:
        self.text["status"][ix] = NOT_ESTIMABLE
        self.text["reason"][ix] = reason

    def put(self, ix: tuple, k: int, est: float, se: float, pval: float, ci_lb: float,
            ci_ub: float, adjustment: str = "") -> None:
        if not (np.isfinite(est) and np.isfinite(se) and np.isfinite(ci_lb)
                and np.isfinite(ci_ub)):
            self.fail(ix, f"the fit gave a non-finite estimate or standard error "
                          f"(estimate {est}, se {se})")
            return
        for c, x in (("k", k), ("estimate", est), ("se", se), ("pval", pval),
                     ("ci_lb", ci_lb), ("ci_ub", ci_ub)):
            self.num[c][ix] = x
        self.text["status"][ix] = OK
        self.text["reason"][ix] = ""
        self.text["adjustment"][ix] = adjustment


def _reason(e: BaseException) -> str:
    msg = str(e).strip() or type(e).__name__
    return msg if isinstance(e, ValueError) else f"{type(e).__name__}: {msg}"


def _dfs(test: str, df) -> float | np.ndarray:
    """Degrees of freedom of ``test`` for :mod:`alliance_meta.stats.inference` (inf is z)."""
    return np.inf if test == "z" else df


@functools.lru_cache(maxsize=4096)
def _crit(level: float, dfs: float) -> float:
    return inference.crit(level, dfs)


def _inference(est, se, test: str, df, level: float):
    """Two-sided p-value and CI bounds; ``test`` "z" uses the normal, else t with ``df``."""
    if np.ndim(est) == 0 and np.ndim(df) == 0 and se > 0:  # one estimate: plain floats
        est, se, dfs = float(est), float(se), float(_dfs(test, df))
        crit = _crit(level, dfs)
        return inference.pvalue(est / se, dfs), est - crit * se, est + crit * se
    est, se = np.asarray(est, float), np.asarray(se, float)
    dfs = _dfs(test, df)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = inference.pvalue(est / se, dfs)
    crit = inference.crit(level, dfs)
    return p, est - crit * se, est + crit * se


def _one_sided_greater(est, se, test: str, df):
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.asarray(est, float) / np.asarray(se, float)
    return inference.pvalue(stat, _dfs(test, df), side="greater")


