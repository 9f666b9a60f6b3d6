"""Figures (alliance_meta.plots) tested on content: rows, labels, marker positions, axis units,
layout (no overlapping text at k = 150), and byte-identical output from save_figure.

Data: metadat's molloy2014 (k = 16, Fisher's z) and mcdaniel1994 (k = 145) as stored under
"data" in tests/reference/metafor_core.json, and synthetic data drawn with numpy (marked
SYNTHETIC). Expected positions are computed from the fitted results in the test: the figures
must show the numbers of the models, on the r scale for measure ZCOR (r = tanh z).
"""

import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from scipy import stats  # noqa: E402

import alliance_meta as am  # noqa: E402
from alliance_meta import plots  # noqa: E402

DATA = json.loads((Path(__file__).parent / "reference" / "metafor_core.json").read_text())["data"]


@pytest.fixture(scope="module")
def molloy():
    d = DATA["molloy2014"]
    return pd.DataFrame({k: d[k] for k in ("yi", "vi", "meanage", "design")})


@pytest.fixture(scope="module")
def molloy_res(molloy):
    return am.random_effects(molloy.yi, molloy.vi)


def synthetic(k: int, seed: int = 1) -> pd.DataFrame:
    """SYNTHETIC data: true r = .25 with between-study SD 0.1 on z, n from 20 to 400."""
    rng = np.random.default_rng(seed)
    n = rng.integers(20, 400, size=k)
    z = rng.normal(np.arctanh(0.25), 0.1, size=k) + rng.normal(0, 1 / np.sqrt(n - 3))
    return pd.DataFrame(
        {
            "yi": z,
            "vi": 1 / (n - 3),
            "label": [f"Synthetic study {i + 1:03d} ({2000 + i % 25})" for i in range(k)],
            "group": np.array(["CBT", "Psychodynamic", "Internet-delivered"])[np.arange(k) % 3],
        }
    )


def texts(fig, gid):
    return [t for t in fig.findobj(Text) if t.get_gid() == gid and t.get_text()]


def by_gid(ax, gid):
    return [a for a in ax.get_children() if a.get_gid() == gid]


def main_ax(fig):
    return fig.axes[0]


