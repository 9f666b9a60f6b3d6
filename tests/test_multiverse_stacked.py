"""The multiverse's stacked fits equal the package's one-at-a-time fits.

Expected values: :func:`alliance_meta.stats.engine.tau2_estimate` / ``engine.wls`` (themselves
checked against metafor in test_vs_metafor_core.py) for :mod:`multiverse.ragged`, and rma_mv's
``_Problem.fit`` (the optimiser of ``three_level``, checked against metafor's rma.mv in
test_vs_metafor_mv.py) for :mod:`multiverse.batch3l`. Data: SYNTHETIC, drawn here.
"""

from __future__ import annotations

import numpy as np
import pytest

from alliance_meta.stats import engine
from alliance_meta.stats.multiverse import batch3l, ragged
from alliance_meta.stats.rma_mv import _Blocks, _Problem

# stacked and one-at-a-time iterations stop within the engine's tolerance (1e-12 relative)
RTOL = 1e-9


def _sets(seed: int, n: int = 25):
    rng = np.random.default_rng(seed)
    ys, vs = [], []
    for _ in range(n):
        k = int(rng.integers(3, 120))
        v = rng.uniform(0.003, 0.06, k)
        tau = rng.choice([0.0, 0.05, 0.25])
        ys.append(0.3 + rng.normal(0, tau, k) + rng.normal(0, np.sqrt(v)) + 2 * v)
        vs.append(v)
    return ys, vs


@pytest.mark.parametrize("method", ["DL", "SJ", "PM", "REML", "ML", "HE"])
def test_ragged_tau2_equals_the_engine(method):
    ys, vs = _sets(1)
    st = ragged.Stack(ys, vs)
    t2, errs = ragged.tau2(st, method)
    assert all(e is None for e in errs)
    ref = [engine.tau2_estimate(y[None], v[None], np.ones((1, y.size, 1)), method)[0]
           for y, v in zip(ys, vs, strict=True)]
    np.testing.assert_allclose(t2, ref, rtol=RTOL, atol=1e-14)
    mu, var, Q = st.wls(t2)
    for j, (y, v) in enumerate(zip(ys, vs, strict=True)):
        f = engine.wls(y[None], v[None], np.ones((1, y.size, 1)), t2[j : j + 1])
        np.testing.assert_allclose([mu[j], var[j], Q[j]],
                                   [f.beta[0, 0], f.Ainv[0, 0, 0], f.Q[0]], rtol=RTOL)


@pytest.mark.parametrize("method", ["DL", "SJ", "PM", "REML", "ML", "HE"])
def test_ragged_pet_peese_regressions_equal_the_engine(method):
    ys, vs = _sets(2)
    xs = [np.sqrt(v) if j % 2 else v for j, v in enumerate(vs)]
    st = ragged.Stack2(ys, vs, xs)
    t2, errs = ragged.tau2_reg(st, method)
    assert all(e is None for e in errs)
    Xs = [np.column_stack([np.ones(x.size), x])[None] for x in xs]
    ref = [engine.tau2_estimate(y[None], v[None], X, method)[0]
           for y, v, X in zip(ys, vs, Xs, strict=True)]
    np.testing.assert_allclose(t2, ref, rtol=RTOL, atol=1e-14)
    f = st.fit(t2)
    for j, (y, v, X) in enumerate(zip(ys, vs, Xs, strict=True)):
        g = engine.wls(y[None], v[None], X, t2[j : j + 1])
        np.testing.assert_allclose(f["beta"][j, 0], g.beta[0, 0], rtol=RTOL)
        np.testing.assert_allclose(f["Ainv"][0][j], g.Ainv[0, 0, 0], rtol=RTOL)
        np.testing.assert_allclose(f["Q"][j], g.Q[0], rtol=RTOL)


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_batched_three_level_fits_equal_rma_mv(method, width):
    rng = np.random.default_rng(3 + width)
    sets, ref = [], []
    for _ in range(20):
        m = int(rng.integers(4, 60))
        codes = np.sort(rng.integers(0, m, int(rng.integers(m + 2, 3 * m))))
        k = codes.size
        v = rng.uniform(0.004, 0.05, k)
        y = (0.25 + rng.normal(0, rng.choice([0.0, 0.15]), m)[codes]
             + rng.normal(0, rng.choice([0.0, 0.1]), k) + rng.normal(0, np.sqrt(v)))
        X = np.ones((k, 1)) if width == 1 else np.column_stack([np.ones(k), np.sqrt(v)])
        bl = _Blocks(codes)
        o = bl.order
        theta, ok = _Problem(y[o], v[o], X[o], bl, method == "REML").fit(None)
        assert ok
        sets.append((y[o], v[o], X[o], codes[o]))
        ref.append(theta)
    theta, ok, _ = batch3l.ThreeLevelBatch(sets, method == "REML").fit()
    assert ok.all()
    np.testing.assert_allclose(theta, np.array(ref), rtol=RTOL, atol=1e-12)
    assert (np.array(ref) == 0).any()  # the boundary is exercised
