"""First-principles, property and error-path tests for alliance_meta.bias and .sensitivity.

Agreement with metafor is in test_vs_metafor_bias.py; here every check is recomputed with plain
algebra, statsmodels, or a defining property of the method. The data are dat.molloy2014
(Fisher's z, from tests/reference/metafor_bias.json) and small synthetic sets.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from conftest import TOL, assert_close

import alliance_meta as am
from alliance_meta.stats.bias import (
    _StepLik,
    egger_test,
    fail_safe_n,
    pet_peese,
    rank_test,
    selection_model,
    trim_and_fill,
)
from alliance_meta.stats.influence import baujat, cumulative, influence, leave_one_out

REF = json.loads((Path(__file__).parent / "reference" / "metafor_bias.json").read_text())
MOL = REF["data"]["molloy2014"]
Y, V = np.array(MOL["yi"]), np.array(MOL["vi"])


def _synthetic(k=40, seed=3, bias=0.0):
    rng = np.random.default_rng(seed)
    n = rng.integers(20, 400, size=k)
    v = 1.0 / (n - 3)
    y = rng.normal(0.25 + bias * np.sqrt(v), np.sqrt(v + 0.01))
    return y, v


# --- notes on low power and refusals ------------------------------------------------------------


def test_fewer_than_10_studies_say_power_is_low():
    res = am.random_effects(Y[:8], V[:8])
    for r in (egger_test(res), rank_test(res), trim_and_fill(res), pet_peese(res)):
        assert "power" in r.note and "k = 8" in r.note, type(r).__name__
    full = am.random_effects(Y, V)
    for r in (egger_test(full), rank_test(full), trim_and_fill(full), pet_peese(full)):
        assert r.note == "", type(r).__name__


def test_selection_model_refuses_an_empty_interval():
    res = am.random_effects(Y, V)
    # no molloy2014 study has a one-sided p below 1e-12
    with pytest.raises(ValueError, match=r"no observed p-value falls in the interval\(s\) \(0, 1e-12\]"):
        selection_model(res, steps=(1e-12,))
    with pytest.raises(ValueError, match="steps must lie in"):
        selection_model(res, steps=(1.5,))


def test_selection_model_refuses_too_few_studies():
    y = np.array([0.9, 0.05, 0.8])
    v = np.array([0.04, 0.04, 0.04])  # p < .025, p > .025, p < .025
    with pytest.raises(ValueError, match="too few"):
        selection_model(am.random_effects(y, v), steps=(0.025,))


@pytest.mark.parametrize("fn", [trim_and_fill, leave_one_out, cumulative])
def test_model_without_moderators_required(fn):
    reg = am.meta_regression(Y, V, mods=np.array(MOL["meanage"]))
    with pytest.raises(ValueError, match="only applicable to models without moderators"):
        fn(reg)


def test_three_level_refusals():
    d = REF["data"]["assink2016"]
    tl = am.three_level(d["yi"], d["vi"], d["study"])
    for fn in (rank_test, trim_and_fill, selection_model):
        with pytest.raises(ValueError, match="three-level|dependent"):
            fn(tl)


def test_bad_options_raise():
    res = am.random_effects(Y, V)
    with pytest.raises(ValueError, match="estimator must be 'L0' or 'R0'"):
        trim_and_fill(res, estimator="Q0")
    with pytest.raises(ValueError, match="side must be"):
        trim_and_fill(res, side="up")
    with pytest.raises(ValueError, match="predictor must be"):
        egger_test(res, predictor="ni")
    with pytest.raises(ValueError, match="give vi"):
        pet_peese(Y)
    with pytest.raises(ValueError, match="alternative must be"):
        pet_peese(Y, V, alternative="two.sided")
    with pytest.raises(ValueError, match="method must be 'rosenthal' or 'orwin'"):
        fail_safe_n(Y, V, method="rosenberg")
    with pytest.raises(ValueError, match="order has 3 values but the model has k = 16"):
        cumulative(res, order=[1, 2, 3])


# --- first principles ---------------------------------------------------------------------------


def test_pet_peese_wls_equals_statsmodels():
    """PET/PEESE under model='wls' are statsmodels WLS(y, [1, x], weights=1/v) fits."""
    y, v = _synthetic(bias=1.5)
    pp = pet_peese(y, v)
    for pre, x in (("pet_", np.sqrt(v)), ("peese_", v)):
        fit = sm.WLS(y, sm.add_constant(x), weights=1 / v).fit()
        assert_close(getattr(pp, pre + "estimate"), fit.params[0], TOL["closed"], pre)
        assert_close(getattr(pp, pre + "se"), fit.bse[0], TOL["closed"], pre + "se")
        assert_close(getattr(pp, pre + "slope"), fit.params[1], TOL["closed"], pre + "slope")
        assert_close(getattr(pp, pre + "slope_pval"), fit.pvalues[1], TOL["closed"], pre + "p")
        lo, hi = fit.conf_int()[0]
        assert_close([getattr(pp, pre + "ci_lb"), getattr(pp, pre + "ci_ub")], [lo, hi],
                     TOL["closed"], pre + "ci")


def test_pet_peese_conditional_rule_and_direction():
    y, v = _synthetic(k=60, bias=0.0)  # a clear positive effect: PET's intercept > 0
    pp = pet_peese(y, v)
    assert pp.pet_pval_one_sided < 0.05 and pp.chosen == "PEESE"
    assert pp.estimate == pp.peese_estimate
    neg = pet_peese(-y, v, alternative="greater")  # the effect is negative: no genuine effect
    assert neg.chosen == "PET" and neg.estimate == neg.pet_estimate
    assert pet_peese(-y, v, alternative="less").chosen == "PEESE"


def test_leave_one_out_equals_a_loop_of_fits():
    y, v = _synthetic(k=25)
    for method, test in (("REML", "z"), ("DL", "knha"), ("PM", "z")):
        res = am.random_effects(y, v, method=method, test=test)
        lo = leave_one_out(res)
        for i in (0, 7, 24):
            m = np.arange(25) != i
            f = am.random_effects(y[m], v[m], method=method, test=test)
            got = lo.iloc[i]
            assert_close([got.estimate, got.se, got.pval, got.ci_lb, got.tau2, got.I2, got.QE],
                         [f.estimate, f.se, f.pval, f.ci_lb, f.tau2, f.I2, f.Q],
                         TOL["iterative"], f"{method} {test} study {i}")


def test_influence_equals_textbook_formulas_for_common_effect():
    """Common-effect model: hat = w/sum(w); Cook's D = (b - b_(-i))^2 sum(w); cov_r =
    sum(w) / (sum(w) - w_i); rstudent = (y_i - b_(-i)) / sqrt(v_i + 1/(sum(w) - w_i))."""
    res = am.common_effect(Y, V)
    inf = influence(res)
    w = 1 / V
    W = w.sum()
    b_del = (W * res.estimate - w * Y) / (W - w)
    assert_close(inf["hat"], w / W, TOL["closed"], "hat")
    assert_close(inf["cooks"], (res.estimate - b_del) ** 2 * W, TOL["closed"], "cooks")
    assert_close(inf["cov_r"], W / (W - w), TOL["closed"], "cov_r")
    assert_close(inf["rstudent"], (Y - b_del) / np.sqrt(V + 1 / (W - w)), TOL["closed"], "rst")
    assert_close(inf["estimate"], b_del, TOL["closed"], "estimate")


def test_baujat_common_effect_x_sums_to_Q():
    """Baujat et al. (2002): with a common-effect model the x coordinates are the study
    contributions to Cochran's Q."""
    res = am.common_effect(Y, V)
    assert_close(baujat(res)["x"].sum(), res.Q, TOL["closed"], "sum x = Q")


