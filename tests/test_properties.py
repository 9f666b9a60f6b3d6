"""Property tests (hypothesis) for the core: invariances and bounds any correct estimator obeys."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import alliance_meta as am

METHODS = ["DL", "HE", "HS", "SJ", "ML", "REML", "EB", "PM"]


@st.composite
def meta_data(draw, min_k=2, max_k=40):
    k = draw(st.integers(min_k, max_k))
    y = draw(arrays(float, k, elements=st.floats(-3, 3, allow_nan=False)))
    v = draw(arrays(float, k, elements=st.floats(1e-4, 2.0, allow_nan=False)))
    return y, v


common = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@common
@given(meta_data(), st.sampled_from(METHODS), st.randoms(use_true_random=False))
def test_row_order_invariance(data, method, rnd):
    y, v = data
    idx = list(range(y.size))
    rnd.shuffle(idx)
    a = am.random_effects(y, v, method=method)
    b = am.random_effects(y[idx], v[idx], method=method)
    assert b.estimate == pytest.approx(a.estimate, rel=1e-7, abs=1e-9)
    assert b.tau2 == pytest.approx(a.tau2, rel=1e-6, abs=1e-9)
    assert b.Q == pytest.approx(a.Q, rel=1e-7, abs=1e-9)


@common
@given(meta_data(), st.sampled_from(METHODS), st.sampled_from(["z", "knha"]))
def test_tau2_nonnegative_and_ci_contains_estimate(data, method, test):
    y, v = data
    res = am.random_effects(y, v, method=method, test=test)
    assert res.tau2 >= 0
    assert res.ci_lb <= res.estimate <= res.ci_ub
    assert res.pi_lb <= res.ci_lb + 1e-12 and res.pi_ub >= res.ci_ub - 1e-12
    assert 0 <= res.I2 < 100 and res.H2 >= 1
    assert 0 <= res.tau2_ci_lb <= res.tau2_ci_ub


@common
@given(meta_data(min_k=2, max_k=2), st.sampled_from(METHODS))
def test_k_equals_two(data, method):
    y, v = data
    res = am.random_effects(y, v, method=method)
    assert np.isfinite([res.estimate, res.se, res.tau2]).all()
    assert min(y) - 1e-9 <= res.estimate <= max(y) + 1e-9  # a weighted mean of the two


@pytest.mark.parametrize("scale", [1e-10, 1e-6, 1.0, 1e6])
@pytest.mark.parametrize("method", METHODS)
def test_huge_and_tiny_variances(scale, method):
    """Rescaling y by c and v by c^2 rescales estimate and tau2 exactly (c and c^2); z and p
    do not change. Synthetic data (fixed numbers, no source)."""
    y = np.array([0.1, 0.35, -0.05, 0.42, 0.2, 0.15])
    v = np.array([0.01, 0.02, 0.015, 0.04, 0.005, 0.03])
    base = am.random_effects(y, v, method=method)
    c = np.sqrt(scale)
    res = am.random_effects(y * c, v * scale, method=method)
    assert res.estimate == pytest.approx(base.estimate * c, rel=1e-6)
    assert res.tau2 == pytest.approx(base.tau2 * scale, rel=1e-5, abs=1e-12 * scale)
    assert res.pval == pytest.approx(base.pval, rel=1e-6)


def test_homogeneous_data_give_zero_tau2():
    y = np.full(10, 0.3)
    v = np.linspace(0.01, 0.1, 10)
    for m in METHODS:
        assert am.random_effects(y, v, method=m).tau2 == pytest.approx(0, abs=1e-12)


@common
@given(meta_data(min_k=6, max_k=30))
def test_meta_regression_permutation_of_rows(data):
    import pandas as pd

    y, v = data
    x = np.arange(y.size, dtype=float)
    mods = pd.DataFrame({"x": x})
    a = am.meta_regression(y, v, mods=mods, formula="~ x")
    idx = np.arange(y.size)[::-1]
    b = am.meta_regression(y[idx], v[idx], mods=mods.iloc[idx].reset_index(drop=True), formula="~ x")
    np.testing.assert_allclose(a.coef, b.coef, rtol=1e-6, atol=1e-9)
    assert b.tau2 == pytest.approx(a.tau2, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("method", METHODS + ["FE"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_shared_design_batch_equals_separate_fits(method, test):
    """The permutation test fits (y, v) permuted against ONE shared design (engine batch with
    X of shape (1, k, p)); each fit must equal the meta-regression with the rows of X permuted
    instead (plain separate fits), to the engine's convergence tolerance."""
    from alliance_meta.stats.rma import _fit_batch

    rng = np.random.default_rng(5)
    k = 25
    y = rng.normal(0.3, 0.3, k)
    v = rng.uniform(0.005, 0.08, k)
    M = np.column_stack([rng.normal(size=k), rng.integers(0, 2, k)])
    X = np.column_stack([np.ones(k), M])
    idx = np.argsort(rng.random((6, k)), axis=1)
    inv = np.argsort(idx, axis=1)
    f = _fit_batch(y[inv], v[inv], X[None], method, test)
    for b in range(idx.shape[0]):
        one = am.meta_regression(y, v, mods=M[idx[b]], method=method, test=test)
        np.testing.assert_allclose(f.beta[b], one.coef, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(f.vb[b], one.vb, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(f.tau2[b], one.tau2, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(f.QE[b], one.QE, rtol=1e-10)
