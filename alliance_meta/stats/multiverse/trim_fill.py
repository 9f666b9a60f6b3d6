"""Trim-and-fill of every specification of a chunk, in rounds of stacked fits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bias import trimfill as _trimfill
from . import ragged as _ragged
from .cells import _Cell, _Design, _inference, _reason


@dataclass
class _TrimFill:
    """One trim-and-fill specification cell (row set, dependency, estimator) and its state in
    the chunk's rounds (:func:`_trim_fill_all`)."""

    cell: _Cell
    dep: str
    method: str
    y: np.ndarray
    v: np.ndarray
    tau2: float  # of the fitted model
    side: str | None  # from the PET regression when the grid fitted it
    mu: float  # the fitted model's estimate: the first round's centre
    k0: int = 0
    ys: np.ndarray | None = None
    vs: np.ndarray | None = None
    sign: float = 1.0

    def fail(self, reason: str) -> None:
        self.cell.fail(self.cell.ix(self.dep, self.method, None, "trim-and-fill"), reason)


def _ragged_tau2(group: list[_TrimFill], ys: list, vs: list, method: str
                 ) -> tuple[list[_TrimFill], _ragged.Stack, np.ndarray]:
    """tau^2 of the data sets (ys, vs) of ``group`` in one stacked batch; the tasks whose fit
    failed are marked and dropped."""
    st = _ragged.Stack(ys, vs)
    t2, errs = _ragged.tau2(st, method)
    for t, e in zip(group, errs, strict=True):
        if e is not None:
            t.fail(_reason(e))
    keep = [j for j, e in enumerate(errs) if e is None]
    if len(keep) < len(group):
        st = _ragged.Stack([ys[j] for j in keep], [vs[j] for j in keep])
        t2 = t2[keep]
    return [group[j] for j in keep], st, t2


def _trim_fill_all(tasks: list[_TrimFill], design: _Design, maxiter: int = 100) -> None:
    """Trim-and-fill (L0, as :func:`bias.trim_and_fill` of each fit) of every task of a chunk,
    in rounds: each round's centres (the pooled estimates of the untrimmed effects) of all
    tasks in one stacked fit per estimator (:mod:`.ragged`). The number of missing studies does
    not depend on the test (side and centre are estimated with z, as in trim_and_fill), nor
    does tau^2 of the filled data: one weighted fit serves every test."""
    live: list[_TrimFill] = []
    for t in tasks:
        k = t.y.size
        try:
            if k < 3:
                raise ValueError(f"trim_and_fill: needs at least 3 effect sizes, got k = {k}")
            if t.side is None:
                t.side = _trimfill.egger_side(t.y, t.v, t.method)
        except Exception as e:  # noqa: BLE001 - recorded as the reason
            t.fail(_reason(e))
            continue
        t.sign = 1.0 if t.side == "left" else -1.0  # missing studies on the left
        yy = t.sign * t.y
        o = np.argsort(yy, kind="stable")
        t.ys, t.vs, t.mu = yy[o], t.v[o], t.sign * t.mu
        live.append(t)
    done: list[_TrimFill] = []
    active = live
    for rnd in range(1, maxiter + 1):
        need: list[_TrimFill] = []
        for t in active:
            try:
                new = _trimfill._k0_step(t.ys, t.mu, "L0")
            except Exception as e:  # noqa: BLE001 - recorded as the reason
                t.fail(_reason(e))
                continue
            k = t.ys.size
            if new == t.k0:
                done.append(t)
            elif new >= k - 1:
                t.fail(f"trim_and_fill: the estimated number of missing studies ({new}) "
                       f"leaves too few studies to estimate the centre; the method cannot run "
                       f"here")
            elif rnd == maxiter:
                t.fail(f"trim_and_fill: k0 did not settle in {maxiter} iterations")
            else:
                t.k0 = new
                need.append(t)
        if not need:
            break
        active = []
        for method in dict.fromkeys(t.method for t in need):
            group = [t for t in need if t.method == method]
            group, st, t2 = _ragged_tau2(group, [t.ys[: t.ys.size - t.k0] for t in group],
                                         [t.vs[: t.ys.size - t.k0] for t in group], method)
            if group:
                mu = st.wls(t2)[0]
                for t, m in zip(group, mu, strict=True):
                    t.mu = float(m)
                active += group
    # the filled data: tau^2 re-estimated where effects were imputed, then one weighted fit
    fills = {}
    for t in done:
        fy = t.sign * (2.0 * t.mu - t.ys[t.ys.size - t.k0:])
        fills[id(t)] = (np.r_[t.y, fy], np.r_[t.v, t.vs[t.ys.size - t.k0:]])
    tau2 = {id(t): (0.0 if t.method == "FE" else t.tau2) for t in done if t.k0 == 0}
    filled = [t for t in done if t.k0 > 0]
    for method in dict.fromkeys(t.method for t in filled):
        group = [t for t in filled if t.method == method]
        group, _, t2 = _ragged_tau2(group, [fills[id(t)][0] for t in group],
                                    [fills[id(t)][1] for t in group], method)
        tau2.update({id(t): float(x) for t, x in zip(group, t2, strict=True)})
    done = [t for t in done if id(t) in tau2]
    if not done:
        return
    st = _ragged.Stack([fills[id(t)][0] for t in done], [fills[id(t)][1] for t in done])
    mu, var, Q = st.wls(np.array([tau2[id(t)] for t in done]))
    for j, t in enumerate(done):
        kf = int(st.k[j])
        adj = f"k0 = {t.k0} ({t.side})"
        b = float(mu[j])
        for test in design.test:
            # Knapp-Hartung scales the variance by Q / (k + k0 - 1) (as rma._fit_batch)
            se = float(np.sqrt(var[j] if test == "z" else var[j] * (Q[j] / (kf - 1))))
            p, lb, ub = _inference(b, se, test, kf - 1, design.level)
            t.cell.put(t.cell.ix(t.dep, t.method, test, "trim-and-fill"), t.y.size, b, se,
                       float(p), float(lb), float(ub), adj)
