"""The statistical core against R's metafor 3.8 and clubSandwich 0.5 (reference values in
tests/reference/metafor_core.json, written by tests/reference/make_core_reference.R; the R call
behind each value is in the key: dataset|method|test, or dataset|formula|method|test)."""

import numpy as np
import pandas as pd
import pytest
from conftest import TOL, assert_close, tol_for

import alliance_meta as am

REF_KEYS = None


def _keys(section):
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "reference" / "metafor_core.json").read_text())
    return list(ref[section])


@pytest.mark.parametrize("key", _keys("random_effects"))
def test_random_effects(core_ref, key):
    ds, method, test = key.split("|")
    d = core_ref["data"][ds]
    r = core_ref["random_effects"][key]
    if method == "FE":
        res = am.common_effect(d["yi"], d["vi"])
    else:
        res = am.random_effects(d["yi"], d["vi"], method=method, test=test)
    tol = tol_for(method)
    pairs = {
        "beta": res.estimate, "se": res.se, "zval": res.zval, "pval": res.pval,
        "ci_lb": res.ci_lb, "ci_ub": res.ci_ub, "pi_lb": res.pi_lb, "pi_ub": res.pi_ub,
        "tau2": res.tau2, "I2": res.I2, "H2": res.H2, "QE": res.Q, "QE_p": res.Q_p,
    }
    if method == "FE":  # metafor gives no PI for a common-effect model; ours equals the CI
        del pairs["pi_lb"], pairs["pi_ub"]
        assert (res.pi_lb, res.pi_ub) == pytest.approx((res.ci_lb, res.ci_ub))
    for name, ours in pairs.items():
        assert_close(ours, r[name], tol, f"{key} {name}")
    assert res.k == r["k"]
    if method in ("ML", "REML", "FE"):
        assert_close(res.logLik, r["logLik"], tol, f"{key} logLik")
    if method != "FE":
        # Q-profile CI: iterative on both sides
        assert_close(res.tau2_ci_lb, r["tau2_ci_lb"], TOL["iterative"], f"{key} tau2_ci_lb")
        assert_close(res.tau2_ci_ub, r["tau2_ci_ub"], TOL["iterative"], f"{key} tau2_ci_ub")


@pytest.mark.parametrize("key", _keys("meta_regression"))
def test_meta_regression(core_ref, key):
    ds, formula, method, test = key.split("|")
    d = pd.DataFrame(core_ref["data"][ds])
    r = core_ref["meta_regression"][key]
    res = am.meta_regression(d.yi, d.vi, mods=d, formula=formula, method=method, test=test)
    tol = tol_for(method)
    assert len(res.coef_names) == len(r["coef_names"])
    # same column order as metafor's design matrix (intercept first, then terms in order)
    for ours, theirs in zip(res.coef_names[1:], r["coef_names"][1:], strict=True):
        assert ours.replace("[T.", "").replace("]", "") == theirs
    pairs = {
        "beta": res.coef, "se": res.se, "zval": res.zval, "pval": res.pval, "ci_lb": res.ci_lb,
        "ci_ub": res.ci_ub, "tau2": res.tau2, "QM": res.QM, "QM_p": res.QM_p, "QE": res.QE,
        "QE_p": res.QE_p, "I2": res.I2, "H2": res.H2, "R2": res.R2,
    }
    for name, ours in pairs.items():
        if name == "I2" and r["tau2"] < 1e-9:
            assert ours == pytest.approx(0, abs=1e-6)  # both at the boundary
            continue
        assert_close(ours, r[name], tol, f"{key} {name}")
    if method in ("ML", "REML"):
        assert_close(res.logLik, r["logLik"], tol, f"{key} logLik")


@pytest.mark.parametrize("key", _keys("three_level"))
def test_three_level(core_ref, key):
    ds, formula, method, test = key.split("|")
    d = pd.DataFrame(core_ref["data"][ds])
    r = core_ref["three_level"][key]
    cluster = d.district if ds == "konstantopoulos2011" else d.study
    kw = {} if formula == "~ 1" else {"mods": d, "formula": formula}
    res = am.three_level(d.yi, d.vi, cluster, method=method, test=test, **kw)
    tol = TOL["iterative"]
    for name, ours in {
        "beta": res.coef, "se": res.se, "pval": res.pval, "ci_lb": res.ci_lb,
        "ci_ub": res.ci_ub, "sigma2": res.sigma2, "QE": res.QE, "QE_p": res.QE_p,
        "logLik": res.logLik,
    }.items():
        assert_close(ours, r[name], tol, f"{key} {name}")
    if "QM" in r:
        assert_close(res.QM, r["QM"], tol, f"{key} QM")


