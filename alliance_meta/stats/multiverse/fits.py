"""The fits of one chunk of row sets: batched univariate fits, the three-level model, CR2
inference and the bias adjustments, written into result arrays indexed (dependency, method,
test, bias)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import special

from .. import bias as _bias
from .. import engine
from ..escalc import aggregate
from ..rma import _fit_batch, _het, random_effects
from ..rma_mv import three_level
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
             uni: dict[str, dict], want: dict[str, set]) -> None:
    """Every specification of one row set, given its batched univariate fits (``uni``);
    ``want`` maps each dependency handling to the bias adjustments that are specifications on
    these rows (the rest is not fitted).

    Nothing raised here may end the chunk: an unexpected error marks the specifications of its
    dependency handling that are not fitted yet as not estimable, with the error as reason.
    """
    for dep, biases in want.items():
        try:
            if dep == "three-level":
                _three_level_cell(cell, y, v, codes, design, biases)
            else:
                _univariate_cell(cell, dep, y, v, codes, design, uni[dep], biases)
        except Exception as e:  # noqa: BLE001 - recorded, the other specifications go on
            ix = cell.ix(dep)
            todo = (cell.text["status"][ix] != OK) & (cell.text["reason"][ix] == "")
            cell.text["reason"][ix] = np.where(todo, f"unexpected error: {_reason(e)}",
                                               cell.text["reason"][ix])


def _univariate_cell(cell: _Cell, dep: str, y, v, codes, design: _Design, data: dict,
                     biases: set) -> None:
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
        if "none" in biases:
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
        if "trim-and-fill" in biases:
            if dep == "robust":
                cell.fail(cell.ix(dep, method, None, "trim-and-fill"),
                          "trim_and_fill: not defined for dependent effects with cluster-robust "
                          "inference; use dependency 'aggregate' or 'first'")
            else:
                _trim_fill_cell(cell, dep, method, yd, vd, design)
        if "PET-PEESE" in biases:
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


def _three_level_cell(cell: _Cell, y, v, codes, design: _Design, biases: set) -> None:
    dep = "three-level"
    k = y.size
    cell.num["k"][cell.ix(dep)] = k
    for method in design.method:
        if method not in ("REML", "ML"):  # not specifications (grid.model_reason)
            continue
        ixm = cell.ix(dep, method)
        try:
            tl = three_level(y, v, codes, method=method, test="z", level=design.level)
        except Exception as e:  # noqa: BLE001 - recorded as the reason
            cell.fail(ixm, _reason(e))
            continue
        cell.num["tau2"][ixm] = tl.sigma2_between + tl.sigma2_within
        cell.num["I2"][ixm] = tl.I2_between + tl.I2_within
        b, se = float(tl.coef[0]), float(tl.se[0])
        if "none" in biases:
            for test in design.test:
                p, lb, ub = _inference(b, se, test, k - 1, design.level)
                cell.put(cell.ix(dep, method, test, "none"), k, b, se, float(p), float(lb),
                         float(ub))
        if "trim-and-fill" in biases:
            try:
                _bias.trim_and_fill(tl)
                why = "trim_and_fill: not defined for a three-level model"
            except Exception as e:  # noqa: BLE001 - its message is the reason
                why = _reason(e)
            cell.fail(cell.ix(dep, method, None, "trim-and-fill"), why)
        if "PET-PEESE" in biases:
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


def _run_chunk(payload: _Payload, chunk: list[tuple[int, np.ndarray, np.ndarray]],
               design: _Design) -> list[tuple[int, dict]]:
    """Fit every specification of the row sets in ``chunk`` (row-set id, row indices, and the
    (dependency, bias) pairs that are specifications there); returns (row-set id, arrays)."""
    with _single_blas_thread(), np.errstate(all="ignore"):
        cells: list[_Cell] = []
        prepared: list[dict[str, dict]] = []
        jobs: list[tuple[int, str, np.ndarray, np.ndarray]] = []
        wants: list[dict[str, set]] = []
        for pos, (_, idx, todo) in enumerate(chunk):
            y, v, c = payload.y[idx], payload.v[idx], payload.codes[idx]
            cells.append(_Cell(design, idx.size, np.unique(c).size))
            want = {dep: {b for b, ok in zip(design.bias, todo[d], strict=True) if ok}
                    for d, dep in enumerate(design.dependency) if todo[d].any()}
            wants.append(want)
            prep: dict[str, dict] = {}
            for dep in want:
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
        for pos, (rid, idx, _) in enumerate(chunk):
            y, v, c = payload.y[idx], payload.v[idx], payload.codes[idx]
            _analyse(cells[pos], y, v, c, design, prepared[pos], wants[pos])
            out.append((rid, {**cells[pos].num, **cells[pos].text}))
        return out

