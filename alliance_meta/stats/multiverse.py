"""Multiverse and specification-curve analysis: every defensible analytic choice at once.

A pooled alliance-outcome correlation depends on choices: which effects are included, how
dependent effects of one sample are handled, the tau^2 estimator, the test, and the
publication-bias adjustment. :func:`multiverse` crosses the levels of every factor
(``itertools.product``), fits every specification with the package's estimators, and returns
one tidy row per specification. Specifications that cannot be fitted (too few effects, a method
that does not apply, a failed fit) are kept, with ``status = "not estimable"`` and the reason.

References
----------
Steegen, S., Tuerlinckx, F., Gelman, A., & Vanpaemel, W. (2016). Increasing transparency through
    a multiverse analysis. Perspectives on Psychological Science, 11(5), 702-712.
    doi:10.1177/1745691616658637
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis. Nature Human
    Behaviour, 4(11), 1208-1214. doi:10.1038/s41562-020-0912-z
Voracek, M., Kossmeier, M., & Tran, U. S. (2019). Which data to meta-analyze, and how? A
    specification-curve and multiverse-analysis approach to meta-analysis. Zeitschrift fuer
    Psychologie, 227(1), 64-82. doi:10.1027/2151-2604/a000357

The factors
-----------
Model choices:

- ``method``: the tau^2 estimator (DL, HE, HS, SJ, ML, REML, EB, PM, or FE for the common-effect
  model; papers in :mod:`alliance_meta.models`).
- ``test``: ``"z"`` or ``"knha"``. For random effects, Wald z or Knapp & Hartung (2003, Stat Med
  22:2693-2710, doi:10.1002/sim.1482). For the three-level model, ``"knha"`` means t tests with
  k - 1 df (metafor's ``rma.mv(test="t")``, the small-sample option it offers there). For CR2
  robust inference, ``"knha"`` means t tests with Satterthwaite df (clubSandwich's default) and
  ``"z"`` the normal reference distribution with the same CR2 standard error.
- ``dependency``: how several effects of one sample are handled. ``"three-level"``: effects in
  samples (:func:`~alliance_meta.multilevel.three_level`; REML or ML only). ``"aggregate"``: one
  composite per sample with an assumed correlation ``rho`` (Borenstein et al. 2009, ch. 24;
  :func:`~alliance_meta.effects.aggregate`). ``"robust"``: random effects on all effects with CR2
  cluster-robust inference by sample (Tipton 2015, Psychol Methods 20:375-393,
  doi:10.1037/met0000011; :func:`~alliance_meta.robust.robust`). ``"first"``: the first effect of
  each sample in file order.
- ``bias``: ``"none"``; ``"trim-and-fill"`` (Duval & Tweedie 2000,
  :func:`~alliance_meta.bias.trim_and_fill`; defined for independent effects, so for
  ``"aggregate"`` and ``"first"``); ``"PET-PEESE"`` (Stanley & Doucouliagos 2014, Res Synth Methods
  5:60-78, doi:10.1002/jrsm.1095): the random-effects meta-regressions of the effects on their
  standard error (PET) and on their sampling variance (PEESE) with the specification's estimator
  and test, PEESE's intercept when PET's is positive at one-sided alpha = .05, else PET's (as
  :func:`~alliance_meta.bias.pet_peese` with ``model="rma"``); under ``"robust"`` with CR2
  inference; under ``"three-level"`` the three-level regressions with CR2 inference of
  :func:`~alliance_meta.bias.pet_peese` (Rodgers & Pustejovsky 2021, Psychol Methods
  26:141-160, doi:10.1037/met0000300).

Inclusion filters (``"all"`` keeps every row): ``min_n`` (keep effects with n >= the level),
``r_kind``, ``rater`` (column ``alliance_rater``), ``timing`` (``alliance_timing``),
``publication`` (``publication_type``), ``modality``; any other column of the data can be a
filter factor too (rows equal to the level are kept).

Execution
---------
Specifications sharing the same rows are fitted together: the rows are filtered once, each
dependency handling is prepared once, and the univariate fits of all row sets of a chunk that
have the same number of effects are batched through the core's vectorised engine
(:mod:`alliance_meta._fit`), one call per estimator; the tests reuse each tau^2. Row sets are cut
into chunks of ``chunk_size`` in a fixed order, and the same chunks run locally (one after the
other, or in ``n_jobs`` processes) or on a Dask cluster (``scheduler=``), so the tables are
identical wherever they are computed.
"""

