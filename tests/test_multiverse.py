"""The multiverse: grid expansion, kept non-estimable specifications, agreement of every kind of
specification with a direct fit of the same rows, identical tables locally and on a Dask
LocalCluster, and the decomposition.

Expected numbers come from calling the package's own estimators directly on the same rows
(random_effects, three_level, robust, trim_and_fill, pet_peese, meta_regression); those are
checked against metafor in test_vs_metafor_core.py and test_vs_metafor_bias.py. The multiverse
fits the same estimators batched across row sets, so the agreement tolerance is the core's
convergence tolerance (1e-12 on tau2) with room for rounding: 1e-9 relative.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.data import ENUMS, load_studies
from alliance_meta.stats import bias
from alliance_meta.stats.cr2 import cr2_intercept
from alliance_meta.stats.multiverse import (
    BIAS_ADJUSTMENTS,
    DEPENDENCIES,
    MultiverseResult,
    default_factors,
    fits,
    multiverse,
)
from alliance_meta.stats.multiverse.grid import data_reason, model_reason
from alliance_meta.viz.multiverse import (
    estimate_histogram,
    share_significant_plot,
    specification_curve,
)

RTOL = 1e-9  # same estimator, batched vs one fit; both converge to 1e-12 on tau2


def synthetic(k: int = 48, seed: int = 7) -> pd.DataFrame:
    """SYNTHETIC effects (not a literature): correlations around .25 in samples of 1-3
    effects, with the codebook's filter columns."""
    rng = np.random.default_rng(seed)
    sizes = []
    while sum(sizes) < k:
        sizes.append(int(rng.choice([1, 1, 2, 3])))
    sample = np.repeat(np.arange(len(sizes)), sizes)[:k]
    n_s = rng.integers(25, 250, len(sizes))
    n = n_s[sample]
    z = np.arctanh(0.25) + rng.normal(0, 0.12, len(sizes))[sample] + rng.normal(0, 1 / np.sqrt(n - 3))
    pick = lambda opts: np.asarray(opts, dtype=object)[rng.integers(0, len(opts), len(sizes))][sample]  # noqa: E731
    return pd.DataFrame({
        "es_id": [f"e{i}" for i in range(k)], "sample_id": [f"s{j}" for j in sample],
        "n": n, "yi": z, "vi": 1.0 / (n - 3),
        "r_kind": pick(["zero-order", "partial"]), "alliance_rater": pick(["client", "observer"]),
        "alliance_timing": pick(["early", "late"]), "publication_type": pick(["journal", "dissertation"]),
        "modality": pick(["CBT", "psychodynamic"]),
    })


GRID = {
    "method": ["DL", "REML", "PM", "SJ"],
    "test": ["z", "knha"],
    "dependency": list(DEPENDENCIES),
    "min_n": [0, 60],
    "modality": ["all", "CBT"],
    "rater": ["all", "therapist"],  # no therapist-rated effects: a row set with no rows
    "bias": list(BIAS_ADJUSTMENTS),
}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return synthetic()


@pytest.fixture(scope="module")
def result(data) -> MultiverseResult:
    return multiverse(data, GRID, chunk_size=2)


def spec(res: MultiverseResult, **levels) -> pd.Series:
    t = res.table
    sel = np.ones(len(t), dtype=bool)
    defaults = {"min_n": 60, "modality": "CBT", "rater": "all"}
    for key, val in {**defaults, **levels}.items():
        sel &= (t[key] == val).to_numpy()
    assert sel.sum() == 1, levels
    return t[sel].iloc[0]


def rows(data: pd.DataFrame) -> pd.DataFrame:
    return data[(data["n"] >= 60) & (data["modality"] == "CBT")].reset_index(drop=True)


def check(row: pd.Series, est, se, pval, lb, ub) -> None:
    """The row equals the given values (scalars, or the first coefficient of arrays)."""
    assert row["status"] == "ok", row["reason"]
    expected = [float(np.ravel(x)[0]) for x in (est, se, pval, lb, ub)]
    np.testing.assert_allclose([row["estimate"], row["se"], row["pval"], row["ci_lb"],
                                row["ci_ub"]], expected, rtol=RTOL)
    assert row["r"] == pytest.approx(math.tanh(row["estimate"]), rel=1e-15)


# ---------------------------------------------------------------------------------------------
# the grid


