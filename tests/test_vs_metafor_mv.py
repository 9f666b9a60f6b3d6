"""The three-level model against R's metafor 3.8 ``rma.mv`` and the CR2 HTZ Wald test against
clubSandwich 0.5.8. Expected values: tests/reference/metafor_mv.json, written by
tests/reference/make_mv_reference.R (its ``source`` block records the versions and the calls)
on metadat's dat.konstantopoulos2011 (district/school), dat.assink2016 (study/esid) and
dat.bakdash2021 (SampleID/Outcome), and dat.molloy2014 for the one-effect-per-sample fallback.
"""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import REF_DIR, TOL, assert_close

import alliance_meta as am
from alliance_meta.stats.cr2 import cr2, cr2_intercept

REF = json.loads((REF_DIR / "metafor_mv.json").read_text())
MODS = {"konstantopoulos2011": "~ year", "assink2016": "~ year + deltype",
        "bakdash2021": "~ measure"}


def _data(ds: str) -> pd.DataFrame:
    return pd.DataFrame(REF["data"][ds])


def _fit(ds: str, formula: str, **kw):
    d = _data(ds)
    extra = {} if formula == "~ 1" else {"mods": d, "formula": formula}
    return am.three_level(d.yi, d.vi, d.cluster, **extra, **kw)


@pytest.mark.parametrize("key", sorted(REF["three_level"]))
def test_three_level_matches_rma_mv(key):
    """rma.mv(yi, vi, mods, random = ~ 1 | cluster/effect, test, dfs): coefficients, sigma2, QE,
    QM (chi-square, or F on (m, min df)), I2 per level (metafor's multilevel I^2), PI."""
    ds, formula, test, dfs = key.split("|")
    r = REF["three_level"][key]
    res = _fit(ds, formula, test=test, dfs=dfs)
    tol = TOL["iterative"]
    for name, ours in {
        "beta": res.beta, "se": res.se, "zval": res.zval, "pval": res.pval, "ci_lb": res.ci_lb,
        "ci_ub": res.ci_ub, "sigma2": res.sigma2, "QE": res.QE, "QE_p": res.QE_p, "QM": res.QM,
        "QM_p": res.QM_p, "logLik": res.logLik,
    }.items():
        assert_close(ours, r[name], tol, f"{key} {name}")
    assert_close([res.I2_between, res.I2_within], r["I2_levels"], tol, f"{key} I2")
    assert res.I2 == pytest.approx(res.I2_between + res.I2_within)
    # same terms in the same order; formulaic writes "Intercept" and "deltype[T.general]" where
    # R writes "intrcpt" and "deltypegeneral"
    ours = [n.replace("[T.", "").replace("]", "") for n in res.coef_names[1:]]
    assert ours == list(np.atleast_1d(r["coef_names"]))[1:]
    assert res.QM_df[0] == r["QM_df"][0]
    if test == "t":
        assert_close(res.dfs, r["dfs"], 0, f"{key} dfs")
        assert res.QM_df[1] == r["QM_df"][1]
        assert res.dfs_method == dfs
    else:
        assert np.all(np.isinf(res.dfs))
    if "pi_lb" in r:
        assert_close([res.pi_lb, res.pi_ub], [r["pi_lb"], r["pi_ub"]], tol, f"{key} PI")
    else:
        assert np.isnan(res.pi_lb) and np.isnan(res.pi_ub)


@pytest.mark.parametrize("ds", sorted(REF["data"]))
def test_profile_ci_of_both_components(ds):
    """confint.rma.mv: profile-likelihood CIs of sigma2[1] (between) and sigma2[2] (within)."""
    r = REF["three_level"][f"{ds}|~ 1|z|residual"]["confint"]
    ci = _fit(ds, "~ 1").confint()
    assert list(ci.index) == ["sigma2_between", "sigma2_within"]
    assert list(ci.columns) == ["estimate", "ci_lb", "ci_ub"]
    for comp in ("sigma2_between", "sigma2_within"):
        assert_close(ci.loc[comp].to_numpy(), r[comp], TOL["profile"], f"{ds} {comp}")