from __future__ import annotations

import contextlib
import html
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from . import bias as _bias
from . import engine
from .escalc import aggregate
from .rma import TAU2_METHODS, _df_html, _fit_batch, _het, random_effects
from .rma_mv import three_level

__all__ = [
    "MultiverseResult",
    "multiverse",
    "default_factors",
    "METHODS",
    "TESTS",
    "DEPENDENCIES",
    "BIAS_ADJUSTMENTS",
    "FILTER_COLUMNS",
]

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
}
MODEL_FACTORS = ("dependency", "method", "test", "bias")
#: The level a factor is held at when ``factors`` does not list it.
FIXED_LEVELS: dict[str, Any] = {
    "method": "REML", "test": "z", "dependency": "three-level", "bias": "none", "min_n": 0,
    "r_kind": "all", "rater": "all", "timing": "all", "publication": "all", "modality": "all",
}
_CANONICAL = ("method", "test", "dependency", "min_n", "r_kind", "rater", "timing",
              "publication", "modality", "bias")
NUM_COLS = ("k", "n_samples", "estimate", "se", "ci_lb", "ci_ub", "pval", "tau2", "I2")
TEXT_COLS = ("adjustment", "status", "reason")
OK = "ok"
NOT_ESTIMABLE = "not estimable"


def _present(data: pd.DataFrame, name: str) -> list[str]:
    """Levels of a filter factor that occur in ``data`` (sorted; used when no vocabulary is given)."""
    col = FILTER_COLUMNS.get(name, name)
    return sorted(set(pd.Series(data[col]).dropna().astype(str))) if col in data else []


def default_factors(data: pd.DataFrame, vocabularies: Mapping[str, Sequence] | None = None
                    ) -> dict[str, list]:
    """The default grid: tau^2 estimator, test, dependency handling, inclusion filters (minimum
    n, zero-order r only, alliance rater, timing, journal articles only, each modality present
    in ``data``) and bias adjustment. ``vocabularies`` (data column -> allowed values, e.g. the
    codebook's) only orders the modality levels; without it they are sorted."""
    present = _present(data, "modality")
    order = list((vocabularies or {}).get(FILTER_COLUMNS["modality"], ()))
    mods = [m for m in order if m in present] + [m for m in present if m not in order]
    return {
        "method": list(METHODS),
        "test": list(TESTS),
        "dependency": list(DEPENDENCIES),
        "min_n": [0, 50, 100],
        "r_kind": ["all", "zero-order"],
        "rater": ["all", *[lv for lv in ("client", "therapist", "observer")
                           if lv in _present(data, "rater")]],
        "timing": ["all", *[lv for lv in ("early", "late") if lv in _present(data, "timing")]],
        "publication": ["all", "journal"],
        "modality": ["all", *mods],
        "bias": list(BIAS_ADJUSTMENTS),
    }


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
        else:
            col = FILTER_COLUMNS.get(name, name)
            if col not in data.columns:
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
    for name in out:
        if name not in MODEL_FACTORS and FILTER_COLUMNS.get(name, name) not in data.columns:
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
    if isinstance(level, str) and level == "all":
        return np.ones(len(data), dtype=bool)
    s = data[col]
    return (s.astype(str).to_numpy() == str(level)) & s.notna().to_numpy()


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


