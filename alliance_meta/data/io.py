"""Loading and appending effects: :func:`load_studies` computes ``r``, ``yi`` and ``vi``;
:func:`append_rows` adds rows without rewriting the ones already there.

Effect sizes are converted by :func:`alliance_meta.stats.escalc.to_r` (formulas and sources in
``studies/CODEBOOK.md``). Sampling variances of Fisher's z (Fisher 1921): ``vi = 1 / (n - 3)`` for
zero-order effects; for a partial effect from a t or F with its residual df,
``vi = 1 / (df - 1)`` (Aloe, A. M., & Thompson, C. G. (2013). The synthesis of partial effect
sizes. Journal of the Society for Social Work and Research, 4(4), 390-405.
doi:10.5243/jsswr.2013.24); for a partial effect without a df (a beta or partial r printed
without it), ``vi = 1 / (n - 3)``, an approximation that slightly understates the variance.
"""

from __future__ import annotations

import csv
import html
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats.escalc import fisher_z, partial_r_to_z
from .schema import FIELDS, _paths
from .tables import (
    Problem,
    StudiesValidationError,
    ValidationReport,
    _parse_bib,
    _read,
    _Row,
    typed_frame,
)
from .validate import _validate, convert_r

__all__ = ["AppendResult", "load_studies", "append_rows"]

# ---------------------------------------------------------------------------------------------
# loading


def _frame(rows: list[_Row], vals: list[dict[str, object]]) -> pd.DataFrame:
    df = typed_frame(FIELDS, vals)
    n_eff = np.where((df["r_kind"] == "partial").to_numpy(dtype=bool) & np.isfinite(df["df"].to_numpy()),
                     df["df"].to_numpy() + 2.0, df["n"].to_numpy(dtype=float))
    r = convert_r(df["stat_type"].to_numpy(dtype=object), df["stat_value"].to_numpy(),
                  df["n"].to_numpy(dtype=float), df["df"].to_numpy(),
                  df["n1"].to_numpy(dtype=float, na_value=np.nan),
                  df["n2"].to_numpy(dtype=float, na_value=np.nan), df["sign"].to_numpy(dtype=float))
    if len(df):
        # vi = 1/(n - 3); for a partial effect with its residual df, n_eff = df + 2 gives 1/(df - 1)
        yi, vi = fisher_z(r, n_eff)
        pr = (df["stat_type"] == "partial_r").to_numpy(dtype=bool)
        if pr.any():  # a partial r with its covariates: metafor's ZPCOR (Aloe & Thompson 2013)
            yi[pr], vi[pr] = partial_r_to_z(r[pr], df["n"].to_numpy(dtype=float)[pr],
                                            df["n_covariates"].to_numpy(dtype=float, na_value=np.nan)[pr])
    else:
        yi = vi = np.array([], dtype=float)
    return df.assign(r=r, yi=yi, vi=vi)


def load_studies(path: str | os.PathLike | None = None, *, provenance: str = "curated") -> pd.DataFrame:
    """The studies as a tidy DataFrame, one row per effect, ready for the models.

    All columns of ``effects.csv`` (integers as nullable ``Int64``, numbers as float, text as
    ``string``) plus ``r`` (converted with :func:`alliance_meta.effects.to_r` and multiplied by
    ``sign``), ``yi`` (Fisher's z) and ``vi`` (its sampling variance; see the module docstring).
    The files are validated first; any error raises :class:`StudiesValidationError`, which lists
    every error with its file, line and column. ``provenance``: as in :func:`validate_studies`.
    """
    csv_path, bib_path = _paths(path)
    report, rows, vals, _ = _validate([(_read(csv_path), str(csv_path), provenance)],
                                      [(_read(bib_path), str(bib_path))])
    if not report.ok:
        raise StudiesValidationError(report)
    return _frame(rows, vals)


# ---------------------------------------------------------------------------------------------
# adding rows


