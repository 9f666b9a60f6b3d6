"""Cross-checks against the Python peers where they overlap with us: PyMARE (DL, HE, ML, REML) and
statsmodels' meta_analysis (DL, PM). Data: metadat's dat.molloy2014 and dat.bangertdrowns2004
as stored in tests/reference/metafor_core.json. PyMARE's likelihood optimiser (scipy minimize)
stops earlier than our Fisher scoring, hence 1e-4 for its ML/REML."""

import numpy as np
import pytest
from pymare import Dataset, estimators
from statsmodels.stats.meta_analysis import combine_effects

import alliance_meta as am


@pytest.mark.parametrize("ds", ["molloy2014", "bangertdrowns2004"])
@pytest.mark.parametrize("method", ["DL", "HE", "ML", "REML"])
def test_pymare_tau2_and_estimate(core_ref, ds, method):
    d = core_ref["data"][ds]
    y, v = np.array(d["yi"]), np.array(d["vi"])
    if method in ("ML", "REML"):
        est = estimators.VarianceBasedLikelihoodEstimator(method=method.lower())
        rtol = 1e-4
    else:
        est = {"DL": estimators.DerSimonianLaird, "HE": estimators.Hedges}[method]()
        rtol = 1e-8
    est.fit_dataset(Dataset(y=y, v=v))
    s = est.summary()
    ours = am.random_effects(y, v, method=method)
    assert ours.tau2 == pytest.approx(float(np.ravel(s.tau2)[0]), rel=rtol, abs=1e-10)
    assert ours.estimate == pytest.approx(float(np.ravel(s.fe_params)[0]), rel=rtol)


@pytest.mark.parametrize("ds", ["molloy2014", "bangertdrowns2004"])
@pytest.mark.parametrize("method", ["DL", "PM"])
def test_statsmodels_combine_effects(core_ref, ds, method):
    d = core_ref["data"][ds]
    y, v = np.array(d["yi"]), np.array(d["vi"])
    sm = combine_effects(y, v, method_re=method.lower())
    ours = am.random_effects(y, v, method=method)
    # statsmodels iterates PM to its own default tolerance (about 1e-10 on tau2)
    assert ours.tau2 == pytest.approx(sm.tau2, rel=1e-6, abs=1e-12)
    frame = sm.summary_frame()
    assert ours.estimate == pytest.approx(frame.loc["random effect", "eff"], rel=1e-6)
    fe = am.common_effect(y, v)
    assert fe.estimate == pytest.approx(frame.loc["fixed effect", "eff"], rel=1e-10)
    assert fe.se == pytest.approx(frame.loc["fixed effect", "sd_eff"], rel=1e-10)


def test_meta_regression_equals_wls_at_fixed_tau2(core_ref):
    """First principles: at the estimated tau2, the coefficients are weighted least squares
    with weights 1/(vi + tau2) (statsmodels WLS), and the model-based SEs are sqrt(diag((X'WX)^-1))."""
    import pandas as pd
    import statsmodels.api as sm

    d = pd.DataFrame(core_ref["data"]["bangertdrowns2004"])
    reg = am.meta_regression(d.yi, d.vi, mods=d, formula="~ length + grade")
    w = 1 / (d.vi + reg.tau2)
    ols = sm.WLS(d.yi, reg.X, weights=w).fit()
    np.testing.assert_allclose(reg.coef, ols.params, rtol=1e-10)
    XtWX = reg.X.T @ (reg.X * w.to_numpy()[:, None])
    np.testing.assert_allclose(reg.se, np.sqrt(np.diag(np.linalg.inv(XtWX))), rtol=1e-10)