@pytest.mark.parametrize("ds", sorted(MODS))
def test_pseudo_r2_per_level(ds):
    """Proportional reduction of each sigma2 from the intercept-only model, truncated at 0 as
    metafor's R^2 for rma (computed in make_mv_reference.R from two rma.mv fits, untruncated).
    R^2 is a difference of two iterative estimates, so its absolute error (in percentage points)
    is bounded by 100 * 2 * the iterative tolerance."""
    r = REF["three_level"][f"{ds}|{MODS[ds]}|z|residual"]["R2_levels"]
    res = _fit(ds, MODS[ds])
    np.testing.assert_allclose([res.R2_between, res.R2_within], np.maximum(r, 0.0), rtol=0,
                               atol=100 * 2 * TOL["iterative"])
    assert "R2" in res.variance_components().columns
    one = _fit(ds, "~ 1")
    assert np.isnan(one.R2_between) and np.isnan(one.R2_within)


@pytest.mark.parametrize("key", sorted(REF["wald_htz"]))
def test_robust_wald_htz(key):
    """clubSandwich Wald_test(m, constrain_zero(2:p), vcov = "CR2", test = "HTZ") and
    coef_test(..., "Satterthwaite") on rma.mv with moderators."""
    ds, formula = key.split("|")
    r = REF["wald_htz"][key]
    d = _data(ds)
    rb = am.robust(_fit(ds, formula), d.cluster)
    tol = TOL["iterative"]
    assert_close(rb.beta, r["coef"]["beta"], tol, f"{key} beta")
    assert_close(rb.se, r["coef"]["se"], tol, f"{key} se")
    assert_close(rb.df, r["coef"]["df"], tol, f"{key} df")
    assert_close(rb.pval, r["coef"]["pval"], tol, f"{key} pval")
    w = rb.wald_test(list(np.atleast_1d(r["constraints"]) - 1))
    assert w.df_num == r["df_num"]
    for name in ("F", "df_denom", "pval"):
        theirs = r["Fstat" if name == "F" else "p_val" if name == "pval" else name]
        assert_close(getattr(w, name), theirs, tol, f"{key} {name}")
    if "single" in r:
        s = r["single"]
        w1 = rb.wald_test([s["constraints"] - 1])
        assert_close([w1.F, w1.df_denom, w1.pval], [s["Fstat"], s["df_denom"], s["p_val"]], tol,
                     f"{key} single")
        # one constraint: HTZ is the Satterthwaite t test squared (no R needed for this)
        j = s["constraints"] - 1
        assert w1.F == pytest.approx(rb.tval[j] ** 2, rel=1e-10)
        assert w1.df_denom == pytest.approx(rb.df[j], rel=1e-10)


def test_wald_test_by_name_and_refusals():
    d = _data("assink2016")
    rb = am.robust(_fit("assink2016", MODS["assink2016"]), d.cluster)
    by_name = rb.wald_test(["deltype[T.general]", "deltype[T.overt]"])
    by_index = rb.wald_test([2, 3])
    assert by_name.F == by_index.F and by_name.terms == ("deltype[T.general]", "deltype[T.overt]")
    for bad in (["nope"], [7], [], [2, 2]):
        with pytest.raises(ValueError, match="wald_test"):
            rb.wald_test(bad)


def test_fallback_when_every_sample_has_one_effect():
    """molloy2014 with one effect per sample: rma.mv's two sigma2 are not identifiable (metafor
    splits their sum, see the JSON); we fit random effects and say so. Its estimate, SE, PI and
    total heterogeneity equal rma(method = "REML"), and the between-sample profile CI equals
    metafor's profile-likelihood CI for tau^2 (confint(rma, type = "PL"))."""
    fb = REF["fallback"]
    tl = am.three_level(fb["yi"], fb["vi"], np.arange(len(fb["yi"])))
    assert tl.fallback and "not separately identifiable" in tl.fallback_message
    assert "random-effects fallback" in repr(tl) and "identifiable" in tl._repr_html_()
    tol = TOL["iterative"]
    assert_close(tl.tau2, sum(fb["rma_mv_sigma2"]), tol, "total sigma2 = rma.mv sum")
    assert_close(tl.sigma2_between, fb["rma_tau2"], tol, "tau2")
    assert tl.sigma2_within == 0.0
    assert_close([tl.estimate, tl.se, tl.ci_lb, tl.ci_ub, tl.pi_lb, tl.pi_ub],
                 [fb["rma_beta"], fb["rma_se"], fb["rma_ci_lb"], fb["rma_ci_ub"],
                  fb["rma_pi_lb"], fb["rma_pi_ub"]], tol, "random-effects fit")
    ci = tl.confint()
    assert_close(ci.loc["sigma2_between"].to_numpy(), fb["rma_tau2_pl_ci"], TOL["profile"],
                 "profile CI of tau2")
    assert ci.loc["sigma2_within"].isna().all()
    nested = _fit("assink2016", "~ 1")
    assert not nested.fallback and nested.fallback_message == ""


