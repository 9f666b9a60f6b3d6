"""Publication-bias and sensitivity analyses against R's metafor 3.8 and clubSandwich 0.5.

Reference values: tests/reference/metafor_bias.json, written by
tests/reference/make_bias_reference.R on metadat datasets; each entry's ``call`` field holds the R
call that produced it and the key says dataset|method(|option). Tolerances come from conftest's
table: 1e-6 relative for closed-form results (DL, FE, WLS, rank and fail-safe statistics),
1e-5 for iterative ones (REML, selection models, three-level fits and CR2 on them).
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TOL, assert_close, tol_for

import alliance_meta as am
from alliance_meta.stats.bias import (
    egger_test,
    fail_safe_n,
    pet_peese,
    rank_test,
    selection_model,
    trim_and_fill,
)
from alliance_meta.stats.influence import baujat, cumulative, influence, leave_one_out

REF = json.loads((Path(__file__).parent / "reference" / "metafor_bias.json").read_text())
DATA = REF["data"]


def _re(ds: str, method: str = "REML", test: str = "z"):
    d = DATA[ds]
    return am.random_effects(d["yi"], d["vi"], method=method, test=test)


def _arr(x) -> np.ndarray:
    """JSON list (or a scalar, which jsonlite writes for length-1 vectors; 'NA' -> nan)."""
    return np.array([np.nan if v == "NA" else v for v in np.atleast_1d(np.asarray(x, object))],
                    dtype=float)


def _boundary_aware(ours, ref_tau2, theirs, rtol, what, abs_at_boundary=1e-6):
    """Compare elementwise; where metafor's tau2 sits at the boundary (< 1e-9: metafor stops at
    e.g. 5e-13, we at exactly 0) quantities that scale with tau2 (I2) are compared absolutely."""
    ours, theirs, t2 = np.atleast_1d(ours), _arr(theirs), _arr(ref_tau2)
    at0 = t2 < 1e-9
    assert_close(ours[~at0], theirs[~at0], rtol, what)
    np.testing.assert_allclose(ours[at0], theirs[at0], rtol=0, atol=abs_at_boundary,
                               err_msg=what + " (tau2 at 0)")


# --- funnel asymmetry ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(REF["regtest"]))
def test_egger_regtest(key):
    ds, method, test, pred = key.split("|")
    r = REF["regtest"][key]
    e = egger_test(_re(ds, method, test), predictor=pred)
    tol = tol_for(method)
    for name, ours in {"zval": e.zval, "pval": e.pval, "est": e.estimate, "ci_lb": e.ci_lb,
                       "ci_ub": e.ci_ub, "tau2": e.tau2}.items():
        assert_close(ours, r[name], tol, f"{r['call']} {name}")
    assert_close([e.estimate, e.slope], r["coef"], tol, f"{r['call']} coef")
    assert_close([e.se, e.slope_se], r["se"], tol, f"{r['call']} se")
    if test == "knha":
        assert e.dfs == r["dfs"]


@pytest.mark.parametrize("ds", list(REF["ranktest"]))
def test_rank_test(ds):
    r = REF["ranktest"][ds]
    t = rank_test(_re(ds))
    assert_close(t.tau, r["tau"], TOL["closed"], f"{r['call']} tau")
    assert_close(t.pval, r["pval"], TOL["closed"], f"{r['call']} pval")


@pytest.mark.parametrize("key", list(REF["pet_peese"]))
def test_pet_peese_wls_matches_regtest_lm(key):
    """PET (predictor sei) and PEESE (predictor vi) = regtest(model='lm'): closed form."""
    ds, _, pred = key.split("|")
    r = REF["pet_peese"][key]
    pp = pet_peese(DATA[ds]["yi"], DATA[ds]["vi"])
    pre = "pet_" if pred == "sei" else "peese_"

    def g(n):
        return getattr(pp, pre + n)

    tol = TOL["closed"]
    assert_close(g("estimate"), r["est"], tol, f"{r['call']} est")
    assert_close(g("ci_lb"), r["ci_lb"], tol, f"{r['call']} ci_lb")
    assert_close(g("ci_ub"), r["ci_ub"], tol, f"{r['call']} ci_ub")
    assert_close([g("estimate"), g("slope")], r["coef"], tol, f"{r['call']} coef")
    assert_close(g("se"), r["se"][0], tol, f"{r['call']} se")
    assert_close(g("pval"), r["coef_pval"][0], tol, f"{r['call']} intercept p")
    assert_close(g("slope_pval"), r["pval"], tol, f"{r['call']} slope test p")
    assert g("dfs") == r["dfs"]
    # the conditional rule picks the estimate from PET's one-sided intercept test
    p1 = REF["pet_peese"][f"{ds}|lm|sei"]
    t = p1["coef"][0] / p1["se"][0]
    from scipy import stats

    chosen = "PEESE" if stats.t.sf(t, p1["dfs"]) < 0.05 else "PET"
    assert pp.chosen == chosen


# --- trim and fill ------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(REF["trimfill"]))
def test_trim_and_fill(key):
    ds, method, est, side = key.split("|")
    r = REF["trimfill"][key]
    tf = trim_and_fill(_re(ds, method), estimator=est, side=None if side == "auto" else side)
    assert tf.k0 == r["k0"], r["call"]
    assert tf.side == r["side"], r["call"]
    tol = tol_for(method)
    for name, ours in {"beta": tf.estimate, "se": tf.se, "zval": tf.zval, "pval": tf.pval,
                       "ci_lb": tf.ci_lb, "ci_ub": tf.ci_ub, "tau2": tf.tau2, "QE": tf.QE,
                       "I2": tf.I2}.items():
        assert_close(ours, r[name], tol, f"{r['call']} {name}")
    fy, fv = _arr(r["fill_yi"]), _arr(r["fill_vi"])
    o, oo = np.argsort(tf.filled_yi), np.argsort(fy)
    assert_close(tf.filled_yi[o], fy[oo], tol, f"{r['call']} filled yi")
    assert_close(tf.filled_vi[o], fv[oo], TOL["closed"], f"{r['call']} filled vi")


# --- selection models ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(REF["selmodel"]))
def test_selection_model(key):
    """metafor fits by numerical optimisation (the best of three tight optimisers) and takes
    SEs from a numDeriv Hessian; we maximise to a gradient below 1e-9: iterative tolerance."""
    ds, method, steps = key.split("|")
    r = REF["selmodel"][key]
    sm = selection_model(_re(ds, method), steps=[float(s) for s in steps.split(",")])
    tol = TOL["iterative"]
    for name, ours in {"beta": sm.estimate, "se": sm.se, "zval": sm.zval, "pval": sm.pval,
                       "ci_lb": sm.ci_lb, "ci_ub": sm.ci_ub, "tau2": sm.tau2, "LRT": sm.LRT,
                       "LRTp": sm.LRT_p, "logLik": sm.logLik,
                       "logLik_unadjusted": sm.logLik_unadjusted}.items():
        assert_close(ours, r[name], tol, f"{r['call']} {name}")
    assert_close(sm.delta, r["delta"], tol, f"{r['call']} delta")
    assert_close(sm.se_delta[1:], _arr(r["se_delta"])[1:], tol, f"{r['call']} se_delta")
    if method != "FE":
        assert_close(sm.se_tau2, r["se_tau2"], tol, f"{r['call']} se_tau2")
    assert sm.LRT_df == r["LRTdf"]
    assert sm.k_per_interval.tolist() == list(_arr(r["ptable_k"]).astype(int))


# --- fail-safe N --------------------------------------------------------------------------------


@pytest.mark.parametrize("ds", list(REF["fsn"]))
def test_fail_safe_n(ds):
    r = REF["fsn"][ds]
    y, v = DATA[ds]["yi"], DATA[ds]["vi"]
    ro = fail_safe_n(y, v, method="rosenthal")
    assert ro.fsnum == r["rosenthal"]["fsnum"]
    assert_close(ro.pval, r["rosenthal"]["pval"], TOL["closed"], f"{ds} Rosenthal pval")
    ow = fail_safe_n(y, v, method="orwin")
    assert ow.fsnum == r["orwin"]["fsnum"]
    assert_close([ow.meanes, ow.target], [r["orwin"]["meanes"], r["orwin"]["target"]],
                 TOL["closed"], f"{ds} Orwin")
    o5 = fail_safe_n(y, v, method="orwin", target=0.05)
    assert o5.fsnum == r["orwin_05"]["fsnum"]
    # issue 12: effects coded negative; metafor's fsn(-yi, vi) uses |sum z| (molloy2014: 316)
    neg = fail_safe_n(-np.asarray(y), v, method="rosenthal")
    assert neg.fsnum == r["rosenthal_negated"]["fsnum"]
    assert_close(neg.pval, r["rosenthal_negated"]["pval"], TOL["closed"], f"{ds} negated pval")


# --- leave-one-out, influence, Baujat, cumulative ----------------------------------------------


@pytest.mark.parametrize("key", list(REF["leave1out"]))
def test_leave_one_out(key):
    parts = key.split("|")
    r = REF["leave1out"][key]
    method = parts[1]
    lo = leave_one_out(_re(parts[0], method, parts[2] if len(parts) == 3 else "z"))
    tol = tol_for(method)
    for ours, theirs in [("estimate", "estimate"), ("se", "se"), ("zval", "zval"),
                         ("pval", "pval"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"), ("QE", "Q"),
                         ("QE_p", "Qp"), ("I2", "I2"), ("H2", "H2")]:
        assert_close(lo[ours], r[theirs], tol, f"{r['call']} {theirs}")
    if method == "FE":
        assert (lo["tau2"] == 0).all()  # metafor leaves tau2 out for FE
    else:
        assert_close(lo["tau2"], r["tau2"], tol, f"{r['call']} tau2")


@pytest.mark.parametrize("key", list(REF["influence"]))
def test_influence(key):
    parts = key.split("|")
    r = REF["influence"][key]
    d = DATA[parts[0]]
    if len(parts) == 3 and parts[2].startswith("~"):
        res = am.meta_regression(d["yi"], d["vi"], mods=pd.DataFrame(d), formula=parts[2],
                                 method=parts[1])
    else:
        res = _re(parts[0], parts[1], parts[2] if len(parts) == 3 else "z")
    inf = influence(res)
    tol = tol_for(parts[1])
    for ours, theirs in [("rstudent", "rstudent"), ("dffits", "dffits"), ("cooks", "cook_d"),
                         ("cov_r", "cov_r"), ("tau2_del", "tau2_del"), ("QE_del", "QE_del"),
                         ("hat", "hat"), ("weight", "weight")]:
        assert_close(inf[ours], r[theirs], tol, f"{r['call']} {theirs}")
    dfbs = r["dfbs"] if isinstance(r["dfbs"], dict) else {"intrcpt": r["dfbs"]}
    for name, vals in dfbs.items():
        col = [c for c in inf.columns if c.startswith("dfbetas_")
               and c[8:].replace("Intercept", "intrcpt") == name]
        assert len(col) == 1, (name, list(inf.columns))
        assert_close(inf[col[0]], vals, tol, f"{r['call']} dfbetas {name}")
    assert inf["inf"].tolist() == r["is_infl"], r["call"]


@pytest.mark.parametrize("key", list(REF["baujat"]))
def test_baujat(key):
    ds, method = key.split("|")
    r = REF["baujat"][key]
    b = baujat(_re(ds, method))
    assert_close(b["x"], r["x"], tol_for(method), f"{r['call']} x")
    assert_close(b["y"], r["y"], tol_for(method), f"{r['call']} y")


@pytest.mark.parametrize("key", list(REF["cumul"]))
def test_cumulative(key):
    ds, method = key.split("|")
    r = REF["cumul"][key]
    cu = cumulative(_re(ds, method), order=DATA[ds]["year"])
    assert cu["study"].tolist() == r["ids"], r["call"]  # same (stable) order as R's order()
    tol = tol_for(method)
    for ours, theirs in [("estimate", "estimate"), ("se", "se"), ("zval", "zval"),
                         ("pval", "pval"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"), ("QE", "Q"),
                         ("QE_p", "Qp"), ("H2", "H2")]:
        assert_close(cu[ours], r[theirs], tol, f"{r['call']} {theirs}")
    if method == "FE":
        assert (cu["tau2"] == 0).all()
        assert_close(cu["I2"], r["I2"], tol, f"{r['call']} I2")
    else:
        assert_close(cu["tau2"], r["tau2"], tol, f"{r['call']} tau2")
        _boundary_aware(cu["I2"].to_numpy(), r["tau2"], r["I2"], tol, f"{r['call']} I2")


# --- three-level: Egger / PET-PEESE with CR2 (clubSandwich) and leave-one-sample-out ----------


@pytest.fixture(scope="module")
def assink_fit():
    d = DATA["assink2016"]
    return am.three_level(d["yi"], d["vi"], d["study"])


@pytest.mark.parametrize("pred", ["sei", "vi"])
def test_three_level_egger_cr2(assink_fit, pred):
    r = REF["three_level_bias"][f"assink2016|{pred}"]
    e = egger_test(assink_fit, predictor=pred)
    tol = TOL["iterative"]
    assert_close(e.zval, r["tstat"][1], tol, f"{r['call']} t")
    assert_close(e.dfs, r["df"][1], tol, f"{r['call']} df")
    assert_close(e.pval, r["pval"][1], tol, f"{r['call']} p")
    assert_close([e.estimate, e.slope], r["beta"], tol, f"{r['call']} beta")
    assert_close([e.se, e.slope_se], r["se"], tol, f"{r['call']} se")
    assert_close(e.sigma2, r["sigma2"], tol, f"{r['call']} sigma2")


def test_three_level_pet_peese_cr2(assink_fit):
    pp = pet_peese(assink_fit)
    tol = TOL["iterative"]
    for pre, pred in (("pet_", "sei"), ("peese_", "vi")):
        r = REF["three_level_bias"][f"assink2016|{pred}"]
        assert_close(getattr(pp, pre + "estimate"), r["beta"][0], tol, f"{r['call']} b0")
        assert_close(getattr(pp, pre + "se"), r["se"][0], tol, f"{r['call']} se b0")
        assert_close(getattr(pp, pre + "zval"), r["tstat"][0], tol, f"{r['call']} t b0")
        assert_close(getattr(pp, pre + "dfs"), r["df"][0], tol, f"{r['call']} df b0")
        assert_close(getattr(pp, pre + "pval"), r["pval"][0], tol, f"{r['call']} p b0")
        assert_close(getattr(pp, pre + "slope_pval"), r["pval"][1], tol, f"{r['call']} p b1")
    from scipy import stats

    r = REF["three_level_bias"]["assink2016|sei"]
    expect = "PEESE" if stats.t.sf(r["tstat"][0], r["df"][0]) < 0.05 else "PET"
    assert pp.chosen == expect


def test_three_level_leave_one_sample_out(assink_fit):
    r = REF["three_level_loo"]
    lo = leave_one_out(assink_fit)
    assert lo["study"].tolist() == r["study"]
    tol = TOL["iterative"]
    for c in ("estimate", "se", "pval", "ci_lb", "ci_ub", "sigma2_between", "sigma2_within"):
        assert_close(lo[c], r[c], tol, f"{r['call']} {c}")