def test_default_grid_on_curated_data_splits_the_factorial():
    df = load_studies()
    fac = default_factors(df)
    res = multiverse(df)
    n = math.prod(len(v) for v in fac.values())
    # the full factorial is split into specifications and combinations that are not ones
    assert len(res.table) + len(res.excluded) == n
    assert res.table["spec_id"].tolist() == list(range(len(res.table)))
    both = pd.concat([res.table[list(fac)], res.excluded[list(fac)]]).astype(str)
    assert not both.duplicated().any()
    for f, levels in fac.items():
        assert set(both[f]) == set(map(str, levels))
    assert (res.excluded["reason"].str.len() > 0).all()
    # filter levels come from the data: each keeps at least two effects and not all of them
    for f in ("rater", "timing", "modality"):
        col = {"rater": "alliance_rater", "timing": "alliance_timing"}.get(f, f)
        for lv in fac[f][1:]:
            assert 2 <= (df[col].astype(str) == lv).sum() < len(df)
    assert set(res.table["status"]) <= {"ok", "not estimable"}
    # issue 16: at least half the grid is estimable on our own data
    assert (res.table["status"] == "ok").mean() >= 0.5


def test_partial_factors_hold_the_rest_at_one_level(data):
    res = multiverse(data, {"method": ["ML", "REML"], "min_n": [0, 100]})
    assert len(res.table) == 4
    assert set(res.table["dependency"]) == {"three-level"}
    assert set(res.table["bias"]) == {"none"}
    assert res.varying == ["method", "min_n"]


def test_rows_of_the_grid_come_in_product_order(result):
    expected = [tuple(map(str, e)) for e in itertools.product(*GRID.values())]
    got = [tuple(map(str, g)) for g in result.table[list(GRID)].itertuples(index=False,
                                                                           name=None)]
    out = {tuple(map(str, g)) for g in result.excluded[list(GRID)].itertuples(index=False,
                                                                             name=None)}
    assert got == [e for e in expected if e not in out]
    assert len(got) + len(out) == len(expected)


# ---------------------------------------------------------------------------------------------
# specifications that cannot run are kept, with the reason


def test_impossible_combinations_are_not_specifications(result):
    t, x = result.table, result.excluded
    assert len(t) + len(x) == math.prod(len(v) for v in GRID.values())
    # no therapist-rated effects: an empty row set
    assert not (t["rater"] == "therapist").any()
    ther = x[(x["rater"] == "therapist")]
    model_ok = [model_reason(*r) == "" for r in
                ther[["dependency", "method", "test", "bias"]].itertuples(index=False)]
    assert (ther.loc[model_ok, "reason"] == "no effects match the inclusion filters").all()
    assert any(model_ok)
    # the three-level model is fitted by REML or ML only
    tl = x[(x["dependency"] == "three-level") & (x["method"] == "DL")]
    assert len(tl) and tl["reason"].str.contains("REML or ML").all()
    assert not ((t["dependency"] == "three-level") & (t["method"] == "DL")).any()
    # trim-and-fill only for independent effects; CR2 inference only with Satterthwaite t
    assert set(t.loc[t["bias"] == "trim-and-fill", "dependency"]) == {"aggregate", "first"}
    assert set(t.loc[t["dependency"] == "robust", "test"]) == {"knha"}
    assert set(t.loc[(t["dependency"] == "three-level") & (t["bias"] == "PET-PEESE"),
                     "test"]) == {"knha"}
    assert x.loc[(x["dependency"] == "robust") & (x["rater"] == "all") & (x["test"] == "z")
                 & (x["bias"] != "trim-and-fill"), "reason"].str.startswith("CR2 inference").all()
    ne = t[t["status"] == "not estimable"]
    assert (ne["reason"].str.len() > 0).all()
    assert ne["estimate"].isna().all()
    ok = t[t["status"] == "ok"]
    assert (ok["reason"] == "").all() and ok["estimate"].notna().all()


def test_too_few_effects_give_the_reason():
    d = synthetic(k=48, seed=3)
    d = d[d["sample_id"].isin(d["sample_id"].unique()[:1])]  # one sample
    res = multiverse(d, {"dependency": ["aggregate", "robust", "three-level"],
                         "method": ["REML"]})
    assert res.table.empty
    t = res.excluded.set_index("dependency")
    assert t.loc["aggregate", "reason"] == "aggregate: needs at least 2 samples, got 1"
    assert t.loc["three-level", "reason"] == "three-level: needs at least 2 samples, got 1"


