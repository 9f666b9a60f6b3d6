"""Impossible input raises a clear error naming the problem, never a silent wrong number."""

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am


@pytest.mark.parametrize(
    "yi, vi, match",
    [
        ([0.1, np.nan, 0.2], [0.01, 0.01, 0.01], "yi contains missing"),
        ([0.1, 0.2, 0.3], [0.01, 0.0, 0.01], "vi must be positive"),
        ([0.1, 0.2, 0.3], [0.01, -0.1, 0.01], "positions \\[1\\]"),
        ([0.1], [0.01], "at least 2"),
        ([0.1, 0.2], [0.01], "yi has 2 values but vi has 1"),
        ([0.1, np.inf], [0.01, 0.02], "infinite"),
    ],
)
def test_random_effects_bad_input(yi, vi, match):
    with pytest.raises(ValueError, match=match):
        am.random_effects(yi, vi)


def test_unknown_method_and_test():
    with pytest.raises(ValueError, match="unknown method 'XX'"):
        am.random_effects([0.1, 0.2], [0.01, 0.02], method="XX")
    with pytest.raises(ValueError, match="unknown test"):
        am.random_effects([0.1, 0.2], [0.01, 0.02], test="w")
    # "t" is metafor's newer name for Knapp-Hartung in rma.uni: same numbers as "knha"
    t = am.random_effects([0.1, 0.2, 0.4], [0.01, 0.02, 0.01], test="t")
    kh = am.random_effects([0.1, 0.2, 0.4], [0.01, 0.02, 0.01], test="knha")
    assert (t.se, t.pval, t.ci_lb, t.dfs) == (kh.se, kh.pval, kh.ci_lb, kh.dfs)


def test_fisher_z_rejects_impossible_r_and_n():
    with pytest.raises(ValueError, match="position 1: r=1.0"):
        am.fisher_z([0.2, 1.0], [50, 50])
    with pytest.raises(ValueError, match="n must be greater than 3"):
        am.fisher_z([0.2, 0.3], [50, 3])


def test_meta_regression_missing_moderator_names_row_and_column():
    mods = pd.DataFrame({"year": [2000, np.nan, 2005, 2010]})
    with pytest.raises(ValueError, match="'year' has missing values at rows \\[1\\]"):
        am.meta_regression([0.1, 0.2, 0.3, 0.4], [0.01] * 4, mods=mods, formula="~ year")


def test_meta_regression_too_many_coefficients():
    mods = pd.DataFrame({"g": ["a", "b", "c"]})
    with pytest.raises(ValueError, match="cannot fit 3 coefficients"):
        am.meta_regression([0.1, 0.2, 0.3], [0.01] * 3, mods=mods, formula="~ C(g)")


def test_permutation_needs_moderators_and_robust_needs_clusters():
    res = am.random_effects([0.1, 0.2, 0.3], [0.01] * 3)
    with pytest.raises(ValueError, match="at least two clusters"):
        am.robust(res, ["a", "a", "a"])


def test_three_level_bad_method():
    with pytest.raises(ValueError, match="method must be 'REML' or 'ML'"):
        am.three_level([0.1, 0.2, 0.3], [0.01] * 3, [1, 1, 2], method="DL")


def test_missing_check_reads_the_formula_variables_not_substrings():
    """Issue 12: 'year' (with a gap) is a substring of the formula '~ year2' but not one of its
    variables, so the model fits; the variable that is used and has a gap is named."""
    y, v = [0.1, 0.2, 0.3, 0.4, 0.2], [0.01] * 5
    mods = pd.DataFrame({"year": [2000, np.nan, 2005, 2010, 2012],
                         "year2": [1.0, 2.0, 3.0, 5.0, 4.0]})
    fit = am.meta_regression(y, v, mods=mods, formula="~ year2")
    assert fit.coef_names == ("Intercept", "year2")
    with pytest.raises(ValueError, match="'year' has missing values at rows \\[1\\]"):
        am.meta_regression(y, v, mods=mods, formula="~ np.log(year) + year2")


def test_non_finite_moderator_names_the_column():
    mods = pd.DataFrame({"dose": [1.0, np.inf, 2.0, 3.0, 4.0]})
    with pytest.raises(ValueError, match="'dose' has infinite values at rows \\[1\\]"):
        am.meta_regression([0.1, 0.2, 0.3, 0.4, 0.2], [0.01] * 5, mods=mods, formula="~ dose")
    with pytest.raises(ValueError, match="infinite values in column\\(s\\) \\['mod1'\\]"):
        am.meta_regression([0.1, 0.2, 0.3, 0.4, 0.2], [0.01] * 5, mods=mods["dose"].to_numpy())


def test_rank_deficient_design_names_the_redundant_column():
    """Issue 12: a rank-deficient design raised a bare LinAlgError; now the column is named."""
    y, v = [0.1, 0.2, 0.3, 0.4, 0.2, 0.3], [0.01] * 6
    mods = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6], "x2": [2.0, 4, 6, 8, 10, 12],
                         "g": ["a", "a", "b", "b", "a", "b"], "h": ["u", "u", "w", "w", "u", "w"]})
    with pytest.raises(ValueError, match="not of full rank: column\\(s\\) \\['x2'\\]"):
        am.meta_regression(y, v, mods=mods, formula="~ x + x2")
    with pytest.raises(ValueError, match="not of full rank: column\\(s\\) \\['C\\(h\\)\\[T.w\\]'\\]"):
        am.meta_regression(y, v, mods=mods, formula="~ C(g) + C(h)")
    with pytest.raises(ValueError, match="not of full rank: column\\(s\\) \\['x2'\\]"):
        am.meta_regression(y, v, mods=mods[["x", "x2"]])
