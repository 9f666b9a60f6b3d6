"""Subgroup analysis: separate random-effects fits per subgroup and the test of their differences.

The one subgroup fitter of the package: figures (forest plots by subgroup) and the workflow
tables reuse :func:`subgroup_analysis` rather than refitting.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .results import df_html, fmt
from .rma import check_yi_vi, random_effects

__all__ = ["SubgroupResult", "subgroup_analysis"]


@dataclass(frozen=True, repr=False)
class SubgroupResult:
    """Separate random-effects fits per subgroup and the test of subgroup differences.

    ``groups`` maps each subgroup to its :class:`~alliance_meta.stats.rma.RandomEffectsResult`.
    ``Q_between`` (metafor's QM of a common-effect model on the subgroup estimates) has
    ``df_between`` = groups - 1 degrees of freedom (Borenstein et al. 2009, ch. 19).
    """

    groups: dict
    Q_between: float
    df_between: int
    Q_between_p: float
    moderator: str
    measure: str

    def summary(self) -> pd.DataFrame:
        """One row per subgroup (the random-effects summary columns), subgroup first."""
        rows = []
        for g, res in self.groups.items():
            s = res.summary()
            s.insert(0, "subgroup", g)
            rows.append(s)
        return pd.concat(rows, ignore_index=True)

    def __repr__(self) -> str:
        return (
            f"<SubgroupResult by {self.moderator}: {len(self.groups)} groups, Q_between = "
            f"{self.Q_between:.3f} (df = {self.df_between}, p = {self.Q_between_p:.3g})>"
        )

    def _repr_html_(self) -> str:
        head = (
            f"<b>Subgroups by {html.escape(self.moderator)}</b>: Q<sub>between</sub> = "
            f"{self.Q_between:.3f} (df = {self.df_between}, p = {fmt(self.Q_between_p)})"
        )
        return f"<div>{head}{df_html(self.summary())}</div>"


def subgroup_analysis(
    yi, vi, groups, method: str = "REML", test: str = "z", level: float = 0.95,
    measure: str = "ZCOR", min_k: int = 2, moderator: str = "group",
) -> SubgroupResult:
    """Random-effects model per subgroup (separate tau^2) and Q-between test of the subgroup
    estimates (Borenstein, Hedges, Higgins & Rothstein 2009, Introduction to Meta-Analysis,
    Wiley, doi:10.1002/9780470743386, ch. 19, "separate estimates of tau^2").

    Subgroups with fewer than ``min_k`` effects are left out of the test; the result says so
    through the group list.
    """
    y, v = check_yi_vi(yi, vi, "subgroup_analysis")
    g = pd.Series(list(groups)).astype(str).to_numpy()
    if g.size != y.size:
        raise ValueError(f"subgroup_analysis: groups has {g.size} values but yi has {y.size}")
    fits = {}
    for lev in pd.unique(g):
        m = g == lev
        if m.sum() >= min_k:
            fits[lev] = random_effects(y[m], v[m], method, test, level, measure)
    if len(fits) < 2:
        raise ValueError("subgroup_analysis: needs at least two subgroups with enough effects")
    est = np.array([r.estimate for r in fits.values()])
    se = np.array([r.se for r in fits.values()])
    ce = random_effects(est, se**2, method="FE", measure="GEN")
    return SubgroupResult(
        groups=fits, Q_between=ce.Q, df_between=len(fits) - 1, Q_between_p=ce.Q_p,
        moderator=moderator, measure=measure,
    )
