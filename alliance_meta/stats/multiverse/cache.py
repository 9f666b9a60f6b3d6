"""The multiverse's results per row set, kept between runs of a review that grows (issue 16).

A row set's results are a function of its data alone (yi, vi, the partition into samples), the
(dependency, bias) pairs wanted on it, the design (estimators, tests, level, rho) and the code:
the stacked fits hold every data set where it converged, so a row set's numbers do not depend
on the row sets fitted beside it (``test_table_does_not_depend_on_how_row_sets_are_chunked``).
A result read back is therefore the result a fit would give, to the last bit. The key hashes
exactly those inputs, with the stats floor's source.

Adding a study changes only the row sets whose filters it passes (at 300 effects, 66 of 724),
so a re-run fits those and reads the rest. The file is a compressed ``.npz`` written by
numpy without pickles (numbers as float64, texts as unicode), and after each run it holds the
row sets that run used.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..source import source_digest
from .cells import _Design, _Payload
from .grid import NUM_COLS, TEXT_COLS


@lru_cache(maxsize=1)
def _code_fingerprint() -> bytes:
    """The stats floor's source: a change to any estimator makes every entry stale."""
    return source_digest(Path(__file__).resolve().parents[1]).encode()


class RowSetCache:
    """Results per row set in ``path`` (an .npz); :meth:`save` keeps the entries used."""

    def __init__(self, path: str | os.PathLike, design: _Design):
        self.path = Path(path)
        self.design = design
        self._salt = _code_fingerprint() + repr((
            design.dependency, design.method, design.test, design.bias, design.level,
            design.rho, NUM_COLS, TEXT_COLS)).encode()
        self._stored: dict[str, int] = {}
        self._num = self._txt = None
        try:
            with np.load(self.path, allow_pickle=False) as z:
                keys, num, txt = z["keys"], z["num"], z["txt"]
            if num.shape[1:] == (len(NUM_COLS), *design.shape) \
                    and txt.shape[1:] == (len(TEXT_COLS), *design.shape):
                self._stored = {str(k): i for i, k in enumerate(keys)}
                self._num, self._txt = num, txt
        except (OSError, ValueError, KeyError):  # absent, torn or foreign: start empty
            pass
        self.kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.hits = 0

    def key(self, payload: _Payload, idx: np.ndarray, todo: np.ndarray) -> str:
        _, partition = np.unique(payload.codes[idx], return_inverse=True)
        h = hashlib.sha256(self._salt)
        for a in (payload.y[idx], payload.v[idx], partition.astype(np.int64),
                  np.asarray(todo, dtype=bool)):
            h.update(np.ascontiguousarray(a).tobytes())
            h.update(b"|")
        return h.hexdigest()

    def get(self, key: str) -> dict | None:
        i = self._stored.get(key)
        if i is None:
            return None
        num, txt = self._num[i], self._txt[i]
        self.kept[key] = (num, txt)
        self.hits += 1
        out = {c: num[j].copy() for j, c in enumerate(NUM_COLS)}
        out.update({c: txt[j].astype(object) for j, c in enumerate(TEXT_COLS)})
        return out

    def put(self, key: str, arrays: dict) -> None:
        texts = [arrays[c] for c in TEXT_COLS]
        if not all(isinstance(x, str) for t in texts for x in t.ravel()):
            return  # only what the file keeps exactly
        self.kept[key] = (np.stack([np.asarray(arrays[c], dtype=float) for c in NUM_COLS]),
                          np.stack([t.astype(str) for t in texts]))

    def save(self) -> None:
        """Write the entries this run used (read or fitted), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self.kept)
        num = np.stack([self.kept[k][0] for k in keys]) if keys else np.empty(
            (0, len(NUM_COLS), *self.design.shape))
        width = max((self.kept[k][1].dtype.itemsize // 4 for k in keys), default=1)
        txt = np.stack([self.kept[k][1].astype(f"<U{width}") for k in keys]) if keys else \
            np.empty((0, len(TEXT_COLS), *self.design.shape), dtype="<U1")
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, keys=np.array(keys, dtype="<U64"), num=num, txt=txt)
        os.replace(tmp, self.path)
