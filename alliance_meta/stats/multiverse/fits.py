"""The fits of one chunk of row sets: batched univariate fits, the three-level model, CR2
inference and the bias adjustments, written into result arrays indexed (dependency, method,
test, bias)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import engine
from ..cr2 import cr2, cr2_intercept
from ..escalc import aggregate
from ..rma_mv import _Blocks, _Problem, three_level
from . import batch3l
from . import ragged as _ragged
from .cells import (
    _Cell,
    _Design,
    _inference,
    _one_sided_greater,
    _Payload,
    _reason,
    _single_blas_thread,
)
from .grid import OK
from .trim_fill import _trim_fill_all, _TrimFill


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
    """Random-effects fits of every dataset for every estimator and test, as rma._fit_batch
    (z, and Knapp-Hartung's variance scaled by Q / (k - 1)) and rma._het (I^2 with the typical
    sampling variance (k - 1) / tr(P) of the common-effect fit), all datasets of the chunk
    stacked in one fit per estimator (:mod:`.ragged`). Returns per dataset a dict method ->
    _UniFit (or the reason it failed)."""
    out: list[dict[str, _UniFit | str]] = [{} for _ in datasets]
    if not datasets:
        return out
    st = _ragged.Stack([d[0] for d in datasets], [d[1] for d in datasets])
    k = st.k
    w = 1.0 / st.v
    sw = st.S(w)
    trP_fe = sw - st.S(w * w) / sw
    QE = st.wls(np.zeros(k.size))[2]
    for method in design.method:
        t2, errs = _ragged.tau2(st, method)
        ok = np.isfinite(t2)
        mu, var, Q = st.wls(np.where(ok, t2, 0.0))
        if method == "FE":
            I2 = np.where(QE > 0, np.maximum(0.0, 100 * (QE - (k - 1)) / QE), 0.0)
        else:
            I2 = 100 * t2 / ((k - 1) / trP_fe + t2)
        for i in range(k.size):
            if errs[i] is not None or not ok[i]:
                out[i][method] = (f"{method}: {_reason(errs[i])}" if errs[i] is not None
                                  else f"{method}: tau2 could not be estimated")
                continue
            uf = _UniFit(tau2=float(t2[i]), I2=float(I2[i]))
            b = float(mu[i])
            for test in design.test:
                se = float(np.sqrt(var[i] if test == "z" else var[i] * (Q[i] / (k[i] - 1))))
                p, lb, ub = _inference(b, se, test, int(k[i]) - 1, design.level)
                uf.est[test] = (b, se, float(p), float(lb), float(ub))
            out[i][method] = uf
    return out


def _pp_designs(v: np.ndarray) -> np.ndarray:
    """The PET (sqrt(vi)) and PEESE (vi) designs, (2, k, 2) (Stanley & Doucouliagos 2014)."""
    one = np.ones(v.size)
    return np.stack([np.column_stack([one, np.sqrt(v)]), np.column_stack([one, v])])


def _choose(b0, se0, df0, test: str, level: float) -> tuple:
    """PET-PEESE's conditional estimate from the intercepts of PET (index 0) and PEESE (1):
    PEESE when PET's is positive at one-sided alpha = .05, else PET (as bias.pet_peese)."""
    p1 = _one_sided_greater(b0[0], se0[0], test, df0[0])
    c = 1 if p1 < 0.05 else 0
    p, lb, ub = _inference(b0[c], se0[c], test, df0[c], level)
    return (float(b0[c]), float(se0[c]), float(p), float(lb), float(ub),
            "PEESE" if c else "PET")


def _pet_peese_robust(y, v, methods: list[str], design: _Design, codes,
                      pre: dict | None = None) -> dict:
    """PET-PEESE with random-effects meta-regressions for every estimator in ``methods`` and
    CR2 inference by sample (Satterthwaite t). Returns method -> {test: (est, se, pval, lb,
    ub, chosen)} or the reason it failed. tau^2 is estimated per estimator (``pre``: method ->
    (tau2, reasons) of PET and PEESE from the chunk's stack); the CR2 kernel runs once for every
    estimator's PET and PEESE."""
    pre = pre or {}
    k = y.size
    X1 = _pp_designs(v)
    Y, V = np.broadcast_to(y, (2, k)), np.broadcast_to(v, (2, k))
    out: dict = {}
    good, taus = [], []
    for method in methods:
        t2, why = pre[method] if method in pre else _tau2_batch(Y, V, X1, method)
        if np.isfinite(t2).all():
            good.append(method)
            taus.append(t2)
        else:
            out[method] = f"PET-PEESE: {why[0] or why[1]}"
    if not good:
        return out
    b0, se0, df0 = cr2_intercept(y, v, np.concatenate([X1] * len(good)),
                                 np.concatenate(taus), codes)
    for j, meth in enumerate(good):
        sl = slice(2 * j, 2 * j + 2)
        out[meth] = {test: _choose(b0[sl], se0[sl], df0[sl], test, design.level)
                     for test in design.test}
    return out