def test_a_failing_method_becomes_a_reason_not_a_crash(data, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(fits, "cr2", boom)  # the CR2 of three-level PET-PEESE
    monkeypatch.setattr(bias.trimfill, "_k0_step", boom)  # the multiverse's trim-and-fill step
    res = multiverse(data, {"method": ["REML"], "test": ["knha"],
                            "dependency": ["three-level", "aggregate"],
                            "bias": list(BIAS_ADJUSTMENTS)})
    t = res.table.set_index(["dependency", "bias"])
    assert t.loc[("three-level", "PET-PEESE"), "reason"] == "RuntimeError: boom"
    assert t.loc[("aggregate", "trim-and-fill"), "reason"] == "RuntimeError: boom"
    assert t.loc[("aggregate", "PET-PEESE"), "status"] == "ok"  # fitted here, not by bias
    assert (t.xs("none", level="bias")["status"] == "ok").all()


def test_identical_row_sets_are_one_specification(data):
    # min_n = 20 keeps every effect (all n >= 25): the same rows as min_n = 0
    assert data["n"].min() >= 20
    res = multiverse(data, {"min_n": [0, 20, 60], "dependency": ["aggregate"]})
    assert list(res.table["min_n"]) == [0, 60]
    assert list(res.excluded["reason"]) == ["the same effects as no filter"]


def test_rules_that_depend_on_the_rows():
    # k and samples of a row set decide which models are specifications
    assert data_reason("aggregate", "none", 0, 0, False) == (
        "no effects match the inclusion filters")
    assert data_reason("robust", "none", 2, 2, True) == ""
    assert data_reason("aggregate", "PET-PEESE", 3, 2, False) == (
        "PET-PEESE: needs at least 3 effects, got 2")
    assert data_reason("robust", "PET-PEESE", 4, 2, False).startswith("PET-PEESE with CR2")
    assert data_reason("first", "none", 5, 5, True).startswith("first: one effect per sample")
    assert data_reason("three-level", "none", 5, 5, True).startswith("three-level: one effect")
    assert model_reason("aggregate", "DL", "z", "trim-and-fill") == ""
    assert model_reason("three-level", "ML", "knha", "none") == ""
    # on data: a filter leaving 2 samples keeps random effects but not the bias adjustments
    d = synthetic(k=48, seed=3)
    two = d[d["sample_id"].isin(d["sample_id"].unique()[:2])]
    res = multiverse(two, {"dependency": ["aggregate"], "bias": list(BIAS_ADJUSTMENTS)})
    assert list(res.table["bias"]) == ["none"]
    assert set(res.excluded["reason"]) == {"trim-and-fill: needs at least 3 effects, got 2",
                                           "PET-PEESE: needs at least 3 effects, got 2"}


def test_beta_factor_drops_beta_converted_effects(data):
    d = data.copy()
    d["stat_type"] = np.where(np.arange(len(d)) % 4 == 0, "beta", "r")
    res = multiverse(d, {"beta": ["include", "drop"], "dependency": ["robust"],
                         "test": ["knha"]})
    t = res.table.set_index("beta")
    assert t.loc["include", "k"] == len(d)
    assert t.loc["drop", "k"] == (d["stat_type"] != "beta").sum()
    kept = d[d["stat_type"] != "beta"]
    rb = am.robust(am.random_effects(kept["yi"], kept["vi"]), kept["sample_id"])
    check(t.loc["drop"], rb.coef, rb.se, rb.pval, rb.ci_lb, rb.ci_ub)
    # a default level only when the data have beta-converted effects
    assert default_factors(d)["beta"] == ["include", "drop"]
    assert default_factors(data)["beta"] == ["include"]


def test_default_grid_at_300_effects_is_mostly_estimable():
    # issue 16: levels from the data and no impossible combinations -> at least half estimable
    d = synthetic(k=300, seed=5)
    fac = default_factors(d)
    # keeps the test quick (the benchmark measures the whole default grid); same grid rule
    fac.update(method=["REML"], test=["knha"], r_kind=["all"], publication=["all"])
    res = multiverse(d, fac, chunk_size=64)
    assert len(res.table) > 500
    assert (res.table["status"] == "ok").mean() >= 0.5


# ---------------------------------------------------------------------------------------------
# agreement with direct fits of the same rows


@pytest.mark.parametrize("method", ["DL", "REML", "PM", "SJ"])
@pytest.mark.parametrize("test", ["z", "knha"])
def test_aggregate_and_first_agree_with_random_effects(result, data, method, test):
    d = rows(data)
    a = am.aggregate(d["yi"], d["vi"], d["sample_id"], rho=0.5)
    fit = am.random_effects(a["yi"], a["vi"], method=method, test=test)
    row = spec(result, dependency="aggregate", method=method, test=test, bias="none")
    check(row, fit.estimate, fit.se, fit.pval, fit.ci_lb, fit.ci_ub)
    assert row["tau2"] == pytest.approx(fit.tau2, rel=RTOL, abs=1e-12)
    assert row["I2"] == pytest.approx(fit.I2, rel=RTOL, abs=1e-9)
    assert row["k"] == len(a) == row["n_samples"]
    first = d.drop_duplicates("sample_id")
    fit = am.random_effects(first["yi"], first["vi"], method=method, test=test)
    check(spec(result, dependency="first", method=method, test=test, bias="none"),
          fit.estimate, fit.se, fit.pval, fit.ci_lb, fit.ci_ub)


@pytest.mark.parametrize("method", ["DL", "REML"])
def test_robust_agrees_with_cr2_on_random_effects(result, data, method):
    d = rows(data)
    rb = am.robust(am.random_effects(d["yi"], d["vi"], method=method), d["sample_id"])
    # knha: CR2 with Satterthwaite t, as robust() (clubSandwich)
    row = spec(result, dependency="robust", method=method, test="knha", bias="none")
    check(row, rb.coef, rb.se, rb.pval, rb.ci_lb, rb.ci_ub)
    assert row["k"] == len(d)
    # z does not apply to CR2 inference: not a specification
    assert not ((result.table["dependency"] == "robust") & (result.table["test"] == "z")).any()


def test_three_level_agrees_with_three_level(result, data):
    d = rows(data)
    for test, theirs in (("z", "z"), ("knha", "t")):
        tl = am.three_level(d["yi"], d["vi"], d["sample_id"], method="REML", test=theirs)
        row = spec(result, dependency="three-level", method="REML", test=test, bias="none")
        check(row, tl.coef, tl.se, tl.pval, tl.ci_lb, tl.ci_ub)
        assert row["tau2"] == pytest.approx(tl.sigma2_between + tl.sigma2_within, rel=1e-12)


@pytest.mark.parametrize("test", ["z", "knha"])
def test_trim_and_fill_agrees_with_bias_module(result, data, test):
    d = rows(data)
    a = am.aggregate(d["yi"], d["vi"], d["sample_id"])
    tf = bias.trim_and_fill(am.random_effects(a["yi"], a["vi"], method="PM", test=test))
    row = spec(result, dependency="aggregate", method="PM", test=test, bias="trim-and-fill")
    check(row, tf.estimate, tf.se, tf.pval, tf.ci_lb, tf.ci_ub)
    assert row["adjustment"] == f"k0 = {tf.k0} ({tf.side})"


def test_pet_peese_agrees_with_bias_module(result, data):
    d = rows(data).drop_duplicates("sample_id")
    pp = bias.pet_peese(d["yi"].to_numpy(), d["vi"].to_numpy(), model="rma", method="REML")
    row = spec(result, dependency="first", method="REML", test="z", bias="PET-PEESE")
    check(row, pp.estimate, pp.se, pp.pval, pp.ci_lb, pp.ci_ub)
    assert row["adjustment"] == pp.chosen
    # knha: the same regressions with Knapp-Hartung tests (meta_regression)
    reg = {lab: am.meta_regression(d["yi"], d["vi"], mods=x, method="REML", test="knha")
           for lab, x in (("PET", np.sqrt(d["vi"])), ("PEESE", d["vi"]))}
    from scipy import stats

    p1 = stats.t.sf(reg["PET"].zval[0], reg["PET"].dfs)
    chosen = reg["PEESE" if p1 < 0.05 else "PET"]
    row = spec(result, dependency="first", method="REML", test="knha", bias="PET-PEESE")
    check(row, chosen.coef[0], chosen.se[0], chosen.pval[0], chosen.ci_lb[0], chosen.ci_ub[0])


def test_pet_peese_robust_and_three_level(result, data):
    d = rows(data)
    from scipy import stats

    regs = {lab: am.robust(am.meta_regression(d["yi"], d["vi"], mods=x, method="SJ"),
                           d["sample_id"]) for lab, x in (("PET", np.sqrt(d["vi"])),
                                                           ("PEESE", d["vi"]))}
    p1 = stats.t.sf(regs["PET"].tval[0], regs["PET"].df[0])
    rb = regs["PEESE" if p1 < 0.05 else "PET"]
    row = spec(result, dependency="robust", method="SJ", test="knha", bias="PET-PEESE")
    check(row, rb.coef[0], rb.se[0], rb.pval[0], rb.ci_lb[0], rb.ci_ub[0])
    tl = am.three_level(d["yi"], d["vi"], d["sample_id"], method="REML")
    pp = bias.pet_peese(tl)
    row = spec(result, dependency="three-level", method="REML", test="knha", bias="PET-PEESE")
    check(row, pp.estimate, pp.se, pp.pval, pp.ci_lb, pp.ci_ub)


def test_vectorised_cr2_equals_robust_for_a_batch():
    d = synthetic(k=60, seed=11)
    y, v = d["yi"].to_numpy(), d["vi"].to_numpy()
    codes = pd.factorize(d["sample_id"])[0]
    fits = [am.random_effects(y, v, method=m) for m in ("DL", "REML", "PM")]
    b, se, df = cr2_intercept(y, v, np.ones((3, y.size, 1)), np.array([f.tau2 for f in fits]),
                               codes)
    for j, f in enumerate(fits):
        rb = am.robust(f, d["sample_id"])
        np.testing.assert_allclose([b[j], se[j], df[j]], [np.ravel(x)[0] for x in (rb.coef, rb.se, rb.df)],
                                   rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# local and Dask give the same table


def test_local_and_dask_localcluster_tables_are_identical(data, result):
    from dask.distributed import Client, LocalCluster

    grid = {**GRID, "method": ["DL", "REML"], "min_n": [0, 60, 100]}
    local = multiverse(data, grid, seed=1, chunk_size=2)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        on_client = multiverse(data, grid, scheduler=client, seed=1, chunk_size=2)
        on_address = multiverse(data, grid, scheduler=cluster.scheduler_address, seed=1,
                                chunk_size=2)
    assert local.n_chunks > 2  # the work really was split
    pd.testing.assert_frame_equal(local.table, on_client.table, check_exact=True)
    pd.testing.assert_frame_equal(local.table, on_address.table, check_exact=True)
    assert on_address.scheduler.startswith("tcp://") and local.scheduler == "local"
    # chunking does not change the numbers beyond the batching tolerance
    one = multiverse(data, grid, seed=1, chunk_size=1000)
    ok = local.table["status"] == "ok"
    assert (one.table["status"] == local.table["status"]).all()
    np.testing.assert_allclose(one.table.loc[ok, "estimate"], local.table.loc[ok, "estimate"],
                               rtol=RTOL)


# ---------------------------------------------------------------------------------------------
# summaries and the decomposition


def test_summary_shares(result):
    s = result.summary().iloc[0]
    ok = result.estimable
    assert s["n_specs"] == len(result.table)
    assert s["n_estimable"] == len(ok)
    assert s["share_sig_positive"] + s["share_sig_negative"] + s["share_not_sig"] == pytest.approx(1)
    assert s["share_sig_positive"] == pytest.approx(
        ((ok["pval"] < 0.05) & (ok["estimate"] > 0)).mean())
    assert s["median_r"] == pytest.approx(ok["r"].median())
    assert s["min_r"] <= s["median_r"] <= s["max_r"]
    by = result.summary(by="dependency")
    assert list(by["level"]) == list(DEPENDENCIES)
    assert by["n_specs"].sum() == len(result.table)
    assert "<table" in result._repr_html_()


def test_decompose_on_a_balanced_grid_sums_to_one(data):
    grid = {"method": ["DL", "REML"], "test": ["z", "knha"],
            "dependency": ["aggregate", "first"], "min_n": [0, 60], "modality": ["all", "CBT"]}
    res = multiverse(data, grid)
    assert (res.table["status"] == "ok").all()
    dec = res.decompose().set_index("factor")
    # the test changes the CI, not the estimate: no share of the variance
    assert dec.loc["test", "eta2"] == pytest.approx(0, abs=1e-12)
    main = dec.drop("interactions/residual")
    assert ((main["eta2"] >= 0) & (main["eta2"] <= 1)).all()
    # balanced and complete: the main effects are orthogonal, so the one-way eta2 equal the
    # unique shares and, with the interactions, add up to 1
    np.testing.assert_allclose(main["eta2"], main["unique"], atol=1e-10)
    assert main["eta2"].sum() + dec.loc["interactions/residual", "eta2"] == pytest.approx(1)
    assert list(main["eta2"]) == sorted(main["eta2"], reverse=True)


def test_decompose_on_unbalanced_result(result):
    dec = result.decompose()
    main = dec[dec["factor"] != "interactions/residual"]
    assert set(main["factor"]) <= set(result.varying)
    assert ((main["unique"] >= -1e-12) & (main["unique"] <= 1 + 1e-12)).all()
    assert 0 <= dec["eta2"].iloc[-1] <= 1


# ---------------------------------------------------------------------------------------------
# figures (structure, not pixels)


def test_figures_structure(result):
    n = len(result.estimable)
    fig = specification_curve(result)
    ax, axc = fig.axes
    assert len(ax.collections[0].get_segments()) == n  # one CI per estimable specification
    assert ax.get_ylabel() == "r with 95% CI"
    labels = [t.get_text() for t in axc.get_yticklabels()]
    assert len(labels) == sum(len(GRID[f]) for f in result.varying)
    assert "dependency: three-level" in labels
    fig = estimate_histogram(result)
    assert fig.axes[0].get_xlabel().startswith("r")
    fig = share_significant_plot(result, by="bias")
    assert len(fig.axes[0].get_yticklabels()) == 1 + len(BIAS_ADJUSTMENTS)
    empty = multiverse(synthetic(), {"rater": ["therapist"]})
    assert len(specification_curve(empty).axes) == 2  # says so instead of failing


def _above(fig, legend, ax) -> bool:
    fig.canvas.draw()
    return legend.get_window_extent().y0 >= ax.get_window_extent().y1 - 1e-6


def test_figure_labels_sit_off_the_data_and_counts_are_integers(result):
    fig = specification_curve(result)
    ax, axc = fig.axes
    leg = ax.get_legend()
    assert _above(fig, leg, ax)  # the legend is above the curve, not on it
    texts = [t.get_text() for t in leg.get_texts()]
    med = float(np.median(result.estimable["r"]))
    assert f"median r = {med:.2f}" in texts
    assert not ax.texts  # no label drawn inside the data area
    ticks = axc.get_xticks()
    assert np.allclose(ticks, np.round(ticks))  # specification ranks are whole numbers
    fig = estimate_histogram(result)
    hax = fig.axes[0]
    assert _above(fig, hax.get_legend(), hax) and not hax.texts
    ticks = hax.get_yticks()
    assert np.allclose(ticks, np.round(ticks))  # counts of specifications


def test_prespecified_specification_is_marked(result):
    pre = {"method": "REML", "test": "knha", "dependency": "three-level", "min_n": 0,
           "modality": "all", "rater": "all", "bias": "none"}
    t = result.table
    row = t[(t["method"] == "REML") & (t["test"] == "knha") & (t["dependency"] == "three-level")
            & (t["min_n"] == 0) & (t["modality"] == "all") & (t["rater"] == "all")
            & (t["bias"] == "none")].iloc[0]
    fig = specification_curve(result, prespecified=pre)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"pre-specified: r = {row['r']:.2f}" in texts
    ok = result.estimable.sort_values(["r", "spec_id"], kind="stable")
    x = int(np.flatnonzero(ok["spec_id"].to_numpy() == row["spec_id"])[0])
    marks = [c.get_offsets() for c in ax.collections if len(c.get_offsets()) == 1]
    assert any(np.allclose(m[0], [x, row["r"]]) for m in marks)
    with pytest.raises(ValueError, match="matches"):
        specification_curve(result, prespecified={"method": "REML"})
    with pytest.raises(ValueError, match="not a specification"):
        specification_curve(result, prespecified={**pre, "method": "DL"})


# ---------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("factors, match", [
    ({"method": ["XX"]}, "unknown level"),
    ({"rater": ["therapits"]}, "unknown level"),
    ({"colour": ["red"]}, "unknown factor"),
    ({"min_n": [-5]}, "min_n"),
    ({"method": []}, "no levels"),
    ({"test": ["z", "z"]}, "twice"),
])
def test_bad_factors_raise(data, factors, match):
    # filter levels are checked against the codebook's vocabularies, which the data floor passes
    with pytest.raises(ValueError, match=match):
        multiverse(data, factors, vocabularies=ENUMS)