def assert_no_overlap(fig, tol_px: float = 0.5):
    """Every visible non-empty text lies inside the figure and overlaps no other text."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    hidden = set()  # labels of ticks outside the view interval are not drawn
    for ax_ in fig.axes + [c for a in fig.axes for c in a.child_axes]:
        for axis in (ax_.xaxis, ax_.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not lo - 1e-9 <= tick.get_loc() <= hi + 1e-9:
                    hidden |= {id(tick.label1), id(tick.label2)}
    ts = [t for t in fig.findobj(Text)
          if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    b = np.array([t.get_window_extent(r).extents for t in ts])  # x0, y0, x1, y1 in pixels
    W, H = fig.bbox.width, fig.bbox.height
    outside = (b[:, 0] < -1) | (b[:, 1] < -1) | (b[:, 2] > W + 1) | (b[:, 3] > H + 1)
    assert not outside.any(), [ts[i].get_text() for i in np.flatnonzero(outside)]
    x0, y0, x1, y1 = (b[:, j] for j in range(4))
    ov = (
        (x0[:, None] < x1[None, :] - tol_px) & (x0[None, :] < x1[:, None] - tol_px)
        & (y0[:, None] < y1[None, :] - tol_px) & (y0[None, :] < y1[:, None] - tol_px)
    )
    np.fill_diagonal(ov, False)
    pairs = [(ts[i].get_text(), ts[j].get_text()) for i, j in zip(*np.nonzero(ov), strict=True) if i < j]
    assert not pairs, pairs[:5]
    return len(ts)


# ---------------------------------------------------------------------------------------------
# forest plot


def test_forest_one_row_per_study_plus_pooled_rows(molloy_res):
    res = molloy_res
    labels = [f"Molloy study {i + 1}" for i in range(res.k)]
    fig = plots.forest_plot(res, labels=labels)
    ax = main_ax(fig)
    (markers,) = by_gid(ax, "study_markers")
    xy = markers.get_offsets()
    assert len(xy) == res.k == 16
    # positions: r = tanh(yi), one row per study in input order
    np.testing.assert_allclose(xy[:, 0], np.tanh(res.yi), rtol=1e-12)
    assert list(xy[:, 1]) == list(range(res.k))
    # marker area proportional to the model weight
    sizes = markers.get_sizes()
    np.testing.assert_allclose(sizes / sizes.max(), res.weights / res.weights.max(), rtol=1e-12)
    assert [t.get_text() for t in texts(fig, "label:study")] == labels
    # pooled rows: the overall diamond and the prediction interval, nothing for subgroups
    assert len(by_gid(ax, "summary_overall")) == 1 and not by_gid(ax, "summary_subgroup")
    assert [t.get_text() for t in texts(fig, "label:summary")] == ["Random-effects model (REML)"]
    assert [t.get_text() for t in texts(fig, "label:pi")] == ["Prediction interval"]
    # the diamond spans the back-transformed CI, its tip at tanh(estimate)
    (dia,) = by_gid(ax, "summary_overall")
    v = dia.get_xy()
    assert v[:, 0].min() == pytest.approx(np.tanh(res.ci_lb), rel=1e-12)
    assert v[:, 0].max() == pytest.approx(np.tanh(res.ci_ub), rel=1e-12)
    assert v[1, 0] == pytest.approx(np.tanh(res.estimate), rel=1e-12)
    (pi,) = by_gid(ax, "prediction_interval")
    np.testing.assert_allclose(pi.get_xdata(), np.tanh([res.pi_lb, res.pi_ub]), rtol=1e-12)
    # text columns: one weight per study plus 100% for the pooled row; r [95% CI] per row
    w = [t.get_text() for t in texts(fig, "weight")]
    assert len(w) == res.k + 1 and w[-1] == "100%"
    assert sum(float(s.rstrip("%")) for s in w[:-1]) == pytest.approx(100, abs=0.1 * res.k)
    ci = [t.get_text() for t in texts(fig, "ci_text")]
    assert len(ci) == res.k + 2  # studies, pooled, prediction interval
    crit = stats.norm.ppf(0.975)
    lb = np.tanh(res.yi - crit * np.sqrt(res.vi))
    ub = np.tanh(res.yi + crit * np.sqrt(res.vi))
    i = 10  # a study with a negative estimate: printed with a true minus sign
    assert np.tanh(res.yi[i]) < 0
    assert ci[i] == f"{np.tanh(res.yi[i]):.2f} [{lb[i]:.2f}, {ub[i]:.2f}]".replace("-", "\u2212")
    # study 1's lower bound is a tiny negative number: printed as 0.00, never as "-0.00"
    assert -0.005 < lb[0] < 0 and ci[0] == f"{np.tanh(res.yi[0]):.2f} [0.00, {ub[0]:.2f}]"
    assert ci[res.k] == (
        f"{res.r:.2f} [{np.tanh(res.ci_lb):.2f}, {np.tanh(res.ci_ub):.2f}]".replace("-", "\u2212")
    )
    headers = [t.get_text() for t in texts(fig, "header")]
    assert headers == ["Study", "Weight", "r [95% CI]"]


def test_forest_axis_in_r_units():
    # SYNTHETIC extremes: z up to +/-3 (r = +/-0.995) with wide CIs that pass +/-1 on the z scale
    yi = np.array([-3.0, -1.0, 0.0, 1.5, 3.0])
    vi = np.array([0.5, 0.3, 0.2, 0.4, 0.6])
    res = am.random_effects(yi, vi)
    fig = plots.forest_plot(res)
    ax = main_ax(fig)
    assert "r" in ax.get_xlabel() and "Correlation" in ax.get_xlabel()
    lo, hi = ax.get_xlim()
    assert -1 <= lo < hi <= 1
    ticks = ax.get_xticks()
    assert len(ticks) >= 3 and ticks.min() >= -1 and ticks.max() <= 1
    (ci,) = by_gid(ax, "study_ci")
    seg = np.concatenate(ci.get_segments())
    assert np.abs(seg[:, 0]).max() <= 1


def test_forest_not_back_transformed_for_other_measures():
    # SYNTHETIC standardized mean differences (measure GEN): no tanh, no clipping to [-1, 1]
    yi, vi = np.array([0.2, 1.4, 2.1, 0.8]), np.array([0.05, 0.04, 0.09, 0.02])
    res = am.random_effects(yi, vi, measure="GEN")
    fig = plots.forest_plot(res)
    ax = main_ax(fig)
    (markers,) = by_gid(ax, "study_markers")
    np.testing.assert_allclose(markers.get_offsets()[:, 0], yi)
    assert ax.get_xlabel() == "Effect size" and ax.get_xlim()[1] > 2.1
    assert texts(fig, "header")[-1].get_text() == "Estimate [95% CI]"


def test_forest_subgroups(molloy, molloy_res):
    res = molloy_res
    fig = plots.forest_plot(res, groups=molloy.design)
    ax = main_ax(fig)
    levels = list(pd.unique(molloy.design))
    assert [t.get_text() for t in texts(fig, "label:group")] == levels
    (markers,) = by_gid(ax, "study_markers")
    assert len(markers.get_offsets()) == res.k
    # one diamond per subgroup, at the estimate of subgroup_analysis (same method and test)
    sg = am.subgroup_analysis(molloy.yi, molloy.vi, molloy.design, method=res.method)
    dias = by_gid(ax, "summary_subgroup")
    assert len(dias) == len(levels) == 2
    for dia, lev in zip(dias, levels, strict=True):
        assert dia.get_xy()[1, 0] == pytest.approx(np.tanh(sg.groups[lev].estimate), rel=1e-10)
    assert len(by_gid(ax, "summary_overall")) == 1
    assert len(texts(fig, "label:summary")) == 3
    note = [t.get_text() for t in texts(fig, "note")]
    assert any(f"Test for subgroup differences: Q(1) = {sg.Q_between:.2f}" in t for t in note)
    # studies of a group are listed under its heading
    y_head = {t.get_text(): t.get_position()[1] for t in texts(fig, "label:group")}
    # (markers are drawn block by block, input order kept within a block)
    g = molloy.design.to_numpy()
    order = np.concatenate([np.flatnonzero(g == lev) for lev in levels])
    xy = markers.get_offsets()
    np.testing.assert_allclose(xy[:, 0], np.tanh(res.yi[order]), rtol=1e-12)
    n1 = int((g == levels[0]).sum())
    assert y_head[levels[0]] < xy[:n1, 1].min()
    assert xy[:n1, 1].max() < y_head[levels[1]] < xy[n1:, 1].min()


def test_forest_k150_grows_and_no_text_overlaps():
    d = synthetic(150)
    res = am.random_effects(d.yi, d.vi)
    small = plots.forest_plot(am.random_effects(d.yi[:15], d.vi[:15]))
    fig = plots.forest_plot(res, labels=d.label, groups=d.group, title="SYNTHETIC k = 150",
                            full=True)
    assert fig.get_size_inches()[1] > 6 * small.get_size_inches()[1]
    n = assert_no_overlap(fig)
    assert n >= 3 * 150  # label, weight and CI text for every study were all checked
    assert_no_overlap(small)
    # the check itself catches overlap: rows squeezed to 0.06 in cannot hold 8 pt text
    with pytest.raises(AssertionError):
        assert_no_overlap(plots.forest_plot(res, labels=d.label, row_height=0.06, full=True))


def test_forest_mcdaniel_k145_no_overlap():
    d = DATA["mcdaniel1994"]
    res = am.random_effects(d["yi"], d["vi"])
    fig = plots.forest_plot(res, groups=d["type"], full=True)
    assert len(by_gid(main_ax(fig), "study_markers")[0].get_offsets()) == 145
    assert len(by_gid(main_ax(fig), "summary_subgroup")) == len(set(d["type"]))
    assert_no_overlap(fig)


def test_forest_on_given_axes(molloy_res):
    fig0 = Figure(figsize=(9, 6))
    ax = fig0.add_axes((0.3, 0.1, 0.4, 0.85))
    fig = plots.forest_plot(molloy_res, ax=ax)
    assert fig is fig0 and len(fig.axes) == 1


def test_forest_bad_input(molloy_res):
    with pytest.raises(ValueError, match="forest_plot: labels has 3 entries but the model has k = 16"):
        plots.forest_plot(molloy_res, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="forest_plot: groups has 2 entries"):
        plots.forest_plot(molloy_res, groups=["a", "b"])
    with pytest.raises(ValueError, match="forest_plot: groups has missing values"):
        plots.forest_plot(molloy_res, groups=[None] + ["a"] * 15)
    with pytest.raises(ValueError, match="forest_plot: needs a fitted model with estimate, ci_lb and ci_ub"):
        plots.forest_plot({"yi": [0.1, 0.2]})
    with pytest.raises(ValueError, match="xlim"):
        plots.forest_plot(molloy_res, xlim=(0.5, 0.1))
    with pytest.raises(ValueError, match="forest_plot: ax must be a matplotlib Axes"):
        plots.forest_plot(molloy_res, ax="left")


def test_forest_xlim_clips_with_arrows(molloy_res):
    fig = plots.forest_plot(molloy_res, xlim=(0.0, 0.3))
    ax = main_ax(fig)
    assert ax.get_xlim() == (0.0, 0.3)
    lb = np.tanh(molloy_res.yi - stats.norm.ppf(0.975) * np.sqrt(molloy_res.vi))
    ub = np.tanh(molloy_res.yi + stats.norm.ppf(0.975) * np.sqrt(molloy_res.vi))
    (left,) = by_gid(ax, "ci_arrow_left")
    (right,) = by_gid(ax, "ci_arrow_right")
    assert len(left.get_offsets()) == int((lb < 0).sum())
    assert len(right.get_offsets()) == int((ub > 0.3).sum())


# ---------------------------------------------------------------------------------------------
# funnel plot


def test_funnel_points_contours_and_filled(molloy_res):
    res = molloy_res
    # SYNTHETIC filled studies: any object with filled_yi / filled_vi arrays is accepted
    tf = SimpleNamespace(filled_yi=np.array([-0.05, 0.01, 0.02]), filled_vi=np.array([0.02, 0.01, 0.005]),
                         estimate=0.1)
    fig = plots.funnel_plot(res, trimfill=tf)
    ax = main_ax(fig)
    (obs,) = by_gid(ax, "studies")
    np.testing.assert_allclose(obs.get_offsets(), np.column_stack([res.yi, np.sqrt(res.vi)]))
    (filled,) = by_gid(ax, "filled")
    np.testing.assert_allclose(filled.get_offsets(), np.column_stack([tf.filled_yi, np.sqrt(tf.filled_vi)]))
    assert filled.get_facecolor()[0][:3].tolist() == [1.0, 1.0, 1.0]  # open circles
    assert by_gid(ax, "adjusted_estimate")[0].get_xdata()[0] == 0.1
    # SE axis inverted (0 on top) and the pooled estimate drawn
    y0, y1 = ax.get_ylim()
    assert y1 == 0 and y0 > np.sqrt(res.vi.max())
    assert by_gid(ax, "pooled_estimate")[0].get_xdata()[0] == pytest.approx(res.estimate)
    # 3 contour levels: 4 regions on each side of 0; the p > .10 region ends at z = 1.645 SE
    regions = by_gid(ax, "contour_region")
    assert len(regions) == 8
    verts = np.concatenate([p.vertices for p in regions[1].get_paths()])
    smax = y0
    at_bottom = verts[np.isclose(verts[:, 1], smax)]
    assert np.abs(at_bottom[:, 0]).max() == pytest.approx(stats.norm.ppf(0.95) * smax, rel=1e-9)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:4] == ["p > .10", ".05 < p \u2264 .10", ".01 < p \u2264 .05", "p \u2264 .01"]
    assert "Filled studies (k0 = 3)" in labels
    # r axis on top for Fisher's z
    assert ax.get_xlabel() == "Fisher's z"
    assert ax.child_axes[0].get_xlabel() == "Correlation (r)"


def test_funnel_without_trimfill_and_no_contours(molloy_res):
    fig = plots.funnel_plot(molloy_res, contours=())
    ax = main_ax(fig)
    assert len(by_gid(ax, "studies")[0].get_offsets()) == 16
    assert not by_gid(ax, "filled")
    assert len(by_gid(ax, "contour_region")) == 2  # one unshaded region on each side


def test_funnel_bad_input(molloy_res):
    with pytest.raises(ValueError, match="funnel_plot: contours must be confidence levels"):
        plots.funnel_plot(molloy_res, contours=(0.9, 95))
    with pytest.raises(ValueError, match="funnel_plot: trimfill must have filled_yi and filled_vi"):
        plots.funnel_plot(molloy_res, trimfill=SimpleNamespace(k0=2))
    with pytest.raises(ValueError, match="filled_yi has 2 values but filled_vi has 1"):
        plots.funnel_plot(molloy_res, trimfill=SimpleNamespace(filled_yi=[0, 1], filled_vi=[1]))
    with pytest.raises(ValueError, match="positive vi"):
        plots.funnel_plot(molloy_res, trimfill=SimpleNamespace(filled_yi=[0], filled_vi=[0]))


# ---------------------------------------------------------------------------------------------
# bubble, Baujat, leave-one-out, cumulative, orchard


def test_bubble_plot(molloy):
    reg = am.meta_regression(molloy.yi, molloy.vi, mods=molloy, formula="~ meanage")
    fig = plots.bubble_plot(reg, "meanage")
    ax = main_ax(fig)
    (pts,) = by_gid(ax, "studies")
    np.testing.assert_allclose(pts.get_offsets(), np.column_stack([molloy.meanage, np.tanh(molloy.yi)]))
    w = 1 / (reg.vi + reg.tau2)
    np.testing.assert_allclose(pts.get_sizes() / pts.get_sizes().max(), w / w.max(), rtol=1e-12)
    (line,) = by_gid(ax, "fit")
    x = line.get_xdata()
    np.testing.assert_allclose(line.get_ydata(), np.tanh(reg.coef[0] + reg.coef[1] * x), rtol=1e-10)
    assert x.min() == molloy.meanage.min() and x.max() == molloy.meanage.max()
    assert ax.get_ylabel() == "Correlation (r)" and ax.get_xlabel() == "meanage"
    assert by_gid(ax, "ci_band")


def test_bubble_bad_input(molloy, molloy_res):
    reg2 = am.meta_regression(molloy.yi, molloy.vi, mods=molloy, formula="~ meanage + design")
    with pytest.raises(ValueError, match="exactly one moderator; this one has 2"):
        plots.bubble_plot(reg2, "meanage")
    reg = am.meta_regression(molloy.yi, molloy.vi, mods=molloy, formula="~ meanage")
    with pytest.raises(ValueError, match="'age' is not in the model"):
        plots.bubble_plot(reg, "age")
    regc = am.meta_regression(molloy.yi, molloy.vi, mods=molloy, formula="~ design")
    with pytest.raises(ValueError, match="fewer than 3 distinct values"):
        plots.bubble_plot(regc, regc.coef_names[1])
    with pytest.raises(ValueError, match="needs a MetaRegressionResult"):
        plots.bubble_plot(molloy_res, "meanage")


def test_baujat_plot():
    rng = np.random.default_rng(3)  # SYNTHETIC contributions
    df = pd.DataFrame({"x": rng.chisquare(1, 40), "y": rng.chisquare(1, 40) / 20,
                       "label": [f"S{i}" for i in range(40)]})
    fig = plots.baujat_plot(df)
    ax = main_ax(fig)
    np.testing.assert_allclose(by_gid(ax, "studies")[0].get_offsets(), df[["x", "y"]].to_numpy())
    lab = {t.get_text() for t in texts(fig, "label")}
    assert len(lab) == 10  # k > 30: the 10 most extreme on either axis
    ext = np.maximum(df.x / df.x.max(), df.y / df.y.max())
    assert lab == set(df.label[np.argsort(-ext.to_numpy())[:10]])
    fig_all = plots.baujat_plot(df.iloc[:12])
    assert len(texts(fig_all, "label")) == 12
    assert "heterogeneity" in ax.get_xlabel() and "Influence" in ax.get_ylabel()
    with pytest.raises(ValueError, match="baujat_plot: the DataFrame lacks the column"):
        plots.baujat_plot(df.drop(columns="label"))
    bad = df.copy()
    bad.loc[4, "y"] = np.nan
    with pytest.raises(ValueError, match="column 'y' has a missing or infinite value at row 4"):
        plots.baujat_plot(bad)


def _loo_frame(res):
    """Leave-one-out estimates computed here with random_effects (not with the bias module)."""
    rows = []
    for i in range(res.k):
        m = np.arange(res.k) != i
        r = am.random_effects(res.yi[m], res.vi[m])
        rows.append({"label": f"Study {i + 1}", "estimate": r.estimate, "ci_lb": r.ci_lb,
                     "ci_ub": r.ci_ub})
    return pd.DataFrame(rows)


def test_leave_one_out_plot(molloy_res):
    df = _loo_frame(molloy_res)
    fig = plots.leave_one_out_plot(df, res=molloy_res)
    ax = main_ax(fig)
    (pts,) = by_gid(ax, "study_markers")
    np.testing.assert_allclose(pts.get_offsets()[:, 0], np.tanh(df.estimate), rtol=1e-12)
    assert [t.get_text() for t in texts(fig, "label:study")] == list(df.label)
    assert len(texts(fig, "ci_text")) == len(df)
    assert texts(fig, "header")[0].get_text() == "Omitted study"
    assert "(r)" in ax.get_xlabel()
    assert by_gid(ax, "reference_estimate")[0].get_segments()[0][0][0] == pytest.approx(molloy_res.r)
    assert_no_overlap(fig)
    gen = plots.leave_one_out_plot(df, measure="GEN")
    np.testing.assert_allclose(by_gid(main_ax(gen), "study_markers")[0].get_offsets()[:, 0], df.estimate)
    with pytest.raises(ValueError, match="leave_one_out_plot: every row needs ci_lb <= estimate"):
        plots.leave_one_out_plot(df.assign(ci_lb=df.ci_ub))
    with pytest.raises(ValueError, match="lacks the column"):
        plots.leave_one_out_plot(df[["estimate", "label"]])
    with pytest.raises(ValueError, match="has no rows"):
        plots.leave_one_out_plot(df.iloc[:0])


def test_cumulative_plot(molloy_res):
    rows = []
    for j in range(2, molloy_res.k + 1):  # first j studies, in input order
        r = am.random_effects(molloy_res.yi[:j], molloy_res.vi[:j])
        rows.append({"label": f"+ Study {j}", "estimate": r.estimate, "ci_lb": r.ci_lb, "ci_ub": r.ci_ub})
    df = pd.DataFrame(rows)
    # the first row as a Knapp-Hartung cumulative analysis gives it: one study, no CI
    one = {"label": "Study 1", "estimate": molloy_res.yi[0], "ci_lb": np.nan, "ci_ub": np.nan}
    df = pd.concat([pd.DataFrame([one]), df], ignore_index=True)
    fig = plots.cumulative_plot(df)
    ax = main_ax(fig)
    assert len(by_gid(ax, "study_markers")[0].get_offsets()) == molloy_res.k
    assert len(by_gid(ax, "study_ci")[0].get_segments()) == molloy_res.k - 1  # none for row 1
    assert texts(fig, "ci_text")[0].get_text() == f"{np.tanh(molloy_res.yi[0]):.2f}"
    assert texts(fig, "header")[0].get_text() == "Study added"
    # the last row is the full-data model
    assert texts(fig, "ci_text")[-1].get_text().startswith(f"{molloy_res.r:.2f}")


def test_orchard_plot(molloy):
    d = DATA["mcdaniel1994"]
    fig = plots.orchard_plot(d["yi"], d["vi"], d["type"])
    ax = main_ax(fig)
    levels = list(pd.unique(pd.Series(d["type"])))
    counts = pd.Series(d["type"]).value_counts()
    assert [t.get_text() for t in ax.get_yticklabels()] == [f"{g} (k = {counts[g]})" for g in levels]
    sg = am.subgroup_analysis(d["yi"], d["vi"], d["type"])
    y, t = np.asarray(d["yi"]), np.asarray(d["type"])
    for j, g in enumerate(levels):
        (pts,) = by_gid(ax, f"effects:{g}")
        xy = pts.get_offsets()
        np.testing.assert_allclose(xy[:, 0], np.tanh(y[t == g]))
        assert np.abs(xy[:, 1] - j).max() <= 0.3  # jitter stays in the group's row
        (pooled,) = by_gid(ax, f"pooled:{g}")
        assert pooled.get_offsets()[0, 0] == pytest.approx(np.tanh(sg.groups[g].estimate), rel=1e-10)
        (ci,) = by_gid(ax, f"ci:{g}")
        (pi,) = by_gid(ax, f"pi:{g}")
        np.testing.assert_allclose(ci.get_xdata(), np.tanh([sg.groups[g].ci_lb, sg.groups[g].ci_ub]))
        np.testing.assert_allclose(pi.get_xdata(), np.tanh([sg.groups[g].pi_lb, sg.groups[g].pi_ub]))
        assert ci.get_linewidth() > 2 * pi.get_linewidth()  # thick CI, thin PI
    assert ax.get_xlabel() == "Correlation (r)"
    # same seed, same jitter; results given as a SubgroupResult give the same figure content
    again = plots.orchard_plot(d["yi"], d["vi"], d["type"], res_by_group=sg)
    np.testing.assert_array_equal(by_gid(main_ax(again), f"effects:{levels[0]}")[0].get_offsets(),
                                  by_gid(ax, f"effects:{levels[0]}")[0].get_offsets())


def test_orchard_bad_input():
    with pytest.raises(ValueError, match="orchard_plot: groups has 2 values but yi has 3"):
        plots.orchard_plot([0.1, 0.2, 0.3], [0.01] * 3, ["a", "b"])
    with pytest.raises(ValueError, match="vi finite and positive"):
        plots.orchard_plot([0.1, 0.2], [0.01, -1], ["a", "b"])
    fit = am.random_effects([0.1, 0.2, 0.3], [0.01] * 3)
    with pytest.raises(ValueError, match=r"no result for group\(s\) \['b'\]"):
        plots.orchard_plot([0.1, 0.2, 0.3, 0.4], [0.01] * 4, ["a", "a", "a", "b"],
                           res_by_group={"a": fit})


# ---------------------------------------------------------------------------------------------
# style and saving


def test_theme_is_applied_and_restored(molloy_res):
    before = dict(mpl.rcParams)
    fig = plots.funnel_plot(molloy_res)
    assert dict(mpl.rcParams) == before  # no global state changed
    fig.canvas.draw()
    names = {t.get_fontname() for t in fig.findobj(Text) if t.get_text()}
    assert names == {"DejaVu Sans"}
    assert plots.PALETTE[0] == "#0072B2"  # Okabe-Ito blue


def test_save_figure_byte_identical(tmp_path, molloy, molloy_res):
    figs = [plots.forest_plot(molloy_res, groups=molloy.design) for _ in range(2)]
    a = plots.save_figure(figs[0], tmp_path / "a" / "forest")
    b = plots.save_figure(figs[1], tmp_path / "b" / "forest")
    assert sorted(a) == ["pdf", "png", "svg"]
    for fmt in a:
        assert a[fmt].name == f"forest.{fmt}"
        assert a[fmt].read_bytes() == b[fmt].read_bytes(), fmt
    # saving the same figure again also gives the same bytes, and leaves no temporary files
    c = plots.save_figure(figs[0], tmp_path / "a" / "forest")
    assert c["svg"].read_bytes() == b["svg"].read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["forest.pdf", "forest.png", "forest.svg"]
    assert b"<dc:date>" not in a["svg"].read_bytes()
    assert b"/CreationDate" not in a["pdf"].read_bytes()
    assert a["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_figure_is_all_or_nothing(tmp_path, molloy_res, monkeypatch):
    fig = plots.funnel_plot(molloy_res)
    real = fig.savefig

    def failing(fname, *args, format=None, **kw):
        if format == "pdf":
            raise RuntimeError("disk full (simulated)")
        return real(fname, *args, format=format, **kw)

    monkeypatch.setattr(fig, "savefig", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        plots.save_figure(fig, tmp_path / "funnel")
    assert list(tmp_path.iterdir()) == []


def test_save_figure_bad_input(tmp_path, molloy_res):
    fig = plots.funnel_plot(molloy_res)
    with pytest.raises(ValueError, match=r"save_figure: unsupported format\(s\) \['jpg'\]"):
        plots.save_figure(fig, tmp_path / "f", formats=("svg", "jpg"))
    with pytest.raises(ValueError, match="without extension"):
        plots.save_figure(fig, tmp_path / "f.svg")
    with pytest.raises(ValueError, match="formats is empty"):
        plots.save_figure(fig, tmp_path / "f", formats=())
    with pytest.raises(ValueError, match="needs a matplotlib Figure"):
        plots.save_figure(None, tmp_path / "f")


def test_other_figures_keep_text_inside_and_apart(molloy, molloy_res):
    reg = am.meta_regression(molloy.yi, molloy.vi, mods=molloy, formula="~ meanage")
    d = DATA["mcdaniel1994"]
    for fig in (
        plots.funnel_plot(molloy_res, title="Funnel plot (molloy2014)"),
        plots.funnel_plot(am.random_effects(molloy.yi, molloy.vi, measure="GEN"), title="GEN"),
        plots.bubble_plot(reg, "meanage", title="Bubble plot"),
        plots.orchard_plot(d["yi"], d["vi"], d["type"], title="Orchard plot (mcdaniel1994)"),
    ):
        assert_no_overlap(fig)


def test_with_the_bias_and_sensitivity_results(molloy_res):
    """The figures read what trim_and_fill, leave_one_out, cumulative and baujat return
    (their frames name the label column ``study``)."""
    from alliance_meta.stats import bias
    from alliance_meta.stats import influence as sensitivity

    tf = bias.trim_and_fill(molloy_res)
    fig = plots.funnel_plot(molloy_res, trimfill=tf)
    assert len(by_gid(main_ax(fig), "filled")[0].get_offsets()) == len(tf.filled_yi)
    for fn, df in (
        (plots.leave_one_out_plot, sensitivity.leave_one_out(molloy_res)),
        (plots.cumulative_plot, sensitivity.cumulative(molloy_res)),
    ):
        fig = fn(df, res=molloy_res)
        assert [t.get_text() for t in texts(fig, "label:study")] == [str(x) for x in df["study"]]
        np.testing.assert_allclose(by_gid(main_ax(fig), "study_markers")[0].get_offsets()[:, 0],
                                   np.tanh(df["estimate"]), rtol=1e-12)
    bj = sensitivity.baujat(molloy_res)
    fig = plots.baujat_plot(bj)
    assert len(texts(fig, "label")) == len(bj)  # k = 16 <= 30: every study labelled


# ---------------------------------------------------------------------------------------------
# the headline model on every figure (issue 12), the journal pass (issue 15), large forests
# (issue 16) and the dataset figures (issue 11)


@pytest.fixture(scope="module")
def konst():
    """metadat's konstantopoulos2011 (56 effects in 11 districts), from metafor_core.json."""
    return pd.DataFrame(DATA["konstantopoulos2011"])