@pytest.mark.parametrize("key", _keys("robust"))
def test_robust_cr2(core_ref, key):
    ds, kind, formula = key.split("|")
    d = pd.DataFrame(core_ref["data"][ds])
    r = core_ref["robust"][key]
    cluster = d.district if ds == "konstantopoulos2011" else d.study
    kw = {} if formula == "~ 1" else {"mods": d, "formula": formula}
    if kind == "three_level":
        fit = am.three_level(d.yi, d.vi, cluster, **kw)
    elif formula == "~ 1":
        fit = am.random_effects(d.yi, d.vi)
    else:
        fit = am.meta_regression(d.yi, d.vi, **kw)
    rb = am.robust(fit, cluster)
    for name, ours in {"beta": rb.coef, "se": rb.se, "tstat": rb.tval, "df": rb.df,
                       "pval": rb.pval}.items():
        assert_close(ours, r[name], TOL["iterative"], f"{key} {name}")


def test_aggregate_matches_metafor_unweighted_cs(core_ref):
    """Borenstein composite == metafor aggregate(struct='CS', rho=.5, weighted=FALSE)."""
    d = pd.DataFrame(core_ref["data"]["assink2016"])
    ag = am.aggregate(d.yi, d.vi, d.study, rho=0.5)
    r = core_ref["aggregate"]
    assert_close(ag.yi, r["yi"], TOL["closed"], "aggregate yi")
    assert_close(ag.vi, r["vi"], TOL["closed"], "aggregate vi")


def test_fisher_z_matches_escalc(core_ref):
    d = core_ref["data"]["molloy2014"]
    yi, vi = am.fisher_z(d["ri"], d["ni"])
    assert_close(yi, d["yi"], TOL["closed"], "ZCOR yi")
    assert_close(vi, d["vi"], TOL["closed"], "ZCOR vi")


def test_permutation_pvalue_within_monte_carlo_error(core_ref):
    """metafor's permutest (5000 iterations, its own RNG) vs ours (5000, seed 0): both estimate
    the same exact permutation p-value, so they differ by Monte Carlo error only; we allow
    4 binomial SEs of the difference."""
    r = core_ref["permutation"]
    d = pd.DataFrame(core_ref["data"][r["dataset"]])
    reg = am.meta_regression(d.yi, d.vi, mods=d, formula=r["formula"])
    pt = am.permutation_test(reg, n_perm=r["iter"], seed=0)
    for ours, theirs in [(pt.QM_p, r["QMp"]), *zip(pt.pval, r["pval"], strict=True)]:
        se = np.sqrt(2 * max(theirs * (1 - theirs), 1e-4) / r["iter"])
        assert abs(ours - theirs) < 4 * se + 1e-3


@pytest.mark.parametrize("key", _keys("no_intercept"))
def test_meta_regression_without_intercept(core_ref, key):
    """Issue 12: without an intercept, QM tests every coefficient (metafor's default btt) and no
    R^2 is reported. Reference: the R call in the entry's "call" (metafor_core.json)."""
    ds, formula, method, test = key.split("|")
    d = pd.DataFrame(core_ref["data"][ds])
    r = core_ref["no_intercept"][key]
    ours_formula = formula.replace("controls", "C(controls)").replace("type", "C(type)")
    res = am.meta_regression(d.yi, d.vi, mods=d, formula=ours_formula, method=method, test=test)
    tol = tol_for(method)
    assert not res.intercept and len(res.coef_names) == len(r["coef_names"])
    assert res.QM_df == tuple(int(x) for x in np.atleast_1d(r["QM_df"]))
    for name, ours in {
        "beta": res.coef, "se": res.se, "zval": res.zval, "pval": res.pval, "ci_lb": res.ci_lb,
        "ci_ub": res.ci_ub, "tau2": res.tau2, "QM": res.QM, "QM_p": res.QM_p, "QE": res.QE,
        "QE_p": res.QE_p, "I2": res.I2, "H2": res.H2,
    }.items():
        if name == "I2" and r["tau2"] < 1e-9:
            assert ours == pytest.approx(0, abs=1e-6)  # both at the boundary (as above)
            continue
        assert_close(ours, r[name], tol, f"{key} {name}")
    assert r["R2_reported"] is False and np.isnan(res.R2)
    assert np.isnan(res.heterogeneity()["R2"].iloc[0])
