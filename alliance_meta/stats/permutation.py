"""Permutation test of a meta-regression (metafor's ``permutest``).

Higgins & Thompson (2004), Stat Med 23:1663-1682, doi:10.1002/sim.1752; Viechtbauer, Lopez-Lopez,
Sanchez-Meca & Marin-Martinez (2015), Psychol Methods 20:360-374, doi:10.1037/met0000023.
p = (1 + #{permuted >= observed}) / (1 + n_perm) (Phipson & Smyth 2010, Stat Appl Genet Mol Biol
9:39, doi:10.2202/1544-6115.1585).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import inference
from .results import df_html
from .rma import MetaRegressionResult, _fit_batch, qm_coefficients

__all__ = ["PermutationResult", "permutation_test"]


@dataclass(frozen=True, repr=False)
class PermutationResult:
    """Permutation p-values of a meta-regression: ``QM_p`` for the omnibus test and ``pval`` for
    each coefficient (two-sided, on |z| or |t|); ``zval`` are the observed statistics."""

    QM: float
    QM_p: float
    coef_names: tuple
    zval: np.ndarray
    pval: np.ndarray
    n_perm: int
    seed: int | None

    def summary(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"term": list(self.coef_names), "zval": self.zval, "pval_perm": self.pval}
        )

    def __repr__(self) -> str:
        return f"<PermutationResult {self.n_perm} permutations: QM p = {self.QM_p:.4f}>"

    def _repr_html_(self) -> str:
        head = f"<b>Permutation test</b> ({self.n_perm} permutations): QM p = {self.QM_p:.4f}"
        return f"<div>{head}{df_html(self.summary())}</div>"


def permutation_test(
    reg: MetaRegressionResult, n_perm: int = 1000, seed: int | None = 0, batch: int = 1000
) -> PermutationResult:
    """Permutation test of a meta-regression: rows of the moderator matrix are shuffled against
    (yi, vi) and every permuted model is refitted with the same estimator and test.

    Speed: shuffling the rows of X against (yi, vi) gives the same model as shuffling (yi, vi)
    by the inverse permutation against the unchanged X, so all permutations share ONE design
    and are fitted as one batch of ``batch`` (B, k) problems with a (1, k, p) design (the
    engine forms X'WX for all of them as one matrix product). The permutations drawn, and so
    the p-values, are those of shuffling X.
    """
    if not isinstance(reg, MetaRegressionResult):
        raise TypeError("permutation_test needs a MetaRegressionResult")
    btt = qm_coefficients(reg.coef_names)
    if reg.intercept and reg.p < 2:
        raise ValueError("permutation_test: the model has no moderators to permute")
    rng = np.random.default_rng(seed)
    y, v, X = reg.yi, reg.vi, reg.X
    k, p = X.shape
    X1 = X[None]
    t_test = inference.uses_t(reg.test)
    QM_all, Z_all = [], []
    done = 0
    while done < n_perm:
        nb = min(batch, n_perm - done)
        idx = np.argsort(rng.random((nb, k)), axis=1)  # row i of the fit takes X[idx[b, i]]
        inv = np.empty_like(idx)
        np.put_along_axis(inv, idx, np.arange(k)[None, :].repeat(nb, 0), axis=1)
        f = _fit_batch(y[inv], v[inv], X1, reg.method, reg.test, need_het=False)
        se = np.sqrt(np.einsum("bii->bi", f.vb))
        Z_all.append(f.beta / se)
        sub = f.vb[:, btt][:, :, btt]
        bb = f.beta[:, btt]
        qm = np.einsum("bi,bi->b", bb, np.linalg.solve(sub, bb[..., None])[..., 0])
        QM_all.append(qm / btt.size if t_test else qm)
        done += nb
    QM_perm = np.concatenate(QM_all)
    Z = np.concatenate(Z_all)
    tol = 1e-10 * max(1.0, abs(reg.QM))
    QM_p = (1 + np.sum(QM_perm >= reg.QM - tol)) / (1 + n_perm)
    zobs = np.atleast_1d(reg.statistic)
    pv = (1 + np.sum(np.abs(Z) >= np.abs(zobs) - 1e-10, axis=0)) / (1 + n_perm)
    return PermutationResult(
        QM=reg.QM, QM_p=float(QM_p), coef_names=reg.coef_names, zval=zobs, pval=pv,
        n_perm=n_perm, seed=seed,
    )