def test_scheduler_without_dask_names_the_extra(data, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "alliance-meta\[dask\]"'):
        multiverse(data, {"method": ["DL"]}, scheduler="tcp://127.0.0.1:8786")


def test_bad_scheduler_and_data(data):
    with pytest.raises(ValueError, match="scheduler"):
        multiverse(data, {"method": ["DL"]}, scheduler=42)
    with pytest.raises(ValueError, match="yi"):
        multiverse(data.drop(columns="yi"))
    bad = data.copy()
    bad.loc[0, "vi"] = -1
    with pytest.raises(ValueError, match="positive"):
        multiverse(bad)


def test_specification_curve_choices_as_an_image_above_the_threshold(result, monkeypatch):
    """Issue 16: above _IMAGE_ABOVE specifications the choices panel is one image (290k
    markers took a second at 24k specifications): one sharp row per choice, coloured exactly
    where some specification made it, white where none did."""
    import alliance_meta.viz.multiverse as mv

    monkeypatch.setattr(mv, "_IMAGE_ABOVE", 10)
    monkeypatch.setattr(mv, "_IMAGE_COLUMNS", 7)
    fig = specification_curve(result)
    axc = fig.axes[1]
    [img] = axc.get_images()
    arr = np.asarray(img.get_array())
    rows = [(f, str(lv)) for f in result.varying for lv in result.factors[f]]
    assert arr.shape == (len(rows), 7, 4)
    ok = result.estimable.sort_values(["r", "spec_id"], kind="stable")
    bins = np.array_split(np.arange(len(ok)), 7)  # the image's columns, in curve order
    for i, (f, lv) in enumerate(rows):
        chosen = ok[f].astype(str).to_numpy() == lv
        for j, b in enumerate(bins):
            white = np.allclose(arr[i, j, :3], 1.0)
            assert white == (not chosen[b].any()), (f, lv, j)


def test_table_does_not_depend_on_how_row_sets_are_chunked():
    """A row set's fits stop where they would alone (converged data sets of a stacked fit are
    held, not iterated on until the last converges), so the table is identical, to the last
    bit, whatever the chunk size (and so whatever the split across processes or Dask
    workers). It differed by up to 1e-11 in tau2, and by 5e-4 in a degenerate CR2 interval."""
    grid = {**GRID, "modality": ["all", "CBT", "psychodynamic"], "min_n": [0, 60, 100]}
    d = synthetic(k=120, seed=3)
    one = multiverse(d, grid, vocabularies=ENUMS, chunk_size=1).table
    for size in (7, 32):
        pd.testing.assert_frame_equal(multiverse(d, grid, vocabularies=ENUMS,
                                                 chunk_size=size).table, one, check_exact=True)


def test_row_set_cache_reads_unchanged_row_sets_with_identical_results(tmp_path):
    """Issue 16: with ``cache=``, a re-run reads every row set; after a sample is added only
    the row sets that contain it are fitted; the table equals an uncached run's exactly; the
    file keeps the last run's row sets only (no pickles: numpy reads it with
    allow_pickle=False)."""
    grid = {**GRID, "modality": ["all", "CBT", "psychodynamic"], "min_n": [0, 60, 100]}
    base = synthetic(k=80)
    store = tmp_path / "multiverse.npz"
    first = multiverse(base, grid, vocabularies=ENUMS, cache=store, chunk_size=4)
    assert first.n_cached == 0 and store.exists()
    again = multiverse(base, grid, vocabularies=ENUMS, cache=store)
    assert again.n_cached > 0
    pd.testing.assert_frame_equal(again.table, first.table, check_exact=True)
    with np.load(store, allow_pickle=False) as z:
        keys_before = set(z["keys"])
    new = synthetic(k=2, seed=99).assign(sample_id="new", es_id=["n1", "n2"],
                                         modality="CBT", n=40, vi=1 / 37)
    grown = pd.concat([base, new], ignore_index=True)
    cached = multiverse(grown, grid, vocabularies=ENUMS, cache=store)
    assert 0 < cached.n_cached < again.n_cached
    pd.testing.assert_frame_equal(cached.table, multiverse(grown, grid, vocabularies=ENUMS).table,
                                  check_exact=True)
    with np.load(store, allow_pickle=False) as z:
        kept = set(z["keys"])
    assert cached.n_cached < len(kept) <= cached.n_rowsets  # the row sets this run used
    assert not kept >= keys_before  # the row sets the new sample changed are gone
