"""The result of a multiverse: the table, summaries and the decomposition of the estimate."""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..rma import _df_html
from .grid import OK

# ---------------------------------------------------------------------------------------------
# the result


def _sig_class(t: pd.DataFrame, alpha: float) -> np.ndarray:
    """+1 significant positive, -1 significant negative, 0 not significant."""
    sig = t["pval"].to_numpy() < alpha
    return np.where(sig, np.sign(t["estimate"].to_numpy()), 0).astype(int)


@dataclass(frozen=True, repr=False)
class MultiverseResult:
    """Every specification of a multiverse, fitted: ``table`` (one row per specification; see
    :func:`multiverse`), the ``factors`` and their levels, and how it was computed."""

    table: pd.DataFrame
    factors: dict
    level: float
    seed: int
    rho: float
    scheduler: str
    n_chunks: int
    n_rowsets: int
    #: the combinations of the factors' levels that are not specifications, with the reason
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: row sets read from ``multiverse(cache=...)`` instead of fitted
    n_cached: int = 0

    @property
    def estimable(self) -> pd.DataFrame:
        """The rows with ``status == "ok"``."""
        return self.table[self.table["status"] == OK]

    @property
    def varying(self) -> list[str]:
        """The factors with more than one level."""
        return [n for n, lv in self.factors.items() if len(lv) > 1]

    def summary(self, by: str | None = None) -> pd.DataFrame:
        """Share of estimable specifications significant and positive / negative (p below
        1 - level), median r and its range; one row, or one per level of factor ``by``."""
        alpha = 1 - self.level
        if by is not None and by not in self.factors:
            raise ValueError(f"MultiverseResult.summary: unknown factor {by!r}; use one of "
                             f"{list(self.factors)}")

        def row(t: pd.DataFrame) -> dict:
            ok = t[t["status"] == OK]
            cls = _sig_class(ok, alpha)
            n = len(ok)
            r = ok["r"].to_numpy()
            return {
                "n_specs": len(t), "n_estimable": n, "n_not_estimable": len(t) - n,
                "median_r": float(np.median(r)) if n else np.nan,
                "min_r": float(r.min()) if n else np.nan,
                "max_r": float(r.max()) if n else np.nan,
                "share_sig_positive": float((cls > 0).mean()) if n else np.nan,
                "share_sig_negative": float((cls < 0).mean()) if n else np.nan,
                "share_not_sig": float((cls == 0).mean()) if n else np.nan,
            }

        if by is None:
            return pd.DataFrame([row(self.table)])
        rows = []
        for lv in self.factors[by]:
            sel = self.table[by] == (lv if by == "min_n" else str(lv))
            rows.append({"factor": by, "level": str(lv), **row(self.table[sel])})
        return pd.DataFrame(rows)

    def decompose(self, value: str = "r") -> pd.DataFrame:
        """Which choices move the estimate most: an ANOVA-style decomposition of ``value`` over
        the estimable specifications.

        Per factor with more than one level: ``eta2`` (between-level sum of squares over the
        total, a one-way analysis), ``unique`` (the drop in explained sum of squares when the
        factor is removed from the main-effects least-squares model, over the total),
        ``partial_eta2`` (that drop over itself plus the residual), ``range`` (largest minus
        smallest level mean) and the levels with the lowest and highest mean. The last row,
        ``interactions/residual``, is 1 minus the main-effects model's R^2. In a balanced grid
        (every specification estimable) the main effects are orthogonal, so the factors' eta2
        and the residual sum to 1.
        """
        ok = self.estimable
        if value not in ok.columns:
            raise ValueError(f"MultiverseResult.decompose: unknown column {value!r}")
        yv = ok[value].to_numpy(dtype=float)
        if yv.size < 2:
            raise ValueError("MultiverseResult.decompose: needs at least two estimable "
                             "specifications")
        sst = float(((yv - yv.mean()) ** 2).sum())
        facs = [n for n in self.factors if ok[n].nunique() > 1]

        # each factor's treatment-coded columns, built once for the full and the drop-one fits
        coded = {n: pd.get_dummies(ok[n].astype(str), drop_first=True, dtype=float).to_numpy()
                 for n in facs}

        def dummies(names):
            return np.column_stack([np.ones(yv.size), *(coded[n] for n in names)])

        def ss_model(names) -> float:
            X = dummies(names)
            beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
            fit = X @ beta
            return float(((fit - yv.mean()) ** 2).sum())

        full = ss_model(facs) if facs else 0.0
        rows = []
        for n in facs:
            g = ok.groupby(ok[n].astype(str), sort=False)[value]
            means, counts = g.mean(), g.size()
            ssb = float((counts * (means - yv.mean()) ** 2).sum())
            # the drop in explained SS is >= 0; clip the round-off of nested least squares
            uniq = max(full - ss_model([f for f in facs if f != n]), 0.0)
            resid = max(sst - full, 0.0)
            spread = float(means.max() - means.min())
            rows.append({
                "factor": n, "n_levels": int(ok[n].nunique()),
                "eta2": ssb / sst if sst > 0 else np.nan,
                "unique": uniq / sst if sst > 0 else np.nan,
                "partial_eta2": uniq / (uniq + resid) if uniq + resid > 0 else np.nan,
                "range": spread,
                "lowest": str(means.idxmin()) if spread > 0 else "",
                "highest": str(means.idxmax()) if spread > 0 else "",
            })
        rows.sort(key=lambda r: -np.nan_to_num(r["eta2"]))
        res = max(sst - full, 0.0) / sst if sst > 0 else np.nan
        rows.append({"factor": "interactions/residual", "n_levels": np.nan, "eta2": res,
                     "unique": res, "partial_eta2": np.nan, "range": np.nan, "lowest": "",
                     "highest": ""})
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        s = self.summary().iloc[0]
        return (f"<MultiverseResult {int(s['n_specs'])} specifications ({int(s['n_estimable'])}"
                f" estimable) over {len(self.varying)} factors: median r = {s['median_r']:.3f} "
                f"[{s['min_r']:.3f}, {s['max_r']:.3f}], {100 * s['share_sig_positive']:.0f}% "
                f"significant positive>")

    def _repr_html_(self) -> str:
        s = self.summary()
        head = (f"<b>Multiverse</b>: {int(s['n_specs'][0])} specifications, "
                f"{int(s['n_estimable'][0])} estimable; factors: "
                + ", ".join(f"{html.escape(n)} ({len(lv)})" for n, lv in self.factors.items()))
        dec = ""
        if s["n_estimable"][0] >= 2:
            dec = "<br><i>Which choices move r most</i>" + _df_html(self.decompose())
        return f"<div>{head}{_df_html(s)}{dec}</div>"