def test_cumulative_last_row_is_the_full_fit_and_order_is_stable():
    res = am.random_effects(Y, V)
    year = np.array(MOL["year"])
    cu = cumulative(res, order=year)
    last = cu.iloc[-1]
    assert_close([last.estimate, last.se, last.tau2, last.QE], [res.estimate, res.se, res.tau2,
                 res.Q], TOL["iterative"], "last row")
    assert cu["study"].tolist() == (np.argsort(year, kind="stable") + 1).tolist()
    assert cu["order"].tolist() == list(range(1, 17))
    first = cu.iloc[0]
    assert first.tau2 == 0 and first.QE == 0 and first.estimate == Y[cu["study"][0] - 1]
    assert cumulative(res)["study"].tolist() == list(range(1, 17))


def test_trim_and_fill_mirror_symmetry():
    """Negating the effects flips the side and negates the adjusted estimate and filled yi."""
    y, v = _synthetic(k=40, bias=2.0)
    a = trim_and_fill(am.random_effects(y, v))
    b = trim_and_fill(am.random_effects(-y, v))
    assert a.k0 == b.k0 > 0 and {a.side, b.side} == {"left", "right"}
    assert_close(a.estimate, -b.estimate, TOL["iterative"], "estimate")
    assert_close(np.sort(a.filled_yi), np.sort(-b.filled_yi), TOL["iterative"], "filled")
    assert a.filled_yi.size == a.k0 and a.filled_vi.size == a.k0


