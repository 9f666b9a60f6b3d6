"""A content-addressed cache of the multiverse's chunks, for a review that grows (issue 16).

A chunk's results are a pure function of its row sets' data (yi, vi, the partition into
samples), the (dependency, bias) pairs wanted on each, the design (estimators, tests, level,
rho) and the code that fits them. Its key hashes exactly those, with the source of the stats
floor; a chunk whose key is on disk is read instead of fitted, and gives the bytes a fit would
give. Adding one study changes only the row sets that contain it (in a filter grid, those whose
filters it passes), so a re-run fits those chunks and reads the others.

Entries are pickles of numpy arrays written by this package under a folder the caller names
(the pipeline: ``outputs/.cache/multiverse``, not committed). After each multiverse the entries
it did not use are removed, so the folder holds one run's worth.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cells import _Design, _Payload

_SUFFIX = ".chunk.pkl"


@lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """The stats floor's source: a change to any estimator invalidates every entry."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.digest()


def chunk_key(payload: _Payload, chunk: list, design: _Design) -> str:
    """Hex digest of what a chunk's results depend on (row ids and row-set ids do not count:
    the same data in another place of the grid is the same chunk)."""
    h = hashlib.sha256(_code_fingerprint())
    h.update(repr((design.dependency, design.method, design.test, design.bias, design.level,
                   design.rho)).encode())
    for _, idx, todo in chunk:
        c = payload.codes[idx]
        _, relabelled = np.unique(c, return_inverse=True)  # the partition, not the sample ids
        for a in (payload.y[idx], payload.v[idx], relabelled.astype(np.int64),
                  np.asarray(todo, dtype=bool)):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
    return h.hexdigest()


class ChunkCache:
    """Read and write chunk results under ``folder``; :meth:`prune` keeps the entries used."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.used: set[str] = set()
        self.hits = 0

    def get(self, key: str) -> list | None:
        self.used.add(key)
        try:
            with open(self.folder / f"{key}{_SUFFIX}", "rb") as f:
                parts = pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):  # absent or torn: fit it
            return None
        self.hits += 1
        return parts

    def put(self, key: str, parts: list) -> None:
        self.used.add(key)
        tmp = self.folder / f".{key}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            pickle.dump(parts, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, self.folder / f"{key}{_SUFFIX}")

    def prune(self) -> None:
        for p in self.folder.glob(f"*{_SUFFIX}"):
            if p.name[: -len(_SUFFIX)] not in self.used:
                p.unlink(missing_ok=True)
