"""Sensitivity analyses: leave-one-out, influence diagnostics, Baujat plot data and cumulative
meta-analysis.

Each function takes a fitted model and returns a tidy DataFrame with one row per study (or per
sample for a three-level model), with metafor's names (Viechtbauer 2010, J Stat Softw 36(3),
doi:10.18637/jss.v036.i03) and dots as underscores. The first column, ``study``, holds the
study labels of the fit when it has them, else the 1-based position of the study in the data.

Speed: the k leave-one-out refits are one batch of k problems for the batched engine
(:mod:`alliance_meta._fit`), not a Python loop, so k = 300 takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import special

from . import inference
from .rma import MetaRegressionResult, RandomEffectsResult, _fit_batch, _het
from .rma_mv import ThreeLevelResult, three_level

__all__ = ["leave_one_out", "influence", "baujat", "cumulative"]


def _labels(res, k: int) -> list:
    lab = tuple(getattr(res, "labels", ()) or ())
    return list(lab) if len(lab) == k else list(range(1, k + 1))


def _loo_index(k: int) -> np.ndarray:
    """(k, k - 1) row indices: row i lists every study but i."""
    base = np.arange(k - 1)
    return base[None, :] + (base[None, :] >= np.arange(k)[:, None])


def _add_r(df: pd.DataFrame, measure: str) -> pd.DataFrame:
    if measure == "ZCOR":
        df["r"] = np.tanh(df["estimate"])
        df["r_ci_lb"] = np.tanh(df["ci_lb"])
        df["r_ci_ub"] = np.tanh(df["ci_ub"])
    return df


def _model_arrays(res, who: str):
    if isinstance(res, RandomEffectsResult):
        return res.yi, res.vi, np.ones((res.k, 1)), ("intrcpt",)
    if isinstance(res, MetaRegressionResult):
        return res.yi, res.vi, res.X, res.coef_names
    raise TypeError(f"{who}: needs a RandomEffectsResult or MetaRegressionResult, got "
                    f"{type(res).__name__}")


def _loo_fits(y, v, X, method, test):
    k = y.size
    idx = _loo_index(k)
    return _fit_batch(y[idx], v[idx], X[idx], method, test)


# ---------------------------------------------------------------------------------------------


def leave_one_out(res) -> pd.DataFrame:
    """Leave-one-out analysis, as metafor's ``leave1out(res)``: the model refitted k times, each
    time without one study, with the same tau^2 estimator and test.

    Columns: ``study``, ``estimate``, ``se``, ``zval`` (a t value with k - 2 df under
    Knapp-Hartung), ``pval``, ``ci_lb``, ``ci_ub``, ``QE``, ``QE_p``, ``tau2``, ``I2``, ``H2``
    (and ``r``, ``r_ci_lb``, ``r_ci_ub`` for Fisher's z). The k refits are one batch.

    For a :class:`ThreeLevelResult` (without moderators), one *sample* (cluster) at a time is
    left out and the three-level model refitted: columns ``study`` (the sample), ``k`` (effects
    left), ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``QE``, ``QE_p``,
    ``sigma2_between``, ``sigma2_within``. (metafor's ``leave1out`` refuses ``rma.mv`` models;
    the equivalent is a loop of ``rma.mv`` fits on ``subset = sample != s``.)

    Viechtbauer & Cheung (2010), Res Synth Methods 1:112-125, doi:10.1002/jrsm.11.
    """
    who = "leave_one_out"
    if isinstance(res, ThreeLevelResult):
        return _leave_one_sample_out(res)
    if isinstance(res, MetaRegressionResult):
        raise ValueError(f"{who}: only applicable to models without moderators (use influence "
                         f"for a meta-regression)")
    if not isinstance(res, RandomEffectsResult):
        raise TypeError(f"{who}: needs a fitted model, got {type(res).__name__}")
    k = res.k
    if k < 3:
        raise ValueError(f"{who}: needs at least 3 effect sizes, got k = {k}")
    X = np.ones((k, 1))
    f = _loo_fits(res.yi, res.vi, X, res.method, res.test)
    b = f.beta[:, 0]
    se = np.sqrt(f.vb[:, 0, 0])
    dfs = float(k - 2) if inference.uses_t(res.test) else float("inf")
    crit = inference.crit(res.level, dfs)
    z = b / se
    I2, H2 = _het(f.tau2, f.QE, f.trP_fe, k - 1, 1, res.method)
    out = pd.DataFrame({
        "study": _labels(res, k), "estimate": b, "se": se, "zval": z,
        "pval": inference.pvalue(z, dfs), "ci_lb": b - crit * se, "ci_ub": b + crit * se,
        "QE": f.QE, "QE_p": inference.chi2_sf(f.QE, k - 2), "tau2": f.tau2, "I2": I2, "H2": H2,
    })
    return _add_r(out, res.measure)


def _leave_one_sample_out(res: ThreeLevelResult) -> pd.DataFrame:
    who = "leave_one_out"
    if res.X.shape[1] > 1:
        raise ValueError(f"{who}: only applicable to three-level models without moderators")
    cl = pd.Series(list(res.cluster))
    codes, uniq = pd.factorize(cl, sort=False)
    if uniq.size < 3:
        raise ValueError(f"{who}: needs at least 3 samples to leave one out, got {uniq.size}")
    rows = []
    for j, lab in enumerate(uniq):
        keep = codes != j
        if keep.sum() < 3:
            raise ValueError(f"{who}: leaving out sample {lab!r} leaves fewer than 3 effects")
        f = three_level(res.yi[keep], res.vi[keep], res.cluster[keep], method=res.method,
                        test=res.test, level=res.level, measure=res.measure,
                        dfs=res.dfs_method or "residual",
                        sigma2_init=(res.sigma2_between, res.sigma2_within))
        rows.append({
            "study": lab, "k": int(keep.sum()), "estimate": f.estimate, "se": f.se,
            "zval": f.zval, "pval": f.pval, "ci_lb": f.ci_lb, "ci_ub": f.ci_ub,
            "QE": f.QE, "QE_p": f.QE_p,
            "sigma2_between": f.sigma2_between, "sigma2_within": f.sigma2_within,
        })
    return _add_r(pd.DataFrame(rows), res.measure)


# ---------------------------------------------------------------------------------------------


def _full_and_deleted(res, who):
    y, v, X, names = _model_arrays(res, who)
    k, p = X.shape
    if k - p < 2:
        raise ValueError(f"{who}: k = {k} effect sizes are too few for leave-one-out fits of "
                         f"{p} coefficients")
    full = _fit_batch(y[None], v[None], X[None], res.method, res.test)
    dele = _loo_fits(y, v, X, res.method, res.test)
    b = full.beta[0]
    tau2 = float(full.tau2[0])
    w = 1.0 / (v + tau2)
    Ainv = np.linalg.inv((X * w[:, None]).T @ X)
    hat = w * np.einsum("ij,jk,ik->i", X, Ainv, X)
    pred = X @ b
    pred_del = np.einsum("ij,ij->i", X, dele.beta)
    vpred_del = np.einsum("ij,ijk,ik->i", X, dele.vb, X)
    return y, v, X, names, full, dele, b, tau2, w, hat, pred, pred_del, vpred_del


def influence(res) -> pd.DataFrame:
    """Outlier and influence diagnostics, as metafor's ``influence(res)``
    (Viechtbauer & Cheung 2010, Res Synth Methods 1:112-125, doi:10.1002/jrsm.11; Belsley, Kuh
    & Welsch 1980; Cook & Weisberg 1982). For a random-effects model or a meta-regression.

    With b, vb, tau2, W = diag(1/(vi + tau2)) from the full fit and b_(-i), vb_(-i), tau2_(-i)
    from the fit without study i (same estimator and test; all k refits in one batch):

    - ``rstudent``: (yi - xi'b_(-i)) / sqrt(s2_(-i) (vi + tau2_(-i)) + xi' vb_(-i) xi)
    - ``dffits``: (xi'b - xi'b_(-i)) / sqrt(s2_(-i) hat_i (tau2_(-i) + vi))
    - ``cooks``: (b - b_(-i))' vb^-1 (b - b_(-i)) (metafor's ``cook.d``)
    - ``cov_r``: det(vb_(-i)) / det(vb)
    - ``tau2_del``, ``QE_del``: tau^2 and the Q statistic without study i
    - ``hat``: diagonal of X (X'WX)^-1 X'W; ``weight``: 100 w_i / sum(w)
    - ``dfbetas_<coef>``: (b - b_(-i)) / sqrt(diag((X' W_(-i) X)^-1)), one column per
      coefficient, with W_(-i) = diag(1/(vj + tau2_(-i))) over all k studies, times s2_(-i)
      (metafor's scaling). s2_(-i) is the Knapp-Hartung scale of the deleted fit (1 under z).
    - ``inf``: True when |dffits| > 3 sqrt(p / (k - p)), or the chi-square(p) CDF at ``cooks``
      exceeds .5, or hat > 3 p / k, or any |dfbetas| > 1 (metafor's rule).

    The columns ``estimate``, ``se``, ``pval``, ``ci_lb``, ``ci_ub`` and ``I2`` give the first
    coefficient (the pooled effect of a model without moderators) of each leave-one-out fit.
    """
    who = "influence"
    (y, v, X, names, full, dele, b, tau2, w, hat, pred, pred_del,
     vpred_del) = _full_and_deleted(res, who)
    k, p = X.shape
    vb = full.vb[0]
    s2w = dele.s2w  # Knapp-Hartung scale of each deleted fit (1 under z)
    rstudent = (y - pred_del) / np.sqrt(s2w * (v + dele.tau2) + vpred_del)
    dffits = (pred - pred_del) / np.sqrt(s2w * hat * (dele.tau2 + v))
    diff = b[None, :] - dele.beta
    cooks = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(vb), diff)
    cov_r = np.linalg.det(dele.vb) / np.linalg.det(vb)
    # DFBETAS scale: (X' W_(-i) X)^-1 over all k studies with W_(-i) = diag(1/(vj + tau2_(-i)))
    Wdel = 1.0 / (v[None, :] + dele.tau2[:, None])
    vb_dfb = np.linalg.inv(np.einsum("jp,jq,ij->ipq", X, X, Wdel)) * s2w[:, None, None]
    dfbetas = diff / np.sqrt(np.einsum("ijj->ij", vb_dfb))
    inf = ((np.abs(dffits) > 3 * np.sqrt(p / (k - p)))
           | (special.chdtr(p, cooks) > 0.5)
           | (hat > 3 * p / k)
           | (np.abs(dfbetas) > 1).any(axis=1))
    dfs = float(k - p - 1) if inference.uses_t(res.test) else float("inf")
    crit = inference.crit(res.level, dfs)
    est = dele.beta[:, 0]
    se = np.sqrt(dele.vb[:, 0, 0])
    I2, _ = _het(dele.tau2, dele.QE, dele.trP_fe, k - 1, p, res.method)
    out = pd.DataFrame({
        "study": _labels(res, k), "estimate": est, "se": se,
        "pval": inference.pvalue(est / se, dfs), "ci_lb": est - crit * se,
        "ci_ub": est + crit * se, "I2": I2, "rstudent": rstudent, "dffits": dffits,
        "cooks": cooks, "cov_r": cov_r, "tau2_del": dele.tau2, "QE_del": dele.QE, "hat": hat,
        "weight": 100 * w / w.sum(),
    })
    for j, nm in enumerate(names):
        out[f"dfbetas_{nm}"] = dfbetas[:, j]
    out["inf"] = inf
    return out


def baujat(res) -> pd.DataFrame:
    """Coordinates of the Baujat plot, as metafor's ``baujat(res)``.

    Baujat, Mahe, Pignon & Hill (2002), Stat Med 21:2641-2652, doi:10.1002/sim.1221, generalised
    to random-effects models and meta-regressions as in Viechtbauer (2021, Handbook of
    meta-analysis, CRC, doi:10.1201/9781315119403): ``x`` is the study's contribution to the
    heterogeneity statistic, its squared Pearson residual (yi - xi'b)^2 / (vi + tau2); ``y`` is
    its influence on the fit, (xi'b - xi'b_(-i))^2 / (xi' vb_(-i) xi), from the refit without
    study i. For a common-effect model these are Baujat's original w_i (yi - theta)^2 and
    (theta - theta_(-i))^2 / var(theta_(-i)). Columns ``study``, ``x``, ``y``.
    """
    (y, v, X, names, full, dele, b, tau2, w, hat, pred, pred_del,
     vpred_del) = _full_and_deleted(res, "baujat")
    return pd.DataFrame({
        "study": _labels(res, y.size), "x": (y - pred) ** 2 / (v + tau2),
        "y": (pred - pred_del) ** 2 / vpred_del,
    })


def cumulative(res, order: Sequence | None = None) -> pd.DataFrame:
    """Cumulative meta-analysis, as metafor's ``cumul(res, order=)`` (Lau, Schmid & Chalmers
    1995, J Clin Epidemiol 48:45-57, doi:10.1016/0895-4356(94)00106-Z): studies are added one at
    a time, sorted by ``order`` (a sort key of length k, e.g. publication year; a stable sort, so
    ties keep the data order; ``None`` keeps the data order), and the model is refitted with the
    same estimator and test after each addition. With one study, the estimate is that study's
    effect with tau2 = 0 and QE = 0 (as metafor).

    Columns: ``order`` (1..k), ``study`` (the label of the study added), ``k`` (studies so far),
    ``estimate``, ``se``, ``zval``, ``pval``, ``ci_lb``, ``ci_ub``, ``QE``, ``QE_p``, ``tau2``,
    ``I2``, ``H2`` (and r columns for Fisher's z).
    """
    who = "cumulative"
    if isinstance(res, MetaRegressionResult):
        raise ValueError(f"{who}: only applicable to models without moderators")
    if not isinstance(res, RandomEffectsResult):
        raise TypeError(f"{who}: needs a RandomEffectsResult, got {type(res).__name__}")
    k = res.k
    if order is None:
        o = np.arange(k)
    else:
        key = pd.Series(list(order))
        if key.size != k:
            raise ValueError(f"{who}: order has {key.size} values but the model has k = {k}")
        if key.isna().any():
            raise ValueError(f"{who}: order has missing values at positions "
                             f"{np.flatnonzero(key.isna())[:10].tolist()}")
        o = np.argsort(key.to_numpy(), kind="stable")
    y, v = res.yi[o], res.vi[o]
    labels = _labels(res, k)
    rows = []
    for j in range(1, k + 1):
        X = np.ones((1, j, 1))
        dfs = float(j - 1) if inference.uses_t(res.test) else float("inf")
        if j == 1:
            b, se, t2, Q = y[0], np.sqrt(v[0]), 0.0, 0.0
            if inference.uses_t(res.test):
                se = np.nan
            I2, H2, Qp = 0.0, 1.0, 1.0
        else:
            f = _fit_batch(y[None, :j], v[None, :j], X, res.method, res.test)
            b, se, t2, Q = f.beta[0, 0], np.sqrt(f.vb[0, 0, 0]), f.tau2[0], f.QE[0]
            I2a, H2a = _het(f.tau2, f.QE, f.trP_fe, j, 1, res.method)
            I2, H2, Qp = float(I2a[0]), float(H2a[0]), inference.chi2_sf(Q, j - 1)
        crit = inference.crit(res.level, dfs) if dfs > 0 else np.nan
        z = b / se
        rows.append({
            "order": j, "study": labels[o[j - 1]], "k": j, "estimate": b, "se": se, "zval": z,
            "pval": inference.pvalue(z, dfs) if dfs > 0 else np.nan,
            "ci_lb": b - crit * se, "ci_ub": b + crit * se, "QE": Q, "QE_p": Qp, "tau2": t2,
            "I2": I2, "H2": H2,
        })
    return _add_r(pd.DataFrame(rows), res.measure)