@pytest.fixture(scope="module")
def konst_tl(konst):
    return am.three_level(konst.yi, konst.vi, konst.district)


def all_text(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text()]


def assert_no_text_on_lines(fig, gids=("null_line", "reference_estimate", "pooled_estimate")):
    """No visible text is crossed by a reference line (checked at 200 points per segment)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = np.array([t.get_window_extent(r).extents for t in fig.findobj(Text)
                      if t.get_visible() and t.get_text().strip()])
    segs = []
    for ax_ in fig.axes:
        for a in ax_.get_children():
            if a.get_gid() not in gids:
                continue
            if isinstance(a, mpl.collections.LineCollection):
                segs += [ax_.transData.transform(s) for s in a.get_segments()]
            elif isinstance(a, mpl.lines.Line2D):
                segs.append(a.get_transform().transform(a.get_xydata()))
    assert segs, "no reference line found"
    hits = 0
    for s in segs:
        for p0, p1 in zip(s[:-1], s[1:], strict=True):
            t = np.linspace(0, 1, 200)[:, None]
            pts = p0 + t * (p1 - p0)
            inside = ((pts[:, None, 0] > boxes[None, :, 0] + 0.5)
                      & (pts[:, None, 0] < boxes[None, :, 2] - 0.5)
                      & (pts[:, None, 1] > boxes[None, :, 1] + 0.5)
                      & (pts[:, None, 1] < boxes[None, :, 3] - 0.5))
            hits += int(inside.any())
    assert hits == 0, f"{hits} line segment(s) cross a text"


def integer_ticks(axis) -> bool:
    lo, hi = sorted(axis.get_view_interval())
    locs = [v for v in axis.get_majorticklocs() if lo - 1e-9 <= v <= hi + 1e-9]
    return len(locs) >= 2 and all(float(v).is_integer() for v in locs)


def test_forest_three_level_headline(konst, konst_tl):
    tl = konst_tl
    fig = plots.forest_plot(tl, title="konstantopoulos2011 (all districts)")
    ax = main_ax(fig)
    (dia,) = by_gid(ax, "summary_overall")
    v = dia.get_xy()
    assert v[1, 0] == pytest.approx(np.tanh(tl.estimate), rel=1e-12)
    assert v[:, 0].min() == pytest.approx(np.tanh(np.ravel(tl.ci_lb)[0]), rel=1e-12)
    assert v[:, 0].max() == pytest.approx(np.tanh(np.ravel(tl.ci_ub)[0]), rel=1e-12)
    assert [t.get_text() for t in texts(fig, "label:summary")] == ["Three-level model (REML)"]
    notes = [t.get_text() for t in texts(fig, "note")]
    assert "Model: three-level REML, z CI" in notes
    assert any("between" in t and "within" in t for t in notes)
    assert [t.get_text() for t in texts(fig, "title")] == ["konstantopoulos2011 (all districts)"]
    # weights: metafor's weights.rma.mv (diagonal of M^-1, in percent), recomputed here with a
    # dense inverse of the marginal covariance M = sigma2_b * same-district + diag(sigma2_w + vi)
    same = (konst.district.to_numpy()[:, None] == konst.district.to_numpy()[None, :])
    M = tl.sigma2_between * same + np.diag(tl.sigma2_within + konst.vi.to_numpy())
    d = np.diag(np.linalg.inv(M))
    w = [float(t.get_text().rstrip("%")) for t in texts(fig, "weight")][:-1]
    np.testing.assert_allclose(w, 100 * d / d.sum(), atol=0.051)  # printed to 0.1 (or .01)
    (markers,) = by_gid(ax, "study_markers")
    s = markers.get_sizes()
    np.testing.assert_allclose(s / s.max(), d / d.max(), rtol=1e-9)


def test_forest_robust_headline_needs_study_data(konst):
    re = am.random_effects(konst.yi, konst.vi)
    rb = am.robust(re, konst.district)
    with pytest.raises(ValueError, match="carries no study data; pass yi= and vi="):
        plots.forest_plot(rb)
    fig = plots.forest_plot(rb, yi=konst.yi, vi=konst.vi, groups=konst.district,
                            group_name="district")
    ax = main_ax(fig)
    (dia,) = by_gid(ax, "summary_overall")
    assert dia.get_xy()[1, 0] == pytest.approx(np.tanh(rb.estimate), rel=1e-12)
    assert dia.get_xy()[:, 0].min() == pytest.approx(np.tanh(np.ravel(rb.ci_lb)[0]), rel=1e-12)
    df = float(np.ravel(getattr(rb, "df", getattr(rb, "dfs", np.nan)))[0])
    notes = [t.get_text() for t in texts(fig, "note")]
    assert any(t.startswith("Model: CR2-robust") and f"t({df:.3g}) CI" in t for t in notes)
    assert "Weight" not in [t.get_text() for t in texts(fig, "header")]  # CR2 has no weights
    assert not by_gid(ax, "prediction_interval")  # no PI without a between-study variance
    # per-district diamonds come from the package's subgroup fitter
    sg = am.subgroup_analysis(konst.yi, konst.vi, konst.district.astype(str))
    dias = by_gid(ax, "summary_subgroup")
    assert [d.get_xy()[1, 0] for d in dias] == pytest.approx(
        [np.tanh(r.estimate) for r in sg.groups.values()], rel=1e-10)


def test_forest_ci_type_is_labelled(molloy, konst, konst_tl):
    kh = am.random_effects(molloy.yi, molloy.vi, test="knha")
    notes = [t.get_text() for t in texts(plots.forest_plot(kh), "note")]
    assert "Model: random-effects REML, Knapp\u2013Hartung t(15) CI" in notes
    notes = [t.get_text() for t in texts(plots.forest_plot(konst_tl), "note")]
    assert "Model: three-level REML, z CI" in notes
    tl_t = am.three_level(konst.yi, konst.vi, konst.district, test="t")
    dfs = float(np.ravel(tl_t.dfs)[0])
    notes = [t.get_text() for t in texts(plots.forest_plot(tl_t), "note")]
    assert f"Model: three-level REML, t({dfs:.3g}) CI" in notes
    own = plots.forest_plot(kh, model_label="headline: three-level REML, t(7) CI")
    assert "Model: headline: three-level REML, t(7) CI" in [t.get_text() for t in texts(own, "note")]


def test_forest_cautions_for_small_k_and_zero_tau2(molloy):
    small = am.random_effects(molloy.yi[:4], molloy.vi[:4])
    c = [t.get_text() for t in texts(plots.forest_plot(small), "caution")]
    assert any("k = 4 effects (< 5)" in t for t in c)
    assert not texts(plots.forest_plot(am.random_effects(molloy.yi, molloy.vi)), "caution")
    # SYNTHETIC homogeneous effects: tau2 = 0, so the PI equals the CI
    flat = am.random_effects([0.20, 0.21, 0.19, 0.20, 0.205, 0.2], [0.01] * 6)
    assert flat.tau2 == 0
    c = [t.get_text() for t in texts(plots.forest_plot(flat), "caution")]
    assert c == ["The prediction interval equals the CI because the between-study variance is "
                 "estimated as 0."]
    assert_no_overlap(plots.forest_plot(small, title="Subset: first four"))


def test_forest_labels_n_column_and_sort(molloy, molloy_res):
    # SYNTHETIC author-year labels and years for molloy2014's 16 effects
    years = 1990 + (np.arange(16) * 7) % 23
    data = pd.DataFrame({"label": [f"Author{i} ({y})" for i, y in enumerate(years)],
                         "n": (1 / molloy.vi + 3).round().astype(int), "year": years})
    fig = plots.forest_plot(molloy_res, data=data, sort="year", title="Subset: adults")
    got = [t.get_text() for t in texts(fig, "label:study")]
    order = np.lexsort((np.arange(16), years))
    assert got == list(data.label[order])
    assert [t.get_text() for t in texts(fig, "n")] == [f"{v:,}" for v in data.n[order]]
    assert [t.get_text() for t in texts(fig, "header")][:2] == ["Study", "n"]
    assert texts(fig, "title")[0].get_text() == "Subset: adults"
    assert_no_overlap(fig)
    by_effect = plots.forest_plot(molloy_res, data=data, sort="effect")
    x = by_gid(main_ax(by_effect), "study_markers")[0].get_offsets()[:, 0]
    assert np.all(np.diff(x) >= 0)
    with pytest.raises(ValueError, match="sort='year' needs year"):
        plots.forest_plot(molloy_res, sort="year")
    with pytest.raises(ValueError, match="sort must be None, 'year' or 'effect'"):
        plots.forest_plot(molloy_res, sort="n")
    with pytest.raises(ValueError, match=r"data\['n'\] has 3 entries"):
        plots.forest_plot(molloy_res, data=pd.DataFrame({"n": [1, 2, 3]}))


def test_no_text_crossed_by_lines(molloy, molloy_res, konst_tl):
    # subgroup notes sit inside the plot region: the null line stops short of them
    fig = plots.forest_plot(molloy_res, groups=molloy.design, title="molloy2014 by design")
    assert_no_text_on_lines(fig)
    assert len(by_gid(main_ax(fig), "null_line")[0].get_segments()) >= 3  # broken at notes
    loo = am.leave_one_out(molloy_res)
    assert_no_text_on_lines(plots.leave_one_out_plot(loo, res=konst_tl))
    # the check catches a crossing line
    bad = plots.forest_plot(molloy_res)
    note = texts(bad, "note")[0]
    ax = main_ax(bad)
    y = note.get_position()[1]
    ax.vlines(ax.get_xlim()[0] + 1e-3, y - 0.4, y + 0.4, gid="null_line")
    with pytest.raises(AssertionError, match="cross a text"):
        assert_no_text_on_lines(bad)


def test_forest_grouped_above_max_rows():
    d = synthetic(150)
    d["sample"] = [f"Sample {i // 3 + 1:02d}" for i in range(150)]  # 50 samples of 3 effects
    res = am.random_effects(d.yi, d.vi)
    fig = plots.forest_plot(res, groups=d["sample"], group_name="sample", title="SYNTHETIC")
    ax = main_ax(fig)
    xy = by_gid(ax, "study_markers")[0].get_offsets()
    assert len(xy) == 50  # one row per sample
    sg = am.subgroup_analysis(d.yi, d.vi, d["sample"])
    np.testing.assert_allclose(xy[:, 0], np.tanh([r.estimate for r in sg.groups.values()]),
                               rtol=1e-10)
    assert [t.get_text() for t in texts(fig, "header")][:2] == ["Sample", "k"]
    assert {t.get_text() for t in texts(fig, "n")} == {"3"}
    notes = " ".join(t.get_text() for t in texts(fig, "note"))
    assert "One row per sample: 150 effects in 50 samples" in notes and "full=True" in notes
    assert "Test for sample differences: Q(49)" in notes
    assert_no_overlap(fig)
    full = plots.forest_plot(res, groups=d["sample"], full=True)
    assert len(by_gid(main_ax(full), "study_markers")[0].get_offsets()) == 150
    assert full.get_size_inches()[1] > 2.5 * fig.get_size_inches()[1]
    # no groups: every effect, with a caution; a three-level model groups by its own samples
    plain = plots.forest_plot(res)
    assert len(by_gid(main_ax(plain), "study_markers")[0].get_offsets()) == 150
    assert "150 effects exceed max_rows = 60" in texts(plain, "caution")[-1].get_text()
    tl = am.three_level(d.yi, d.vi, d["sample"])
    own = plots.forest_plot(tl)
    assert len(by_gid(main_ax(own), "study_markers")[0].get_offsets()) == 50
    assert [t.get_text() for t in texts(own, "header")][:2] == ["Sample", "k"]
    small = plots.forest_plot(res, groups=d["sample"], max_rows=200)
    assert len(by_gid(main_ax(small), "study_markers")[0].get_offsets()) == 150


def test_forest_pages():
    d = synthetic(150)
    res = am.random_effects(d.yi, d.vi)
    pages = plots.forest_pages(res, labels=d.label, title="SYNTHETIC k = 150", max_rows=60)
    assert len(pages) == 3
    assert [texts(p, "title")[0].get_text() for p in pages] == [
        f"SYNTHETIC k = 150 (page {i} of 3)" for i in (1, 2, 3)]
    n = [len(by_gid(main_ax(p), "study_markers")[0].get_offsets()) for p in pages]
    assert sum(n) == 150 and max(n) <= 60
    assert [len(by_gid(main_ax(p), "summary_overall")) for p in pages] == [0, 0, 1]
    assert len({main_ax(p).get_xlim() for p in pages}) == 1  # one x range for all pages
    for p in pages:
        assert_no_overlap(p)


def test_funnel_headline_and_points_label(konst, konst_tl):
    comp = konst.groupby("district").agg(yi=("yi", "mean"), vi=("vi", "mean"))  # SYNTHETIC means
    fig = plots.funnel_plot(konst_tl, yi=comp.yi, vi=comp.vi, points_label="Per-sample composites",
                            title="Funnel (konstantopoulos2011)")
    ax = main_ax(fig)
    assert by_gid(ax, "pooled_estimate")[0].get_xdata()[0] == pytest.approx(konst_tl.estimate)
    np.testing.assert_allclose(by_gid(ax, "studies")[0].get_offsets()[:, 0], comp.yi)
    leg = ax.get_legend()
    assert "Per-sample composites (k = 11)" in [t.get_text() for t in leg.get_texts()]
    assert "three-level REML" in leg.get_title().get_text().replace("\n", " ")
    assert_no_overlap(fig)
    with pytest.raises(ValueError, match="give both yi and vi"):
        plots.funnel_plot(konst_tl, yi=comp.yi)
    small = plots.funnel_plot(am.random_effects(konst.yi[:4], konst.vi[:4]))
    assert any("k = 4" in t for t in all_text(small))
    assert_no_overlap(small)


def test_sensitivity_plots_with_the_headline(molloy_res, konst_tl):
    loo = am.leave_one_out(molloy_res)
    fig = plots.leave_one_out_plot(loo, res=konst_tl, unit="sample", title="Subset: all")
    ax = main_ax(fig)
    assert texts(fig, "header")[0].get_text() == "Omitted sample"
    band = by_gid(ax, "reference_band")[0].get_paths()[0].vertices[:, 0]
    assert band.min() == pytest.approx(np.tanh(np.ravel(konst_tl.ci_lb)[0]), rel=1e-9)
    assert band.max() == pytest.approx(np.tanh(np.ravel(konst_tl.ci_ub)[0]), rel=1e-9)
    assert "Model: three-level REML, z CI" in [t.get_text() for t in texts(fig, "note")]
    assert texts(fig, "title")[0].get_text() == "Subset: all"
    assert_no_overlap(fig)
    cum = plots.cumulative_plot(am.cumulative(molloy_res), res=molloy_res, unit="effect")
    assert texts(cum, "header")[0].get_text() == "Effect added"
    assert "Model: random-effects REML, z CI" in [t.get_text() for t in texts(cum, "note")]
    small = am.random_effects(molloy_res.yi[:4], molloy_res.vi[:4])
    c = plots.cumulative_plot(am.cumulative(small), res=small)
    assert any("k = 4" in t.get_text() for t in texts(c, "caution"))


def test_baujat_labels_repelled_and_unclipped(molloy_res):
    bj = am.baujat(molloy_res)
    names = ["SaguiHenson2022", "Goldberg2013 (1)", "Goldberg2013 (2)", "Falkenstrom2016"]
    bj["study"] = [f"{names[i % 4]}" for i in range(len(bj))]
    fig = plots.baujat_plot(bj, title="Baujat (molloy2014)", model_label="random-effects REML")
    labs = texts(fig, "label")
    assert sorted(t.get_text() for t in labs) == sorted(bj.study)  # every name in full
    assert_no_overlap(fig)  # inside the figure, no two labels overprint
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    box = main_ax(fig).get_window_extent(r)
    for t in labs:  # and inside the axes
        e = t.get_window_extent(r)
        assert box.x0 - 1 <= e.x0 and e.x1 <= box.x1 + 1 and box.y0 - 1 <= e.y0 and e.y1 <= box.y1 + 1
    assert "Model: random-effects REML" in all_text(fig)


def test_bubble_integer_years_and_model_label(molloy):
    # SYNTHETIC publication years for molloy2014's effects
    mods = molloy.assign(year=2000 + (np.arange(16) * 5) % 17)
    reg = am.meta_regression(mods.yi, mods.vi, mods=mods, formula="~ year")
    fig = plots.bubble_plot(reg, "year", title="Year (subset: all)")
    ax = main_ax(fig)
    assert integer_ticks(ax.xaxis)
    assert "Model: meta-regression REML, z CI" in all_text(fig)
    assert_no_overlap(fig)


def test_orchard_flags_small_levels():
    d = DATA["mcdaniel1994"]
    g = np.array(d["type"], dtype=object)
    g[:2] = "rare"  # SYNTHETIC level with k = 2
    fig = plots.orchard_plot(d["yi"], d["vi"], g, title="Orchard (subset)")
    ax = main_ax(fig)
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert "rare (k = 2) \u2020" in ticks
    assert all(t.endswith(")") for t in ticks if not t.startswith("rare"))
    text = " ".join(all_text(fig))
    assert "\u2020 k < 3: not interpreted" in text and "Model: per level, random-effects REML" in text
    assert_no_overlap(fig)


def _synthetic_dataset(k: int = 40, seed: int = 2) -> pd.DataFrame:
    """SYNTHETIC coded effects with the codebook's moderator columns."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i // 2}" for i in range(k)]
    return pd.DataFrame({
        "sample_id": samples,
        "n": np.repeat(rng.integers(20, 800, size=(k + 1) // 2), 2)[:k],
        "year": rng.integers(1995, 2025, size=k),
        "modality": rng.choice(["CBT", "psychodynamic", "third-wave", "systemic"], size=k),
        "format": rng.choice(["individual", "group"], size=k),
        "alliance_rater": rng.choice(["client", "therapist", "observer", None], size=k),
        "outcome_rater": rng.choice(["client", "clinician"], size=k),
        "r": rng.uniform(-0.05, 0.5, size=k),
    })


def test_dataset_overview_structure():
    df = _synthetic_dataset()
    fig = am.plots.dataset_overview(df, title="SYNTHETIC review: all effects")
    assert len(fig.axes) == 6
    titles = [a.get_title(loc="left") for a in fig.axes]
    assert titles == ["Modality", "Format", "Alliance rater", "Outcome rater", "Year", "Sample size"]
    for a in fig.axes[:4]:
        assert a.get_xlabel() == "Effects" and integer_ticks(a.xaxis)
        assert sum(p.get_width() for p in a.patches) == len(df)
    rater = [t.get_text() for t in fig.axes[2].get_yticklabels()]
    assert "not reported" in rater
    year_ax = fig.axes[4]
    assert integer_ticks(year_ax.xaxis) and integer_ticks(year_ax.yaxis)
    centres = [p.get_x() + p.get_width() / 2 for p in year_ax.patches]
    assert all(float(c).is_integer() for c in centres)  # one bin per calendar year
    assert all(p.get_width() <= 1 for p in year_ax.patches)
    assert sum(p.get_height() for p in year_ax.patches) == len(df)
    n_ax = fig.axes[5]
    assert sum(p.get_height() for p in n_ax.patches) == df.sample_id.nunique()
    assert integer_ticks(n_ax.yaxis)
    assert "SYNTHETIC review: all effects" in all_text(fig)
    assert_no_overlap(fig)
    per_sample = am.plots.dataset_overview(df, ["format"], unit="samples", year=None, n=None)
    assert len(per_sample.axes) == 1 and per_sample.axes[0].get_xlabel() == "Samples"
    assert sum(p.get_width() for p in per_sample.axes[0].patches) == df.sample_id.nunique()
    with pytest.raises(ValueError, match="lacks the column"):
        am.plots.dataset_overview(df, ["country"])
    with pytest.raises(ValueError, match="unit must be"):
        am.plots.dataset_overview(df, unit="studies")


def test_moderator_distribution_structure():
    df = _synthetic_dataset()
    df.loc[:1, "format"] = "family"  # SYNTHETIC level with k = 2
    fig = am.plots.moderator_distribution(df, ["modality", "format"], title="SYNTHETIC")
    assert len(fig.axes) == 2
    fmt = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    counts = df.format.value_counts()
    assert f"family (k = {counts['family']}) \u2020" in fmt
    assert f"individual (k = {counts['individual']})" in fmt
    assert "\u2020 k < 3: not interpreted" in fig.axes[-1].get_xlabel()
    pts = np.concatenate([c.get_offsets()[:, 0] for c in fig.axes[0].collections
                          if len(c.get_offsets())])
    np.testing.assert_allclose(np.sort(pts), np.sort(df.r))  # every effect drawn at its r
    assert_no_overlap(fig)
    with pytest.raises(ValueError, match="lacks the moderator column"):
        am.plots.moderator_distribution(df, ["design"])


def test_moderator_distribution_many_effects_jittered_in_their_rows():
    """Issue 16: above SWARM_MAX effects the points are jittered deterministically (a swarm of
    hundreds overflowed its row and took seconds); every effect stays at its r, in its row."""
    from alliance_meta.viz.dataset import SWARM_MAX

    df = pd.concat([_synthetic_dataset()] * (SWARM_MAX // 10 + 1), ignore_index=True)
    assert len(df) > SWARM_MAX
    fig = am.plots.moderator_distribution(df, ["format"])
    ax = fig.axes[0]
    off = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    np.testing.assert_allclose(np.sort(off[:, 0]), np.sort(df.r))
    rows = {t.get_text().split(" (")[0]: t.get_position()[1] for t in ax.get_yticklabels()}
    for lv, y in zip(df.format, off[:, 1], strict=True):
        assert abs(y - rows[lv]) < 0.3
    again = am.plots.moderator_distribution(df, ["format"]).axes[0]
    np.testing.assert_array_equal(
        np.concatenate([c.get_offsets() for c in again.collections if len(c.get_offsets())]), off)


def test_save_figure_caps_png_size(tmp_path):
    d = synthetic(150)
    fig = plots.forest_plot(am.random_effects(d.yi, d.vi), full=True)
    assert fig.get_size_inches()[1] * 300 > 4000  # would be a huge PNG at 300 dpi
    out = plots.save_figure(fig, tmp_path / "tall", formats=("png",))
    head = out["png"].read_bytes()[16:24]  # IHDR width and height
    w, h = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
    assert 3900 < max(w, h) <= 4000
    uncapped = plots.save_figure(fig, tmp_path / "tall_full", formats=("png",), max_png_side=None)
    h2 = int.from_bytes(uncapped["png"].read_bytes()[20:24], "big")
    assert h2 > 4000


def _many_samples(m: int, per: int = 2, seed: int = 5) -> pd.DataFrame:
    """SYNTHETIC effects: m samples of ``per`` effects (for the workbench's forest figures)."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(m):
        n, u = int(rng.integers(40, 300)), rng.normal(0, 0.08)
        for _ in range(per):
            rows.append({"study_id": f"S{j}", "sample_id": f"S{j}_s1", "label": f"Study {j}",
                         "n": n, "year": 1990 + j % 30, "yi": 0.3 + u + rng.normal(0, 0.05),
                         "vi": 1 / (n - 3)})
    return pd.DataFrame(rows)


def test_workbench_forest_figures_page_above_max_rows():
    """Issue 16: no forest figure has more than MAX_ROWS rows. 40 SYNTHETIC samples of 2
    effects: one row per sample, one figure; 150 samples: one row per sample across pages,
    every sample once, the pooled rows on the last; full=True adds every effect, paged."""
    from alliance_meta.viz.forest import MAX_ROWS
    from alliance_meta.workflow import workbench as wb

    small = wb.forest_figures(wb.headline_model(_many_samples(40)))
    assert list(small) == ["forest"]
    assert len(by_gid(main_ax(small["forest"]), "study_markers")[0].get_offsets()) == 40
    hm = wb.headline_model(_many_samples(150))
    figs = wb.forest_figures(hm, title="SYNTHETIC", full=True)
    pages = [f for n, f in figs.items() if n.startswith("forest_page")]
    full = [f for n, f in figs.items() if n.startswith("forest_full_page")]
    assert list(figs)[:len(pages)] == [f"forest_page{i}" for i in range(1, len(pages) + 1)]
    rows = [len(by_gid(main_ax(p), "study_markers")[0].get_offsets()) for p in pages]
    assert sum(rows) == 150 and max(rows) <= MAX_ROWS
    assert [len(by_gid(main_ax(p), "summary_overall")) for p in pages] == [0] * (
        len(pages) - 1) + [1]
    rows_full = [len(by_gid(main_ax(p), "study_markers")[0].get_offsets()) for p in full]
    assert sum(rows_full) == 300 and max(rows_full) <= MAX_ROWS
    shown = " ".join(t for p in pages for t in all_text(p))
    assert "Study 0" in shown and "S0_s1" not in shown  # rows named as the by-sample tables
    assert "page 2" in wb.forest_caption("forest_page2", "all effects")
    assert "page" not in wb.forest_caption("forest", "all effects")
    assert "every effect" in wb.forest_caption("forest_full_page1", "all effects")
    for p in pages[:1] + full[:1]:
        assert_no_overlap(p)


def test_long_leave_one_out_and_cumulative_are_compact():
    """Issue 16: above MAX_ROWS rows the leave-one-out and cumulative figures are one compact
    panel (a 150-row forest was unreadable and a 0.7 MB PNG): every estimate at its row, the
    full-data estimate as the dashed line, the N_NAMED rows farthest from it numbered and
    named for leave-one-out only."""
    from alliance_meta.viz.sensitivity import N_NAMED

    d = synthetic(150)
    res = am.random_effects(d.yi, d.vi)
    loo = am.leave_one_out(res).assign(label=list(d.label))
    fig = plots.leave_one_out_plot(loo, res=res, unit="sample", title="SYNTHETIC")
    [ax] = fig.axes
    pts = by_gid(ax, "estimates")[0]
    np.testing.assert_allclose(pts.get_ydata(), np.tanh(loo.estimate))
    assert by_gid(ax, "full_estimate")[0].get_ydata()[0] == pytest.approx(np.tanh(res.estimate))
    named = by_gid(ax, "named")[0].get_xdata()
    far = np.argsort(-np.abs(loo.estimate - res.estimate).to_numpy())[:N_NAMED]
    assert sorted(named) == sorted(far + 1)
    notes = " ".join(all_text(fig))
    assert all(lab in notes for lab in loo.label.iloc[far])
    assert_no_overlap(fig)
    cum = am.cumulative(res).assign(label=list(d.label)).dropna(subset=["estimate"])
    cfig = plots.cumulative_plot(cum, res=res, unit="sample")
    assert len(cfig.axes) == 1 and not by_gid(cfig.axes[0], "named")
    # the full forest on request, or when drawn into a given Axes
    full = plots.leave_one_out_plot(loo, res=res, max_rows=200)
    assert len(by_gid(main_ax(full), "study_markers")[0].get_offsets()) == 150
