"""The workbench's headline model and its follow-ups are the stats floor's calls, wired as
issue 12 asks: one dependence handling everywhere, whole samples dropped or added, the
three-level model falling back to random effects when every sample has one effect.

Expected values come from direct calls of the stats floor (am.three_level, am.robust,
am.aggregate, am.random_effects) on the same rows, and, for the d -> r conversion, from
Borenstein et al. (2009, eq. 7.5) worked by hand.
"""

import math

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.workflow import by_sample as bs
from alliance_meta.workflow import moderators as md
from alliance_meta.workflow import syntheses as sy
from alliance_meta.workflow import workbench as wb


def make_effects(one_per_sample: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(12)
    sizes = [1] * 8 if one_per_sample else [3, 1, 2, 1, 2, 1, 1, 2]
    rows = []
    for j, m in enumerate(sizes):
        u = rng.normal(0, 0.08)
        n = int(rng.integers(40, 300))
        for i in range(m):
            rows.append({"es_id": f"S{j}_{i + 1}", "study_id": f"S{j}", "sample_id": f"S{j}_s1",
                         "label": f"Study {j}" + (f" [{i + 1}]" if m > 1 else ""), "n": n,
                         "year": 2000 + 2 * j, "yi": 0.25 + u + rng.normal(0, 0.05),
                         "vi": 1 / (n - 3), "format": "group" if j == 0 else
                         ("individual" if j % 2 else "family"),
                         "rater": "client" if j < 5 else "observer"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def df():
    return make_effects()


def test_three_level_headline_is_the_contain_df_t_test(df):
    hm = wb.headline_model(df)
    ref = am.three_level(df["yi"], df["vi"], df["sample_id"], method="REML", test="t",
                         dfs="contain")
    assert hm.result.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert float(np.ravel(hm.result.ci_lb)[0]) == pytest.approx(float(np.ravel(ref.ci_lb)[0]))
    assert "contain df" in hm.label and "three-level" in hm.label
    assert hm.note == ""


def test_three_level_falls_back_to_random_effects_and_says_so():
    d = make_effects(one_per_sample=True)
    hm = wb.headline_model(d)
    ref = am.random_effects(d["yi"], d["vi"], method="REML", test="z")
    # the three-level model with sigma2_within fixed at 0 is the random-effects model
    assert hm.result.estimate == pytest.approx(ref.estimate, rel=1e-6)
    assert hm.result.fallback and hm.note == hm.result.fallback_message
    assert "fitted as random effects" in hm.label
    # two effects: too few for three_level, so random effects with Knapp-Hartung, said so
    two = wb.headline_model(d.iloc[:2])
    ref2 = am.random_effects(d["yi"][:2], d["vi"][:2], method="REML", test="knha")
    assert two.result.estimate == pytest.approx(ref2.estimate, rel=1e-12)
    assert "falls back" in two.note and "fallback" in two.label
    # its follow-ups by sample still run (a loop of headline fits)
    assert len(bs.leave_one_sample_out(hm)) == len(d)
    assert bs.cumulative_by_sample(hm)["k"].iloc[-1] == len(d)


def test_robust_and_aggregate_headlines(df):
    rb = wb.headline_model(df, "robust")
    re = am.random_effects(df["yi"], df["vi"], method="REML", test="z")
    ref = am.robust(re, df["sample_id"])
    assert float(np.ravel(rb.result.se)[0]) == pytest.approx(float(np.ravel(ref.se)[0]), rel=1e-12)
    assert "CR2" in rb.label and "Satterthwaite" in rb.label
    ag = wb.headline_model(df, "aggregate", rho=0.8)
    comp = am.aggregate(df["yi"], df["vi"], df["sample_id"], rho=0.8)
    ref = am.random_effects(comp["yi"], comp["vi"], method="REML", test="knha")
    assert ag.result.estimate == pytest.approx(ref.estimate, rel=1e-12)
    assert len(ag.points) == df["sample_id"].nunique() and "\u03c1 = 0.8" in ag.label


def test_leave_one_sample_out_drops_whole_samples(df):
    hm = wb.headline_model(df)
    loso = bs.leave_one_sample_out(hm)
    assert len(loso) == df["sample_id"].nunique()
    for _, row in loso.iterrows():
        rest = df[df["sample_id"] != row["sample_id"]]
        ref = am.three_level(rest["yi"], rest["vi"], rest["sample_id"], test="t", dfs="contain")
        assert row["k"] == len(rest)
        assert row["estimate"] == pytest.approx(ref.estimate, rel=1e-10)


def test_cumulative_by_sample_ends_at_the_headline(df):
    hm = wb.headline_model(df)
    cum = bs.cumulative_by_sample(hm)
    assert list(cum["sample_id"]) == list(df.drop_duplicates("sample_id")
                                          .sort_values("year")["sample_id"])
    assert cum["note"].iloc[0].startswith("not estimable")  # one sample: no three-level fit
    assert cum["estimate"].iloc[-1] == pytest.approx(hm.result.estimate, rel=1e-12)
    assert cum["k"].iloc[-1] == len(df)


def test_sensitivity_table_marks_one_headline(df):
    t = wb.sensitivity_table(df, rhos=(0.2, 0.5, 0.8), headline="three-level")
    assert t["headline"].sum() == 1 and t.loc[t["headline"], "dependence"].item() == "three-level"
    assert [x for x in t["dependence"] if str(x).startswith("aggregate")] == [
        "aggregate, rho = 0.2", "aggregate, rho = 0.5", "aggregate, rho = 0.8"]
    assert t["rho"].dropna().tolist() == [0.2, 0.5, 0.8]


def test_moderator_in_the_headline_model(df):
    hm = wb.headline_model(df)
    r = md.moderator_analysis(hm, "format", n_perm=99)
    ref = am.three_level(df["yi"], df["vi"], df["sample_id"], mods=df[["format"]],
                         formula="~ C(format)", test="t", dfs="contain")
    assert r.test_row()["stat"] == pytest.approx(ref.QM, rel=1e-10)
    lev = r.levels.set_index("level")
    # "group" is three effects of one sample: not pooled as k = 3 (issue 12)
    assert lev.loc["group", "k"] == 3 and lev.loc["group", "n_samples"] == 1
    assert math.isnan(lev.loc["group", "r"]) and lev.loc["group", "note"].startswith("not pooled")
    assert bool(lev.loc["individual", "interpret"]) and r.permutation.ok


def test_year_is_centred_and_the_centre_reported(df):
    r = md.moderator_analysis(wb.headline_model(df), "year", continuous=True, n_perm=99)
    assert f"{df['year'].mean():.2f}" in r.note


def test_d_to_r_conversion_and_one_synthesis_per_population():
    pub = pd.DataFrame({
        "synthesis_id": ["A2010", "B2018", "C2015", "D2020"], "population": ["x", "x", "y", "y"],
        "construct": "alliance", "subgroup": "overall", "metric": ["d", "r", "r", "r"],
        "estimate": [0.55, 0.28, 0.2, -0.2], "ci_lb": [0.3, 0.25, 0.1, -0.3],
        "ci_ub": [0.8, 0.31, 0.3, -0.1], "k": [10, 50, 20, 30], "n": [1000, 5000, 2000, 3000],
        "year": [2010, 2018, 2015, 2020], "estimate_id": ["A", "B", "C", "D"]})
    pub["r"] = sy._to_r(pub["metric"], pub["estimate"])
    pub["r_ci_lb"] = sy._to_r(pub["metric"], pub["ci_lb"])
    pub["r_ci_ub"] = sy._to_r(pub["metric"], pub["ci_ub"])
    pub["se_z"] = (np.arctanh(pub["r_ci_ub"]) - np.arctanh(pub["r_ci_lb"])) / (2 * 1.959964)
    # Borenstein et al. 2009 eq. 7.5 with a = 4: .55 / sqrt(.3025 + 4) = .265157...
    assert pub["r"].iloc[0] == pytest.approx(0.55 / math.sqrt(4.3025), rel=1e-12)
    chosen = sy.non_overlapping(pub)
    # x: the most recent (B2018); y: D2020 is negative as printed, so C2015
    assert list(pub.loc[chosen, "estimate_id"]) == ["B", "C"]
    assert sy.eligible(pub).tolist() == [True, True, True, False]


def test_syntheses_forest_draws_every_converted_estimate_and_ours():
    from alliance_meta.viz.syntheses import syntheses_forest

    pub = pd.DataFrame({"population": ["x", "x", "y", "y"], "label": list("ABCD"),
                        "metric": ["r", "d", "r", "other"], "estimate": [.2, .5, .3, 1.0],
                        "r": [.2, .24, .3, np.nan], "r_ci_lb": [.1, np.nan, .2, np.nan],
                        "r_ci_ub": [.3, np.nan, .4, np.nan]})
    ours = pd.DataFrame({"population": ["y"], "subset": ["all"], "r": [.25], "r_ci_lb": [.1],
                         "r_ci_ub": [.4]})
    fig = syntheses_forest(pub, ours, [("summary", .25, .2, .3, .1, .4)],
                           selected=[True, False, True, False])
    gids = [ln.get_gid() for ln in fig.axes[0].lines]
    # three estimates with r (the "other" metric is not converted), two of them selected
    assert gids.count("selected") == 2 and gids.count("estimate") == 1
    assert gids.count("ours") == 1 and gids.count("prediction_interval") == 1
    texts = [t.get_text() for t in fig.texts]
    assert any("(d = 0.5)" in t for t in texts) and "D" not in texts


def test_compressed_table_is_deterministic_and_readable(tmp_path, df):
    """Issue 16: the multiverse's table of thousands of rows is written as .csv.gz without a
    time stamp, so identical runs give identical bytes; pandas reads it back as written."""
    a, b = wb.Outputs(tmp_path / "a", ["png"]), wb.Outputs(tmp_path / "b", ["png"])
    for out in (a, b):
        out.table(df, "big", "a caption", compress=True)
    pa, pb = tmp_path / "a/tables/big.csv.gz", tmp_path / "b/tables/big.csv.gz"
    assert pa.read_bytes() == pb.read_bytes()
    assert not (tmp_path / "a/tables/big.csv").exists()
    back = pd.read_csv(pa)
    np.testing.assert_allclose(back["yi"], df["yi"], rtol=1e-9)
    assert list(back.columns) == list(df.columns)


def test_moved_follow_ups_still_reachable_from_workbench():
    """Notebooks copied into a review by an older `alliance-meta init` call the sample-level
    follow-ups on the workbench; they moved to by_sample and stay reachable there."""
    for name in ("leave_one_sample_out", "cumulative_by_sample", "influence_by_sample",
                 "without_samples"):
        assert getattr(wb, name) is getattr(bs, name)
    with pytest.raises(AttributeError):
        wb.no_such_helper  # noqa: B018


def test_warm_started_refits_equal_cold_fits(df):
    """The by-sample refits start at the full fit's (leave-one-out) or the previous step's
    (cumulative) variance components; each row still equals a cold am.three_level fit on the
    same samples (t-test, contain df)."""
    hm = wb.headline_model(df)
    cum = bs.cumulative_by_sample(hm)
    loso = bs.leave_one_sample_out(hm)
    order = list(cum["sample_id"])
    for j in range(1, len(order)):
        rows = df[df["sample_id"].isin(order[:j + 1])]
        if rows["sample_id"].nunique() < 2 or len(rows) < 3:
            continue
        ref = am.three_level(rows["yi"], rows["vi"], rows["sample_id"], test="t", dfs="contain")
        assert cum["estimate"].iloc[j] == pytest.approx(ref.estimate, rel=1e-9)
        assert cum["tau2"].iloc[j] == pytest.approx(ref.sigma2_between + ref.sigma2_within,
                                                    rel=1e-6, abs=1e-12)
    for _, row in loso.iterrows():
        rest = df[df["sample_id"] != row["sample_id"]]
        ref = am.three_level(rest["yi"], rest["vi"], rest["sample_id"], test="t", dfs="contain")
        assert row["tau2"] == pytest.approx(ref.sigma2_between + ref.sigma2_within, rel=1e-6,
                                            abs=1e-12)
