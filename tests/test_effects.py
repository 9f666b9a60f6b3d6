"""Conversions to r, checked against the formulas' hand-computed values and known identities."""

import numpy as np
import pytest

import alliance_meta as am


def test_t_and_F_agree():
    # t(48) = 2.5 and F(1, 48) = 6.25 describe the same effect: r = 2.5 / sqrt(6.25 + 48)
    expect = 2.5 / np.sqrt(6.25 + 48)
    assert am.r_from_t(2.5, 48) == pytest.approx(expect)
    assert am.r_from_F(6.25, 48) == pytest.approx(expect)


def test_d_to_r_equal_and_unequal_groups():
    # Borenstein et al. (2009) eq. 7.5: a = (n1+n2)^2/(n1 n2) = 4 for equal groups
    assert am.r_from_d(0.5) == pytest.approx(0.5 / np.sqrt(0.25 + 4))
    assert am.r_from_d(0.5, 30, 10) == pytest.approx(0.5 / np.sqrt(0.25 + 40**2 / 300))


def test_chi2_and_beta():
    assert am.r_from_chi2(4.0, 100) == pytest.approx(0.2)
    # Peterson & Brown (2005, J Appl Psychol 90:175-181): r = .98 beta + .05 lambda, lambda = 1
    # for beta >= 0; hand-computed: .98 * .2 + .05 = .246, .98 * -.2 = -.196
    np.testing.assert_allclose(am.r_from_beta([0.2, -0.2, 0.0]), [0.246, -0.196, 0.05])


def test_beta_is_converted_on_the_aligned_scale():
    """Issue 12: the +.05 is decided after alignment. A beta of -.33 on an outcome scored so
    that lower is better (sign -1) and a beta of .33 on one where higher is better (sign +1)
    are the same aligned effect: both give r = .98 * .33 + .05 = .3734."""
    r = am.to_r(["beta", "beta", "beta", "r"], [-0.33, 0.33, 0.33, 0.33], [80] * 4,
                sign=[-1, 1, -1, -1])
    np.testing.assert_allclose(r, [0.3734, 0.3734, -0.98 * 0.33, -0.33])


def test_to_r_applies_sign_and_rejects_unknown():
    r = am.to_r(["r", "t", "F"], [-0.3, 2.0, 4.0], [50, 50, 50], df=[np.nan, 48, 48],
                sign=[-1, 1, -1])
    np.testing.assert_allclose(r, [0.3, 2 / np.sqrt(52), -np.sqrt(4 / 52)])
    with pytest.raises(ValueError, match="unknown stat_type 'OR'"):
        am.to_r(["OR"], [2.0], [50])


def test_fisher_z_round_trip():
    r = np.array([-0.9, -0.3, 0.0, 0.275, 0.8])
    z, v = am.fisher_z(r, np.array([10, 20, 30, 40, 50]))
    np.testing.assert_allclose(am.z_to_r(z), r)
    np.testing.assert_allclose(v, 1 / np.array([7, 17, 27, 37, 47]))
    assert isinstance(am.z_to_r(0.2), float)


def test_aggregate_single_effect_unchanged_and_full_correlation():
    ag = am.aggregate([0.2, 0.4, 0.1], [0.01, 0.04, 0.02], ["a", "b", "b"], rho=1.0)
    assert ag.yi.tolist() == pytest.approx([0.2, 0.25])
    # rho = 1: var of the mean = ((sqrt(.04) + sqrt(.02)) / 2)^2
    assert ag.vi[1] == pytest.approx(((0.2 + np.sqrt(0.02)) / 2) ** 2)
    assert ag.vi[0] == pytest.approx(0.01)