@dataclass(frozen=True, repr=False)
class AppendResult:
    """What :func:`append_rows` added: the es_ids and the bibliography keys, and the report."""

    added: tuple[str, ...]
    bib_keys: tuple[str, ...]
    report: ValidationReport

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame({"es_id": list(self.added)})

    def __repr__(self) -> str:
        return f"AppendResult(added={list(self.added)}, bib_keys={list(self.bib_keys)})"

    def _repr_html_(self) -> str:
        return html.escape(repr(self))


def _csv_bytes(df: pd.DataFrame) -> bytes:
    def cell(x: object) -> str:
        if x is None or (isinstance(x, float) and np.isnan(x)) or x is pd.NA:
            return ""
        if isinstance(x, float) and x.is_integer():
            return str(int(x))
        return str(x)

    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(list(df.columns))
    for rec in df.itertuples(index=False):
        w.writerow([cell(x) for x in rec])
    return buf.getvalue().encode("utf-8")


def _atomic_write(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.exists():
            shutil.copymode(target, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _appended(old: bytes, new: bytes) -> bytes:
    nl = b"\r\n" if b"\r\n" in old[: old.find(b"\n") + 1] else b"\n"
    new = new.replace(b"\r\n", b"\n").replace(b"\n", nl)
    if old and not old.endswith(b"\n"):
        old += nl
    return old + new


def append_rows(new: str | os.PathLike | pd.DataFrame, path: str | os.PathLike | None = None,
                bib: str | os.PathLike | None = None, *, provenance: str = "curated") -> AppendResult:
    """Append new effect rows (and, optionally, their bibliography entries) to the studies.

    ``new`` is a CSV file with the codebook's header (any column order) or a DataFrame. The new rows
    are validated together with the existing ones (so duplicates of existing es_ids or effects
    are refused); only when there is no error are they appended to ``effects.csv`` through a temporary
    file and ``os.replace``, in the existing file's column order. The rows already there are
    never rewritten: the file's bytes stay as they are and the new rows follow. ``bib`` is a
    BibTeX file whose entries are appended to ``references.bib`` the same way (its keys must be
    new). Raises :class:`StudiesValidationError` (nothing written) if there is any error.
    ``provenance`` is the level of new rows whose ``provenance`` cell is empty (see
    :func:`validate_studies`); rows taken as external are written with ``provenance = external``.
    """
    csv_path, bib_path = _paths(path)
    old, old_bib = _read(csv_path), _read(bib_path)
    if isinstance(new, pd.DataFrame):
        new_raw, new_file = _csv_bytes(new), "<new rows>"
    else:
        new_raw, new_file = _read(Path(new)), str(new)
    bibs = [(old_bib, str(bib_path))]
    if bib is not None:
        bibs.append((_read(Path(bib)), str(bib)))
    report, rows, _, headers = _validate([(old, str(csv_path), "curated"), (new_raw, new_file, provenance)],
                                         bibs)
    problems = list(report.problems)
    new_rows = [r for r in rows if r.file == new_file]
    if not new_rows and new_raw is not None:
        problems.append(Problem(new_file, 0, "", "no rows to add"))
    old_header, new_header = headers
    stray = [h for h in new_header if h not in old_header and any(r.cells.get(h) for r in new_rows)]
    problems += [Problem(new_file, 1, h, f"column not in {csv_path}; cannot append it") for h in stray]
    report = ValidationReport(tuple(problems), report.files, report.n_rows)
    if not report.ok:
        raise StudiesValidationError(report, "append_rows")
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    for r in new_rows:
        w.writerow([r.cells.get(h, "") for h in old_header])
    added_keys: tuple[str, ...] = ()
    if bib is not None:
        extra = bibs[1][0]
        added_keys = tuple(_parse_bib(extra, str(bib))[0])
        _atomic_write(bib_path, _appended(old_bib, b"\n" + extra))
    _atomic_write(csv_path, _appended(old, buf.getvalue().encode("utf-8")))
    return AppendResult(tuple(r.cells["es_id"] for r in new_rows), added_keys, report)