def test_one_coefficient_results_are_floats_and_several_are_arrays():
    d = _data("assink2016")
    one = _fit("assink2016", "~ 1")
    rb1 = am.robust(one, d.cluster)
    for res in (one, rb1):
        for name in ("estimate", "se", "ci_lb", "ci_ub", "pval", "zval"):
            assert type(getattr(res, name)) is float, (type(res).__name__, name)
    many = _fit("assink2016", MODS["assink2016"])
    rbm = am.robust(many, d.cluster)
    for res in (many, rbm):
        for name in ("estimate", "se", "ci_lb", "ci_ub", "pval"):
            assert np.shape(getattr(res, name)) == (4,), (type(res).__name__, name)
    assert "tval" in rbm.summary().columns and "df" in rbm.summary().columns


def test_contain_implies_t_and_bad_dfs():
    res = _fit("konstantopoulos2011", "~ 1", dfs="contain")
    assert res.test == "t" and res.dfs == 10.0  # 11 districts - 1
    with pytest.raises(ValueError, match="dfs"):
        _fit("konstantopoulos2011", "~ 1", test="t", dfs="kenward-roger")


def test_cr2_kernel_batch_equals_single_fits():
    """The batched kernel (as the multiverse calls it) equals robust() fit by fit, and the three
    ways of giving the working covariance (diagonal, full matrices, blocks) agree."""
    d = _data("assink2016")
    y, v = d.yi.to_numpy(), d.vi.to_numpy()
    codes = pd.factorize(d.cluster)[0]
    X = np.stack([np.column_stack([np.ones(y.size), np.sqrt(v)]),
                  np.column_stack([np.ones(y.size), v])])
    fits = [am.meta_regression(y, v, mods=X[j, :, 1], method="REML") for j in range(2)]
    tau2 = np.array([f.tau2 for f in fits])
    b, se, df = cr2_intercept(y, v, X, tau2, codes)
    for j, f in enumerate(fits):
        rb = am.robust(f, d.cluster)
        np.testing.assert_allclose([b[j], se[j], df[j]], [rb.beta[0], rb.se[0], rb.df[0]],
                                   rtol=1e-10)
    diag = v[None, :] + tau2[:, None]
    full = np.stack([np.diag(dj) for dj in diag])
    k_diag, k_full = cr2(y, X, codes, diag), cr2(y, X, codes, full)
    k_blocks = cr2(y, X, codes, lambda idx: diag[:, idx][..., :, None] * np.eye(idx.shape[1]))
    for other in (k_full, k_blocks):
        np.testing.assert_allclose(other.vcov, k_diag.vcov, rtol=1e-10)
        np.testing.assert_allclose(other.satterthwaite(), k_diag.satterthwaite(), rtol=1e-10)
        np.testing.assert_allclose(other.htz(np.eye(2)).F, k_diag.htz(np.eye(2)).F, rtol=1e-10)


def test_wald_test_refuses_a_coefficient_from_a_single_cluster():
    # Our curated studies: format = group occurs in one sample only (Goldberg2013_s1), so its
    # CR2 variance is ~0 and the HTZ F would be meaningless (it came out near -1e30 before).
    import alliance_meta as am

    df = am.load_studies()
    assert df.loc[df["format"] == "group", "sample_id"].nunique() == 1
    reg = am.meta_regression(df.yi, df.vi, mods=df, formula="~ C(format)")
    with pytest.raises(ValueError, match="single cluster"):
        am.robust(reg, df.sample_id).wald_test([1])