def _inference(est, se, test: str, df, level: float):
    """Two-sided p-value and CI bounds; ``test`` "z" uses the normal, else t with ``df``."""
    est, se = np.asarray(est, float), np.asarray(se, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = est / se
    q = 1 - (1 - level) / 2
    if test == "z":
        p = 2 * special.ndtr(-np.abs(stat))
        crit = special.ndtri(q)
    else:
        df = np.asarray(df, float)
        p = 2 * special.stdtr(df, -np.abs(stat))
        crit = special.stdtrit(df, q)
    return p, est - crit * se, est + crit * se


def _one_sided_greater(est, se, test: str, df) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.asarray(est, float) / np.asarray(se, float)
    return special.ndtr(-stat) if test == "z" else special.stdtr(np.asarray(df, float), -stat)


def _tau2_batch(Y, V, X, method: str) -> tuple[np.ndarray, list[str]]:
    """tau^2 for a batch; if the batch fails (one fit not converging), fit one by one so that
    only the failing fits are lost. Returns tau2 (NaN where failed) and the reasons."""
    B = Y.shape[0]
    if method == "FE":
        return np.zeros(B), [""] * B
    try:
        return engine.tau2_estimate(Y, V, X, method), [""] * B
    except Exception as e:  # noqa: BLE001 - isolate the failing fits below
        if B == 1:
            return np.full(1, np.nan), [f"{method}: {_reason(e)}"]
    out, why = np.full(B, np.nan), [""] * B
    for b in range(B):
        t, w = _tau2_batch(Y[b : b + 1], V[b : b + 1], X[b : b + 1], method)
        out[b], why[b] = t[0], w[0]
    return out, why


@dataclass
class _UniFit:
    """A univariate random-effects fit (one dataset, one estimator), per test."""

    tau2: float
    I2: float
    est: dict = field(default_factory=dict)  # test -> (estimate, se, pval, ci_lb, ci_ub)


def _uni_fits(datasets: list[tuple[np.ndarray, np.ndarray]], design: _Design
              ) -> list[dict[str, _UniFit | str]]:
    """Random-effects fits of every dataset for every estimator and test, batched over datasets
    of equal size. Returns per dataset a dict method -> _UniFit (or the reason it failed)."""
    out: list[dict[str, _UniFit | str]] = [{} for _ in datasets]
    by_k: dict[int, list[int]] = {}
    for i, (y, _) in enumerate(datasets):
        by_k.setdefault(y.size, []).append(i)
    for k, members in by_k.items():
        Y = np.stack([datasets[i][0] for i in members])
        V = np.stack([datasets[i][1] for i in members])
        X = np.ones((len(members), k, 1))
        for method in design.method:
            t2, why = _tau2_batch(Y, V, X, method)
            good = np.flatnonzero(np.isfinite(t2))
            for j in np.flatnonzero(~np.isfinite(t2)):
                out[members[j]][method] = why[j] or f"{method}: tau2 could not be estimated"
            if good.size == 0:
                continue
            Yg, Vg, Xg, tg = Y[good], V[good], X[good], t2[good]
            try:
                fits = {test: _fit_batch(Yg, Vg, Xg, method, test, tau2=tg)
                        for test in design.test}
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                for j in good:
                    out[members[j]][method] = f"{method}: {_reason(e)}"
                continue
            f0 = fits[design.test[0]]
            I2, _ = _het(f0.tau2, f0.QE, f0.trP_fe, k, 1, method)
            for jj, j in enumerate(good):
                uf = _UniFit(tau2=float(tg[jj]), I2=float(I2[jj]))
                for test, f in fits.items():
                    b = float(f.beta[jj, 0])
                    se = float(np.sqrt(f.vb[jj, 0, 0]))
                    p, lb, ub = _inference(b, se, test, k - 1, design.level)
                    uf.est[test] = (b, se, float(p), float(lb), float(ub))
                out[members[j]][method] = uf
    return out


def _cr2_intercept(y: np.ndarray, v: np.ndarray, X: np.ndarray, tau2: np.ndarray,
                   codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CR2 cluster-robust SE and Satterthwaite df of the first coefficient, for a batch of B
    random-effects (meta-)regressions on the same effects with diagonal working covariance
    diag(v + tau2_b) and designs X[b].

    The same estimator as :func:`alliance_meta.robust.robust` (Bell & McCaffrey 2002;
    Pustejovsky & Tipton 2018, J Bus Econ Stat 36:672-683, doi:10.1080/07350015.2016.1247004),
    vectorised over the batch and over clusters of equal size. Returns beta0, se0, df0.
    """
    B, k, p = X.shape
    d = v[None, :] + tau2[:, None]
    w = 1.0 / d
    XtWX = np.einsum("bki,bk,bkj->bij", X, w, X)
    M = np.linalg.inv(XtWX)
    beta = np.einsum("bij,bj->bi", M, np.einsum("bki,bk->bi", X, w * y[None, :]))
    e = y[None, :] - np.einsum("bki,bi->bk", X, beta)
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    sizes = np.diff(np.r_[starts, k])
    meat = np.zeros((B, p, p))
    s_d = np.zeros(B)
    s_d2 = np.zeros(B)
    s_bmb = np.zeros(B)
    s_dbmb = np.zeros(B)
    btb = np.zeros((B, p, p))
    for s in np.unique(sizes):
        idx = order[starts[sizes == s][:, None] + np.arange(s)[None, :]]  # (m, s)
        ds = d[:, idx]  # (B, m, s)
        Xs = X[:, idx, :]  # (B, m, s, p)
        es = e[:, idx]
        R = -np.einsum("bmip,bpq,bmjq->bmij", Xs, M, Xs)
        R += ds[..., :, None] * np.eye(s)
        sq = np.sqrt(ds)
        G = sq[..., :, None] * R * sq[..., None, :]
        lam, Q = np.linalg.eigh(G)
        tol = 1e-12 * np.maximum(1.0, np.abs(lam).max(axis=-1, keepdims=True))
        inv = np.where(lam > tol, 1.0 / np.sqrt(np.where(lam > tol, lam, 1.0)), 0.0)
        Gi = np.einsum("...ij,...j,...kj->...ik", Q, inv, Q)
        A = sq[..., :, None] * Gi * sq[..., None, :]
        WX = Xs / ds[..., None]
        u = np.einsum("bmsp,bmst,bmt->bmp", WX, A, es)
        meat += np.einsum("bmp,bmq->bpq", u, u)
        a = np.einsum("bmts,bmtp,bp->bms", A, WX, M[:, :, 0])  # a_j for coefficient 0
        dq = np.einsum("bms,bms,bms->bm", a, ds, a)
        bq = np.einsum("bmsp,bms->bmp", Xs, a)  # X_j' a_j
        bmb = np.einsum("bmi,bij,bmj->bm", bq, M, bq)
        s_d += dq.sum(1)
        s_d2 += (dq**2).sum(1)
        s_bmb += bmb.sum(1)
        s_dbmb += (dq * bmb).sum(1)
        btb += np.einsum("bmi,bmj->bij", bq, bq)
    V = np.einsum("bij,bjk,bkl->bil", M, meat, M)
    se = np.sqrt(V[:, 0, 0])
    MBB = np.matmul(M, btb)
    trace = s_d - s_bmb
    frob = s_d2 - 2 * s_dbmb + np.einsum("bij,bji->b", MBB, MBB)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = trace**2 / frob
    return beta[:, 0], se, df


def _pet_peese_rows(y, v, method: str, design: _Design, codes=None) -> dict:
    """PET-PEESE with random-effects meta-regressions (estimator ``method``), per test; with
    ``codes``, CR2 inference by cluster. Returns test -> (est, se, pval, lb, ub, chosen)."""
    k = y.size
    if k < 3:
        raise ValueError(f"PET-PEESE: needs at least 3 effect sizes, got k = {k}")
    X = np.stack([np.column_stack([np.ones(k), np.sqrt(v)]), np.column_stack([np.ones(k), v])])
    Y, V = np.broadcast_to(y, (2, k)), np.broadcast_to(v, (2, k))
    t2, why = _tau2_batch(Y, V, X, method)
    if not np.isfinite(t2).all():
        raise ValueError(f"PET-PEESE: {why[0] or why[1]}")
    out = {}
    if codes is not None:
        b0, se0, df0 = _cr2_intercept(y, v, X, t2, codes)
    for test in design.test:
        if codes is None:
            f = _fit_batch(Y, V, X, method, test, tau2=t2)
            b0, se0 = f.beta[:, 0], np.sqrt(f.vb[:, 0, 0])
            df0 = np.full(2, k - 2.0)
        p1 = _one_sided_greater(b0[0], se0[0], test, df0[0])
        c = 1 if p1 < 0.05 else 0
        p, lb, ub = _inference(b0[c], se0[c], test, df0[c], design.level)
        out[test] = (float(b0[c]), float(se0[c]), float(p), float(lb), float(ub),
                     "PEESE" if c else "PET")
    return out


def _analyse(cell: _Cell, y: np.ndarray, v: np.ndarray, codes: np.ndarray, design: _Design,
             uni: dict[str, dict]) -> None:
    """Every specification of one row set, given its batched univariate fits (``uni``).

    Nothing raised here may end the chunk: an unexpected error marks the specifications of its
    dependency handling that are not fitted yet as not estimable, with the error as reason.
    """
    for dep in design.dependency:
        try:
            if dep == "three-level":
                _three_level_cell(cell, y, v, codes, design)
            else:
                _univariate_cell(cell, dep, y, v, codes, design, uni[dep])
        except Exception as e:  # noqa: BLE001 - recorded, the other specifications go on
            ix = cell.ix(dep)
            todo = (cell.text["status"][ix] != OK) & (cell.text["reason"][ix] == "")
            cell.text["reason"][ix] = np.where(todo, f"unexpected error: {_reason(e)}",
                                               cell.text["reason"][ix])


def _univariate_cell(cell: _Cell, dep: str, y, v, codes, design: _Design, data: dict) -> None:
    """aggregate, first (random effects on one effect per sample) and robust (random effects
    on all effects, CR2 by sample)."""
    lev = design.level
    yd, vd = (y, v) if dep == "robust" else (data["y"], data["v"])
    k = yd.size
    cell.num["k"][cell.ix(dep)] = k
    if k < 2:
        cell.fail(cell.ix(dep), f"random_effects: needs at least 2 effect sizes, got k = {k}"
                  + (" (one per sample)" if dep in ("aggregate", "first") else ""))
        return
    n_clusters = np.unique(codes).size
    for method in design.method:
        fit = data["fits"][method]
        ixm = cell.ix(dep, method)
        if isinstance(fit, str):
            cell.fail(ixm, fit)
            continue
        cell.num["tau2"][ixm] = fit.tau2
        cell.num["I2"][ixm] = fit.I2
        if "none" in design.bias:
            ixn = cell.ix(dep, method, None, "none")
            if dep != "robust":
                for test in design.test:
                    cell.put(cell.ix(dep, method, test, "none"), k, *fit.est[test])
            elif n_clusters < 2:
                cell.fail(ixn, "robust: needs at least two clusters")
            else:
                try:
                    b, se, df = _cr2_intercept(y, v, np.ones((1, k, 1)), np.array([fit.tau2]),
                                               codes)
                except Exception as e:  # noqa: BLE001 - recorded as the reason
                    cell.fail(ixn, f"robust: {_reason(e)}")
                else:
                    for test in design.test:
                        p, lb, ub = _inference(b[0], se[0], test, df[0], lev)
                        cell.put(cell.ix(dep, method, test, "none"), k, float(b[0]),
                                 float(se[0]), float(p), float(lb), float(ub))
        if "trim-and-fill" in design.bias:
            if dep == "robust":
                cell.fail(cell.ix(dep, method, None, "trim-and-fill"),
                          "trim_and_fill: not defined for dependent effects with cluster-robust "
                          "inference; use dependency 'aggregate' or 'first'")
            else:
                _trim_fill_cell(cell, dep, method, yd, vd, design)
        if "PET-PEESE" in design.bias:
            try:
                rows = _pet_peese_rows(yd, vd, method, design,
                                       codes if dep == "robust" else None)
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                cell.fail(cell.ix(dep, method, None, "PET-PEESE"), _reason(e))
            else:
                for test, (b, se, p, lb, ub, chosen) in rows.items():
                    cell.put(cell.ix(dep, method, test, "PET-PEESE"), k, b, se, p, lb, ub,
                             chosen)


def _trim_fill_cell(cell: _Cell, dep: str, method: str, yd, vd, design: _Design) -> None:
    ixb = cell.ix(dep, method, None, "trim-and-fill")
    try:
        base = random_effects(yd, vd, method=method, test="z", level=design.level)
        tf = _bias.trim_and_fill(base)
    except Exception as e:  # noqa: BLE001 - recorded as the reason
        cell.fail(ixb, _reason(e))
        return
    adj = f"k0 = {tf.k0} ({tf.side})"
    for test in design.test:
        ix = cell.ix(dep, method, test, "trim-and-fill")
        if test == "z":
            cell.put(ix, yd.size, tf.estimate, tf.se, tf.pval, tf.ci_lb, tf.ci_ub, adj)
            continue
        # the number of missing studies does not depend on the test (the side and the centre
        # are estimated with z, as in trim_and_fill); refit the filled data with this test
        try:
            full = random_effects(np.r_[yd, tf.filled_yi], np.r_[vd, tf.filled_vi],
                                  method=method, test=test, level=design.level)
        except Exception as e:  # noqa: BLE001
            cell.fail(ix, _reason(e))
            continue
        cell.put(ix, yd.size, full.estimate, full.se, full.pval, full.ci_lb, full.ci_ub, adj)


def _three_level_cell(cell: _Cell, y, v, codes, design: _Design) -> None:
    dep = "three-level"
    k = y.size
    cell.num["k"][cell.ix(dep)] = k
    for method in design.method:
        ixm = cell.ix(dep, method)
        try:
            tl = three_level(y, v, codes, method=method, test="z", level=design.level)
        except Exception as e:  # noqa: BLE001 - recorded as the reason
            cell.fail(ixm, _reason(e))
            continue
        cell.num["tau2"][ixm] = tl.sigma2_between + tl.sigma2_within
        cell.num["I2"][ixm] = tl.I2_between + tl.I2_within
        b, se = float(tl.coef[0]), float(tl.se[0])
        if "none" in design.bias:
            for test in design.test:
                p, lb, ub = _inference(b, se, test, k - 1, design.level)
                cell.put(cell.ix(dep, method, test, "none"), k, b, se, float(p), float(lb),
                         float(ub))
        if "trim-and-fill" in design.bias:
            try:
                _bias.trim_and_fill(tl)
                why = "trim_and_fill: not defined for a three-level model"
            except Exception as e:  # noqa: BLE001 - its message is the reason
                why = _reason(e)
            cell.fail(cell.ix(dep, method, None, "trim-and-fill"), why)
        if "PET-PEESE" in design.bias:
            try:
                pp = _bias.pet_peese(tl, level=design.level)
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                cell.fail(cell.ix(dep, method, None, "PET-PEESE"), _reason(e))
                continue
            for test in design.test:
                ix = cell.ix(dep, method, test, "PET-PEESE")
                if test == "z":  # the same CR2 standard errors, normal reference
                    p1 = _one_sided_greater(pp.pet_estimate, pp.pet_se, "z", None)
                    c = "PEESE" if p1 < 0.05 else "PET"
                    est = pp.peese_estimate if c == "PEESE" else pp.pet_estimate
                    se_c = pp.peese_se if c == "PEESE" else pp.pet_se
                    p, lb, ub = _inference(est, se_c, "z", None, design.level)
                    cell.put(ix, k, est, se_c, float(p), float(lb), float(ub), c)
                else:
                    cell.put(ix, k, pp.estimate, pp.se, pp.pval, pp.ci_lb, pp.ci_ub, pp.chosen)


def _run_chunk(payload: _Payload, chunk: list[tuple[int, np.ndarray]], design: _Design
               ) -> list[tuple[int, dict]]:
    """Fit every specification of the row sets in ``chunk``; returns (row-set id, arrays)."""
    with _single_blas_thread(), np.errstate(all="ignore"):
        cells: list[_Cell] = []
        prepared: list[dict[str, dict]] = []
        jobs: list[tuple[int, str, np.ndarray, np.ndarray]] = []
        for pos, (_, idx) in enumerate(chunk):
            y, v, c = payload.y[idx], payload.v[idx], payload.codes[idx]
            cells.append(_Cell(design, idx.size, np.unique(c).size))
            prep: dict[str, dict] = {}
            for dep in design.dependency:
                if dep == "aggregate":
                    a = aggregate(y, v, c, rho=design.rho)
                    prep[dep] = {"y": a["yi"].to_numpy(), "v": a["vi"].to_numpy()}
                elif dep == "first":
                    _, first = np.unique(c, return_index=True)
                    first.sort()
                    prep[dep] = {"y": y[first], "v": v[first]}
                elif dep == "robust":
                    prep[dep] = {"y": y, "v": v}
                else:
                    continue
                if prep[dep]["y"].size >= 2:
                    jobs.append((pos, dep, prep[dep]["y"], prep[dep]["v"]))
            prepared.append(prep)
        fits = _uni_fits([(j[2], j[3]) for j in jobs], design)
        for (pos, dep, _, _), f in zip(jobs, fits, strict=True):
            prepared[pos][dep]["fits"] = f
        out = []
        for pos, (rid, idx) in enumerate(chunk):
            y, v, c = payload.y[idx], payload.v[idx], payload.codes[idx]
            _analyse(cells[pos], y, v, c, design, prepared[pos])
            out.append((rid, {**cells[pos].num, **cells[pos].text}))
        return out


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
    except ImportError as e:  # pragma: no cover - dask is a dependency
        raise ValueError("multiverse: scheduler= needs dask.distributed installed") from e
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


def _assemble(factors: dict[str, tuple], rowset_of_combo: np.ndarray, n_rowsets: int,
              results: dict[int, dict], design: _Design) -> pd.DataFrame:
    names = list(factors)
    shape = tuple(len(factors[n]) for n in names)
    N = int(np.prod(shape))
    codes = np.unravel_index(np.arange(N), shape)
    table: dict[str, Any] = {"spec_id": np.arange(N)}
    for n, cd in zip(names, codes, strict=True):
        lv = factors[n]
        col = np.empty(len(lv), dtype=object)
        col[:] = list(lv)
        table[n] = col[cd]
    filt = [n for n in names if n not in MODEL_FACTORS]
    fshape = tuple(len(factors[n]) for n in filt)
    fcodes = tuple(codes[names.index(n)] for n in filt)
    rid = rowset_of_combo[np.ravel_multi_index(fcodes, fshape)] if filt else np.zeros(N, int)
    mc = tuple(codes[names.index(n)] for n in MODEL_FACTORS)
    full = {c: np.full((n_rowsets, *design.shape), np.nan) for c in NUM_COLS}
    full.update({c: np.full((n_rowsets, *design.shape), "", dtype=object) for c in TEXT_COLS})
    for r, arrays in results.items():
        for c in full:
            full[c][r] = arrays[c]
    for c in NUM_COLS:
        table[c] = full[c][(rid, *mc)]
    est, lb, ub = table["estimate"], table["ci_lb"], table["ci_ub"]
    cols = {**table}
    out = pd.DataFrame(cols)
    pos = out.columns.get_loc("ci_ub") + 1
    out.insert(pos, "r", np.tanh(est))
    out.insert(pos + 1, "r_ci_lb", np.tanh(lb))
    out.insert(pos + 2, "r_ci_ub", np.tanh(ub))
    for c in TEXT_COLS:
        out[c] = full[c][(rid, *mc)]
    for c in ("k", "n_samples"):
        out[c] = pd.array(np.where(np.isfinite(out[c]), out[c], np.nan)).astype("Int64")
    for n in names:
        if n == "min_n":
            out[n] = pd.to_numeric(out[n])
        else:
            out[n] = out[n].astype(str)
    return out


def multiverse(
    data: pd.DataFrame,
    factors: Mapping[str, Sequence] | None = None,
    scheduler=None,
    seed: int = 0,
    level: float = 0.95,
    *,
    rho: float = 0.5,
    chunk_size: int = 8,
    n_jobs: int = 1,
    vocabularies: Mapping[str, Sequence] | None = None,
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
    chunk_size : row sets per chunk (the unit of work sent to a process or Dask worker).
    n_jobs : local processes (1: in this process; -1: one per core).
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
        import os

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
    combo_rowset = []
    for combo in itertools.product(*(range(len(fac[n])) for n in filt)):
        m = np.ones(len(data), dtype=bool)
        for n, j in zip(filt, combo, strict=True):
            m &= masks[n][j]
        key = m.tobytes()
        if key not in ids:
            ids[key] = len(rowsets)
            rowsets.append(np.flatnonzero(m))
        combo_rowset.append(ids[key])
    results: dict[int, dict] = {}
    work = []
    for rid, idx in enumerate(rowsets):
        if idx.size == 0:
            cell = _Cell(design, 0, 0)
            cell.num["k"][...] = 0
            cell.fail((slice(None),) * 4, "no effects match the inclusion filters")
            results[rid] = {**cell.num, **cell.text}
        else:
            work.append((rid, idx))
    chunks = [work[i : i + chunk_size] for i in range(0, len(work), chunk_size)]
    where = "local"
    if scheduler is None:
        parts = _run_local(payload, chunks, design, int(n_jobs))
    else:
        parts, where = _run_dask(scheduler, payload, chunks, design)
    for part in parts:
        for rid, arrays in part:
            results[rid] = arrays
    table = _assemble(fac, np.asarray(combo_rowset, dtype=np.int64), len(rowsets), results,
                      design)
    return MultiverseResult(
        table=table, factors={n: list(lv) for n, lv in fac.items()}, level=float(level),
        seed=seed, rho=float(rho), scheduler=where, n_chunks=len(chunks),
        n_rowsets=len(rowsets),
    )


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

        def dummies(names):
            cols = [np.ones(yv.size)]
            for n in names:
                d = pd.get_dummies(ok[n].astype(str), drop_first=True, dtype=float)
                cols.extend(d.to_numpy().T)
            return np.column_stack(cols)

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