def _pp_stack(datasets: list[tuple[np.ndarray, np.ndarray]]) -> _ragged.Stack2:
    """PET (x = sqrt(vi)) and PEESE (x = vi) regressions of each dataset, stacked in that
    order (Stanley & Doucouliagos 2014)."""
    ys, vs, xs = [], [], []
    for y, v in datasets:
        ys += [y, y]
        vs += [v, v]
        xs += [np.sqrt(v), v]
    return _ragged.Stack2(ys, vs, xs)


def _pp_tau2(st: _ragged.Stack2, method: str) -> tuple[np.ndarray, list[str]]:
    """tau^2 of the stacked PET and PEESE regressions, with "" or the reason per regression."""
    t2, errs = _ragged.tau2_reg(st, method)
    return t2, ["" if e is None else f"{method}: {_reason(e)}" for e in errs]


def _pet_peese_independent(datasets: list[tuple[np.ndarray, np.ndarray]], design: _Design
                           ) -> list[dict]:
    """PET-PEESE with random-effects meta-regressions (as :func:`bias.pet_peese` with
    ``model="rma"``) of independent effects, for every dataset, estimator and test: tau^2 per
    estimator in one stacked fit over the datasets (:mod:`.ragged`), the fits at those tau^2
    in one more (z; Knapp-Hartung scales the variance by Q / (k - 2), as rma._fit_batch).
    Returns per dataset method -> {test: (est, se, pval, lb, ub, chosen), "side": ...} or the
    reason it failed; ``side`` is where trim-and-fill assumes missing studies, from the sign
    of PET's slope (the Egger-type regression trim_and_fill reads)."""
    n = len(datasets)
    st = _pp_stack(datasets)
    out: list[dict] = [{} for _ in range(n)]
    rows, taus, who = [], [], []
    for method in design.method:
        t2, why = _pp_tau2(st, method)
        for i in range(n):
            if np.isfinite(t2[2 * i : 2 * i + 2]).all():
                rows += [2 * i, 2 * i + 1]
                taus += [t2[2 * i], t2[2 * i + 1]]
                who.append((i, method))
            else:
                out[i][method] = f"PET-PEESE: {why[2 * i] or why[2 * i + 1]}"
    if not who:
        return out
    sel = _ragged.Stack2([datasets[r // 2][0] for r in rows], [datasets[r // 2][1] for r in rows],
                         [np.sqrt(datasets[r // 2][1]) if r % 2 == 0 else datasets[r // 2][1]
                          for r in rows])
    f = sel.fit(np.asarray(taus))
    b0, var0 = f["beta"][:, 0], f["Ainv"][0]
    for test in design.test:
        s2w = 1.0 if test == "z" else f["Q"] / (sel.k - 2)
        se0 = np.sqrt(var0 * s2w)
        for j, (i, meth) in enumerate(who):
            sl = slice(2 * j, 2 * j + 2)
            d = out[i].setdefault(meth, {"side": "left" if f["beta"][2 * j, 1] >= 0
                                         else "right"})
            d[test] = _choose(b0[sl], se0[sl], (sel.k[sl] - 2.0).astype(float), test,
                              design.level)
    return out


def _three_level_pet_peese(y, v, codes, method: str, level: float,
                           theta: np.ndarray | None = None) -> tuple:
    """PET-PEESE with three-level meta-regressions and CR2 Satterthwaite t by sample, as
    :func:`alliance_meta.stats.bias.pet_peese` of a three-level fit (Rodgers & Pustejovsky
    2021, Psychol Methods 26:141-160, doi:10.1037/met0000300); both regressions' CR2 in one
    batch of the kernel, with the fitted marginal covariance as working model (as robust()).
    ``theta``: the two regressions' variance components (2, 2) when the chunk's batch fitted
    them (:func:`batch3l.prefit`)."""
    X = _pp_designs(v)
    if theta is None:
        # only the variance components are needed: the likelihood of three_level, maximised
        # the same way, without the result's extras
        bl = _Blocks(codes)
        o = bl.order
        theta = np.empty((2, 2))
        for j in range(2):
            theta[j], ok = _Problem(y[o], v[o], X[j][o], bl, method == "REML").fit(None)
            if not ok:
                raise engine.ConvergenceError("three_level: optimiser did not converge")
    s1 = theta[:, 0, None, None, None]
    s2 = theta[:, 1, None, None, None]

    def phi(idx: np.ndarray) -> np.ndarray:  # blocks of equal-size samples: (2, m_s, s, s)
        eye = np.eye(idx.shape[1])
        return (v[idx][None, :, :, None] + s2) * eye + s1

    ker = cr2(y, X, codes, phi)
    df0 = ker.satterthwaite([0])[:, 0]
    return _choose(ker.beta[:, 0], ker.se[:, 0], df0, "knha", level)


def _analyse(cell: _Cell, y: np.ndarray, v: np.ndarray, codes: np.ndarray, design: _Design,
             uni: dict[str, dict], want: dict[str, set], tl_pre: dict, tf_tasks: list
             ) -> None:
    """Every specification of one row set, given its batched univariate fits (``uni``);
    ``want`` maps each dependency handling to the bias adjustments that are specifications on
    these rows (the rest is not fitted). Trim-and-fill is queued on ``tf_tasks`` (fitted for
    the whole chunk by :func:`_trim_fill_all`).

    Nothing raised here may end the chunk: an unexpected error marks the specifications of its
    dependency handling that are not fitted yet as not estimable, with the error as reason.
    """
    for dep, biases in want.items():
        try:
            if dep == "three-level":
                _three_level_cell(cell, y, v, codes, design, biases, tl_pre)
            else:
                _univariate_cell(cell, dep, y, v, codes, design, uni[dep], biases, tf_tasks)
        except Exception as e:  # noqa: BLE001 - recorded, the other specifications go on
            ix = cell.ix(dep)
            todo = (cell.text["status"][ix] != OK) & (cell.text["reason"][ix] == "")
            cell.text["reason"][ix] = np.where(todo, f"unexpected error: {_reason(e)}",
                                               cell.text["reason"][ix])


def _univariate_cell(cell: _Cell, dep: str, y, v, codes, design: _Design, data: dict,
                     biases: set, tf_tasks: list) -> None:
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
    fitted = [m for m in design.method if not isinstance(data["fits"][m], str)]
    robust_none: dict = {}
    if dep == "robust" and "none" in biases and fitted:
        # the CR2 of every estimator's fit in one batch of the kernel
        try:
            if n_clusters < 2:
                raise ValueError("needs at least two clusters")
            tau2 = np.array([data["fits"][m].tau2 for m in fitted])
            b, se, df = cr2_intercept(y, v, np.ones((len(fitted), k, 1)), tau2, codes)
            robust_none = {m: (b[j], se[j], df[j]) for j, m in enumerate(fitted)}
        except Exception as e:  # noqa: BLE001 - recorded as the reason
            robust_none = {m: f"robust: {_reason(e)}" for m in fitted}
    pp: dict = data.get("pp", {})  # independent effects: batched over the chunk
    if "PET-PEESE" in biases and fitted and dep == "robust":
        try:
            pp = _pet_peese_robust(yd, vd, fitted, design, codes, data.get("pp_tau2"))
        except Exception as e:  # noqa: BLE001 - recorded as the reason
            pp = {m: _reason(e) for m in fitted}
    for method in design.method:
        fit = data["fits"][method]
        ixm = cell.ix(dep, method)
        if isinstance(fit, str):
            cell.fail(ixm, fit)
            continue
        cell.num["tau2"][ixm] = fit.tau2
        cell.num["I2"][ixm] = fit.I2
        if "none" in biases:
            if dep != "robust":
                for test in design.test:
                    cell.put(cell.ix(dep, method, test, "none"), k, *fit.est[test])
            elif isinstance(robust_none[method], str):
                cell.fail(cell.ix(dep, method, None, "none"), robust_none[method])
            else:
                b, se, df = robust_none[method]
                for test in design.test:
                    p, lb, ub = _inference(b, se, test, df, lev)
                    cell.put(cell.ix(dep, method, test, "none"), k, float(b), float(se),
                             float(p), float(lb), float(ub))
        if "trim-and-fill" in biases and dep != "robust":
            side = pp[method].get("side") if isinstance(pp.get(method), dict) else None
            tf_tasks.append(_TrimFill(cell, dep, method, yd, vd, fit.tau2, side,
                                      fit.est[design.test[0]][0]))
        if "PET-PEESE" in biases:
            rows = pp[method]
            if isinstance(rows, str):
                cell.fail(cell.ix(dep, method, None, "PET-PEESE"), rows)
                continue
            for test in design.test:
                cell.put(cell.ix(dep, method, test, "PET-PEESE"), k, *rows[test])


def _three_level_cell(cell: _Cell, y, v, codes, design: _Design, biases: set,
                      pre: dict) -> None:
    """The three-level model per estimator; ``pre`` holds the chunk's batched fits
    (:func:`batch3l.prefit`), else three_level fits it here."""
    dep = "three-level"
    k = y.size
    cell.num["k"][cell.ix(dep)] = k
    for method in design.method:
        if method not in ("REML", "ML"):  # not specifications (grid.model_reason)
            continue
        ixm = cell.ix(dep, method)
        got = pre.get(method)
        if got is not None:
            # as three_level: z inference from (X'V^-1X)^-1, I^2 per level with the typical
            # sampling variance (k - 1) / tr(P) of the common-effect weights
            theta = got["theta"]
            w = 1.0 / v
            trP = float(w.sum() - (w**2).sum() / w.sum())
            tot = theta.sum() + (k - 1) / trP
            tau2 = float(theta[0]) + float(theta[1])
            I2 = float(100 * theta[0] / tot) + float(100 * theta[1] / tot)
            b, se = got["beta"], float(np.sqrt(got["var"]))
        else:
            try:
                tl = three_level(y, v, codes, method=method, test="z", level=design.level)
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                cell.fail(ixm, _reason(e))
                continue
            tau2 = tl.sigma2_between + tl.sigma2_within
            I2 = tl.I2_between + tl.I2_within
            b, se = float(np.ravel(tl.coef)[0]), float(np.ravel(tl.se)[0])
        cell.num["tau2"][ixm] = tau2
        cell.num["I2"][ixm] = I2
        if "none" in biases:
            for test in design.test:
                p, lb, ub = _inference(b, se, test, k - 1, design.level)
                cell.put(cell.ix(dep, method, test, "none"), k, b, se, float(p), float(lb),
                         float(ub))
        if "PET-PEESE" in biases:
            try:
                row = _three_level_pet_peese(y, v, codes, method, design.level,
                                             None if got is None else got.get("pp"))
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                cell.fail(cell.ix(dep, method, None, "PET-PEESE"), _reason(e))
                continue
            # CR2 inference is read with Satterthwaite t only (grid.model_reason)
            if "knha" in design.test:
                cell.put(cell.ix(dep, method, "knha", "PET-PEESE"), k, *row)


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
        # PET-PEESE of independent effects: one stack over the chunk's row sets
        group = [(pos, dep, yd, vd) for pos, dep, yd, vd in jobs
                 if dep != "robust" and "PET-PEESE" in wants[pos][dep] and yd.size >= 3]
        if group:
            try:
                res = _pet_peese_independent([(g[2], g[3]) for g in group], design)
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                res = [dict.fromkeys(design.method, _reason(e)) for _ in group]
            for (pos, dep, _, _), r in zip(group, res, strict=True):
                prepared[pos][dep]["pp"] = r
        # tau^2 of the robust PET-PEESE regressions: one stack per estimator
        rob = [(pos, yd, vd) for pos, dep, yd, vd in jobs
               if dep == "robust" and "PET-PEESE" in wants[pos][dep] and yd.size >= 3]
        if rob:
            try:
                st = _pp_stack([(g[1], g[2]) for g in rob])
                for method in design.method:
                    t2, why = _pp_tau2(st, method)
                    for j, (pos, _, _) in enumerate(rob):
                        prepared[pos]["robust"].setdefault("pp_tau2", {})[method] = (
                            t2[2 * j : 2 * j + 2], why[2 * j : 2 * j + 2])
            except Exception:  # noqa: BLE001, S110 - then fitted per row set
                pass
        # the three-level fits of the chunk in one batch per estimator (and design width)
        tl_at = [pos for pos, w in enumerate(wants) if "three-level" in w]
        tl_pre: list[dict] = [{} for _ in chunk]
        try:
            got = batch3l.prefit(
                [(payload.y[chunk[pos][1]], payload.v[chunk[pos][1]],
                  payload.codes[chunk[pos][1]], "PET-PEESE" in wants[pos]["three-level"])
                 for pos in tl_at], design.method)
            for pos, g in zip(tl_at, got, strict=True):
                tl_pre[pos] = g
        except Exception:  # noqa: BLE001, S110 - each row set is then fitted by three_level
            pass
        tf_tasks: list[_TrimFill] = []
        for pos, (_, idx, _) in enumerate(chunk):
            y, v, c = payload.y[idx], payload.v[idx], payload.codes[idx]
            _analyse(cells[pos], y, v, c, design, prepared[pos], wants[pos], tl_pre[pos],
                     tf_tasks)
        try:
            _trim_fill_all(tf_tasks, design)
        except Exception as e:  # noqa: BLE001 - recorded, the other specifications stand
            for t in tf_tasks:
                ix = t.cell.ix(t.dep, t.method, None, "trim-and-fill")
                todo = (t.cell.text["status"][ix] != OK) & (t.cell.text["reason"][ix] == "")
                t.cell.text["reason"][ix] = np.where(todo, f"unexpected error: {_reason(e)}",
                                                     t.cell.text["reason"][ix])
        out = []
        for pos, (rid, _, _) in enumerate(chunk):
            out.append((rid, {**cells[pos].num, **cells[pos].text}))
        return out