def test_trim_and_fill_symmetric_funnel_fills_nothing():
    v = np.repeat([0.01, 0.02, 0.04, 0.08], 4)
    d = np.tile([-1.0, 1.0, -0.5, 0.5], 4) * np.sqrt(v)
    tf = trim_and_fill(am.random_effects(0.3 + d, v))
    assert tf.k0 == 0 and tf.filled_yi.size == 0


def test_selection_model_gradient_is_the_derivative_of_the_loglik():
    y, v = _synthetic(k=50, bias=1.0)
    for two_sided in (False, True):
        lik = _StepLik(y, v, np.ones((50, 1)), np.array([0.025, 0.5, 1.0]), two_sided, True)
        theta = np.array([0.2, 0.02, 0.7, 0.4])
        g = lik.value_grad(theta)[1]
        num = np.empty(4)
        for j in range(4):
            h = 1e-6
            tp, tm = theta.copy(), theta.copy()
            tp[j] += h
            tm[j] -= h
            num[j] = (lik.value_grad(tp)[0] - lik.value_grad(tm)[0]) / (2 * h)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6)


def test_selection_model_without_selection_reduces_to_ml():
    """With all delta fixed at 1 the step likelihood is the ML random-effects likelihood, so the
    LRT is non-negative and logLik >= logLik_unadjusted."""
    y, v = _synthetic(k=80, bias=0.0)
    res = am.random_effects(y, v)
    s = selection_model(res)
    ml = am.random_effects(y, v, method="ML")
    assert_close(s.logLik_unadjusted, ml.logLik, TOL["iterative"], "ML logLik")
    lik = _StepLik(y, v, np.ones((80, 1)), np.array([0.025, 1.0]), False, True)
    assert_close(lik.value_grad(np.array([ml.estimate, ml.tau2, 1.0]))[0], ml.logLik,
                 TOL["iterative"], "step likelihood at delta = 1")
    assert s.LRT >= 0 and s.logLik >= s.logLik_unadjusted
    assert s.delta[0] == 1 and np.isnan(s.se_delta[0])


def test_selection_model_less_is_greater_mirrored():
    y, v = _synthetic(k=60, bias=1.0)
    g = selection_model(am.random_effects(y, v), alternative="greater")
    s = selection_model(am.random_effects(-y, v), alternative="less")
    assert_close([g.estimate, g.tau2, g.delta[1], g.LRT], [-s.estimate, s.tau2, s.delta[1],
                 s.LRT], TOL["iterative"], "mirror")


def test_fail_safe_n_formulas():
    z = Y / np.sqrt(V)
    ro = fail_safe_n(Y, V)
    assert ro.fsnum == int(np.ceil((z.sum() / 1.6448536269514722) ** 2 - Y.size))
    ow = fail_safe_n(Y, V, method="orwin", target=0.05)
    assert ow.fsnum == int(np.ceil(Y.size * (Y.mean() - 0.05) / 0.05))
    # metafor's fsn uses |sum z|: the direction of the effects does not matter (issue 12)
    assert fail_safe_n(-Y, V).fsnum == ro.fsnum
    # combined p above alpha: nothing to overturn (z values cancel: +z and -z for each effect)
    assert fail_safe_n(np.r_[Y, -Y], np.r_[V, V]).fsnum == 0


def test_egger_meta_regression_adds_sei_to_the_moderators():
    reg = am.meta_regression(Y, V, mods=np.array(MOL["meanage"]))
    e = egger_test(reg)
    direct = am.meta_regression(Y, V, mods=np.column_stack([MOL["meanage"], np.sqrt(V)]))
    assert_close([e.zval, e.pval, e.estimate], [direct.zval[-1], direct.pval[-1],
                 direct.coef[0]], TOL["iterative"], "egger on a meta-regression")


def test_three_level_leave_one_sample_out_shape():
    d = REF["data"]["assink2016"]
    tl = am.three_level(d["yi"], d["vi"], d["study"])
    lo = leave_one_out(tl)
    counts = pd.Series(d["study"]).value_counts()
    assert len(lo) == counts.size
    assert (lo["k"].to_numpy() == 100 - counts.loc[lo["study"]].to_numpy()).all()


def test_results_render():
    res = am.random_effects(Y, V)
    for r in (egger_test(res), rank_test(res), trim_and_fill(res), pet_peese(res),
              selection_model(res), fail_safe_n(Y, V)):
        s = r.summary()
        assert isinstance(s, pd.DataFrame) and len(s) >= 1
        assert "<table" in r._repr_html_() and repr(r).startswith("<")
    tf = trim_and_fill(res).summary()
    assert {"estimate", "ci_lb", "ci_ub", "r", "r_ci_lb", "r_ci_ub", "k0"} <= set(tf.columns)
    assert list(pet_peese(res).summary()["method"][:2]) == ["PET", "PEESE"]
    assert len(selection_model(res).selection_weights()) == 2
