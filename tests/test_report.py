"""The results layer: APA formatting, generated paragraphs whose every number is found in the
table it comes from, Table 1 labels from references.bib, and the report/caption files.

Expected numbers come from the fitted result objects' own tables (``summary()``,
``variance_components()``), never typed by hand; the formatting rules come from the APA
Publication Manual (7th ed., sections 6.36 and 7.21), quoted beside each check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import alliance_meta as am
from alliance_meta.workflow import report as rp
from alliance_meta.workflow.apa import (
    MINUS,
    apa_table,
    fmt_ci,
    fmt_df,
    fmt_int,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_r,
    fmt_var,
    p_text,
    parse_number,
)
from alliance_meta.workflow.table1 import author_year, parse_bib, study_labels, table1

ROOT = Path(__file__).resolve().parent.parent
NUMBER = re.compile(r"(?<![\w.])[\u2212-]?(?:\d[\d,]*(?:\.\d+)?|\.\d+)")


def numbers(text: str) -> list[str]:
    """Every number printed in a paragraph, as printed (citation years included)."""
    return [m.group(0).rstrip(",") for m in NUMBER.finditer(text)]


def make_effects(per_sample=(1, 2, 1, 3, 1, 1, 2, 1), seed: int = 1, spread: float = 0.08):
    """A small simulated review (two samples per study), the shape of studies/effects.csv."""
    rng = np.random.default_rng(seed)
    rows = []
    for j, m in enumerate(per_sample):
        n = int(rng.integers(30, 400))
        u = rng.normal(0, spread)
        for e in range(m):
            r = np.tanh(0.25 + u + rng.normal(0, 0.05) + rng.normal(0, 1 / np.sqrt(n - 3)))
            rows.append({"study_id": f"S{j // 2}", "sample_id": f"S{j // 2}_s{j % 2 + 1}",
                         "es_id": f"S{j}_{e}", "n": n, "yi": float(np.arctanh(r)),
                         "vi": 1 / (n - 3), "format": ["individual", "group", "family"][e % 3],
                         "stat_type": "r"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def effects():
    return make_effects()


@pytest.fixture(scope="module")
def models(effects):
    """The headline candidates of a run, fitted directly (REML; Knapp-Hartung / t tests)."""
    y, v, s = effects["yi"], effects["vi"], effects["sample_id"]
    re = am.random_effects(y, v, method="REML", test="knha")
    ag = am.aggregate(y, v, s, rho=0.5)
    return {"random effects": re, "three-level": am.three_level(y, v, s, test="t"),
            "robust (CR2)": am.robust(re, s),
            "aggregated per sample": am.random_effects(ag["yi"], ag["vi"], test="knha")}


def _table(res) -> dict:
    """The result's own table as one dict: summary() (+ variance_components() for three-level)."""
    row = res.summary().iloc[0].to_dict()
    if hasattr(res, "variance_components"):
        vc = res.variance_components()
        row.update(sigma2_between=vc["sigma2"].iloc[0], sigma2_within=vc["sigma2"].iloc[1],
                   I2_between=vc["I2"].iloc[0], I2_within=vc["I2"].iloc[1],
                   tau2=vc["sigma2"].sum(), I2=vc["I2"].sum())
    return row


# ---------------------------------------------------------------------------------------------
# APA formatting


def test_apa_numbers():
    # APA 6.36: no leading zero when a value cannot exceed 1 (r, p); a minus sign, not a hyphen
    assert fmt_r(0.2241055) == ".22"
    assert fmt_r(-0.0489) == f"{MINUS}.05"
    assert fmt_r(-0.001) == ".00"  # rounds to zero: unsigned
    assert fmt_r(1.0) == "1.00"
    # APA 6.36: exact p to three decimals, p < .001 below that
    assert fmt_p(0.03149552) == ".031"
    assert fmt_p(7.98e-05) == "< .001"
    assert fmt_p(0.0010) == ".001"
    assert fmt_p(0.99999) == "> .999"
    assert p_text(0.0312) == "p = .031" and p_text(1e-9) == "p < .001"
    # statistics that can exceed 1 keep the leading zero, two decimals
    assert fmt_num(0.5) == "0.50" and fmt_num(-2.151) == f"{MINUS}2.15"
    # variances: three decimals, "< 0.001" for a non-zero variance that would print as zero
    assert fmt_var(0.003234921) == "0.003" and fmt_var(0.0) == "0.000"
    assert fmt_var(0.0002) == "< 0.001"
    assert fmt_pct(27.2963722) == "27.3"
    # APA 6.38: commas between groups of three digits
    assert fmt_int(1303) == "1,303" and fmt_int(11) == "11"
    assert fmt_df(7.0) == "7" and fmt_df(4.3712) == "4.37"
    assert fmt_ci(0.1473, 0.2982) == "[.15, .30]"
    assert fmt_r(float("nan")) == "" and fmt_p(None) == ""


@pytest.mark.parametrize("x", [0.2241, -0.0489, 0.5, 1303.0, -2.151])
def test_parse_number_inverts_the_formatters(x):
    s = fmt_int(x) if x > 1000 else (fmt_r(x) if abs(x) < 1 else fmt_num(x))
    assert parse_number(s) == pytest.approx(x, abs=0.005)


def test_apa_table_rounds_and_merges_intervals():
    df = pd.DataFrame({"model": ["a", "b"], "k": [11, 8], "r": [0.2241, -0.05],
                       "r_ci_lb": [0.1473, -0.2], "r_ci_ub": [0.2982, 0.1],
                       "pval": [7.98e-05, 0.5484], "tau2": [0.003234, 0.0], "I2": [27.29, 0.0]})
    out = apa_table(df, title="Pooled", number=2, note="Three-level.",
                    csv_href="../x/tables/pooled.csv", max_rows=1)
    assert "<b>Table 2</b>" in out and "<i>Pooled</i>" in out
    assert "<td class=\"num\">.22</td>" in out
    assert "[.15, .30]" in out and "95% CI" in out  # one CI column from the two bounds
    assert "&lt; .001" in out and "0.003" in out and "27.3" in out
    assert "r_ci_lb" not in out
    assert "First 1 of 2 rows shown." in out
    assert 'href="../x/tables/pooled.csv"' in out
    assert "\u2212.05" not in out  # the second row was cut by max_rows
    flags = apa_table(pd.DataFrame({"model": ["a", "b"], "headline": [True, False]}))
    assert "<td>yes</td>" in flags and "1.00" not in flags


# ---------------------------------------------------------------------------------------------
# the headline and its paragraph agree with the run's table


@pytest.mark.parametrize("name", ["random effects", "three-level", "aggregated per sample"])
def test_headline_equals_the_result_table(effects, models, name):
    # expected: the fitted result's own summary() / variance_components()
    row = _table(models[name])
    h = rp.headline(models[name], effects, rho=0.5 if name.startswith("aggregated") else None)
    for col in ("r", "r_ci_lb", "r_ci_ub", "tau2", "I2", "pval"):
        assert getattr(h, col) == pytest.approx(row[col], rel=1e-12), col
    if "r_pi_lb" in row:
        assert (h.r_pi_lb, h.r_pi_ub) == pytest.approx((row["r_pi_lb"], row["r_pi_ub"]))
        assert (h.tau2_ci_lb, h.tau2_ci_ub) == pytest.approx((row["tau2_ci_lb"],
                                                              row["tau2_ci_ub"]))
    assert h.n_samples == effects["sample_id"].nunique()
    assert h.k == len(effects) and h.k_pooled == models[name].k
    # total N counts each sample once, at its largest n
    assert h.N == effects.groupby("sample_id")["n"].max().sum()


def _allowed(h: rp.Headline) -> set[str]:
    """Every way a headline field is printed, plus the fixed 95 of '95% CI'."""
    vals = {"95"}
    d = h.to_dict()
    for key in ("r", "r_ci_lb", "r_ci_ub", "r_pi_lb", "r_pi_ub"):
        if d[key] is not None:
            vals.add(fmt_r(d[key]))
    for key in ("tau2", "tau2_ci_lb", "tau2_ci_ub", "sigma2_between", "sigma2_within",
                "sigma2_between_ci_lb", "sigma2_between_ci_ub", "sigma2_within_ci_lb",
                "sigma2_within_ci_ub"):
        if d[key] is not None:
            vals.add(fmt_var(d[key]).replace("< ", ""))
    for key in ("I2", "I2_between", "I2_within"):
        if d[key] is not None:
            vals.add(fmt_pct(d[key]))
    vals |= {fmt_int(h.k), fmt_int(h.n_samples), fmt_int(h.n_studies), fmt_int(h.N),
             fmt_df(h.df), fmt_df(h.QE_df), fmt_num(h.stat), fmt_num(h.QE),
             fmt_p(h.pval).replace("< ", ""), fmt_p(h.QE_p).replace("< ", ""), str(rp.SMALL_K)}
    return vals


@pytest.mark.parametrize("name", ["random effects", "three-level"])
def test_every_number_in_the_results_paragraph_is_in_the_table(effects, models, name):
    text = rp.results_paragraph(models[name], effects)
    h = rp.headline(models[name], effects)
    allowed = _allowed(h)
    printed = numbers(text)
    assert len(printed) >= 10
    stray = [x for x in printed if x not in allowed]
    assert not stray, f"numbers not in the headline table: {stray}\n{text}"
    # and the headline numbers against the result's own table
    row = _table(models[name])
    m = re.search(r"r = (\S+), 95% CI \[(\S+), (\S+)\]", text)
    assert [parse_number(g) for g in m.groups()] == pytest.approx(
        [round(row[c], 2) for c in ("r", "r_ci_lb", "r_ci_ub")])
    assert f"k = {len(effects)} effects from {effects['sample_id'].nunique()} samples" in text
    if name == "random effects":
        pi = re.search(r"prediction interval .* was \[(\S+), (\S+)\]", text).groups()
        assert [parse_number(x) for x in pi] == pytest.approx(
            [round(row["r_pi_lb"], 2), round(row["r_pi_ub"], 2)])
        assert f"\u03c4\u00b2 = {fmt_var(row['tau2'])}" in text
        assert f"I\u00b2 = {fmt_pct(row['I2'])}%" in text
    else:
        res = models[name]
        assert f"I\u00b2 = {fmt_pct(res.I2_between)}% between" in text
        assert f"\u03c3\u00b2 between samples = {fmt_var(res.sigma2_between)}" in text


def test_robust_paragraph_reports_the_cr2_test(effects, models):
    rob = models["robust (CR2)"]
    text = rp.results_paragraph(models["random effects"], effects, robust=rob)
    # expected: the RobustResult's own Satterthwaite df, t and CI
    first = lambda a: float(np.ravel(a)[0])  # noqa: E731
    assert f"t({fmt_df(first(rob.df))}) = {fmt_num(first(rob.tval))}" in text
    assert fmt_ci(np.tanh(first(rob.ci_lb)), np.tanh(first(rob.ci_ub))) in text
    assert "CR2" in text
    methods = rp.methods_paragraph(models["random effects"], effects, robust=rob)
    assert "Pustejovsky & Tipton, 2018" in methods and "Satterthwaite" in methods


def test_tiny_variance_reads_as_an_inequality():
    # "< 0.001" replaces the "=": "sigma2 = < 0.001" is not a sentence
    assert rp._var_text("\u03c3\u00b2", 0.0002, 0.0, 0.02, 0.95) == \
        "\u03c3\u00b2 < 0.001, 95% CI [0.000, 0.020]"
    assert rp._var_text("\u03c4\u00b2", 0.0031, float("nan"), float("nan"), 0.95) == \
        "\u03c4\u00b2 = 0.003"


def test_small_k_cautions():
    df = pd.DataFrame({"study_id": ["A", "B", "C"], "sample_id": ["A1", "B1", "C1"],
                       "n": [103, 103, 103], "yi": [0.20, 0.21, 0.19], "vi": [0.01] * 3})
    res = am.random_effects(df.yi, df.vi, test="knha")
    assert res.tau2 == 0  # REML truncates at 0: Q = 0.02 is far below its df of 2
    text = rp.results_paragraph(res, df)
    assert "fewer than 5" in text
    assert "prediction interval equals the confidence interval" in text
    ci = re.search(r"95% CI (\[\S+, \S+\])", text).group(1)
    assert f"prediction interval for the correlation in a new sample was {ci}" in text


def test_moderator_sentence_numbers_come_from_the_model(effects):
    reg = am.meta_regression(effects.yi, effects.vi, mods=effects, formula="~ C(format)",
                             test="knha")
    perm = am.permutation_test(reg, n_perm=200, seed=0)
    s = rp.moderator_sentence("format", (reg, perm), effects)
    df1, df2 = np.ravel(reg.QM_df)[:2]
    # expected: the MetaRegressionResult's QM and QM_df (F test under Knapp-Hartung)
    assert f"F({fmt_df(df1)}, {fmt_df(df2)}) = {fmt_num(reg.QM)}, {p_text(reg.QM_p)}" in s
    assert f"permutation {p_text(perm.QM_p)}" in s
    # "family" holds fewer than 3 effects in the simulated data: flagged, not interpreted
    small = effects["format"].value_counts()
    assert small["family"] < 3 and "(family) are not interpreted" in s
    sg = am.subgroup_analysis(effects.yi, effects.vi, effects["format"], moderator="format")
    s2 = rp.moderator_sentence("format", sg)
    assert f"Q({sg.df_between}) = {fmt_num(sg.Q_between)}" in s2


def test_bias_sentences_numbers_come_from_the_results(effects):
    res = am.random_effects(effects.yi, effects.vi)
    eg, tf, fs = am.egger_test(res), am.trim_and_fill(res), am.fail_safe_n(effects.yi, effects.vi)
    text = rp.bias_sentences({"Egger": eg, "trim-and-fill": tf, "fail-safe N": fs}, k=8)
    assert f"{fmt_num(eg.zval)}, {p_text(eg.pval)}" in text
    assert f"imputed {tf.k0} effect" in text and fmt_r(np.tanh(tf.estimate)) in text
    assert f"was {fmt_int(fs.fsnum)}" in text
    assert "Sterne et al., 2011" in text
    from alliance_meta.workflow.workbench import Attempt

    failed = Attempt("selection model", None, "needs at least 10 effects")
    assert "could not be run (needs at least 10 effects)" in rp.bias_sentences({"x": failed})


def test_methods_paragraph_names_model_test_and_software(effects, models):
    text = rp.methods_paragraph(models["three-level"], effects)
    assert "three-level" in text and "Konstantopoulos, 2011" in text
    assert f"alliance-meta {am.__version__}" in text
    assert f"NumPy {np.__version__}" in text and "Viechtbauer, 2010" in text
    assert "Peterson & Brown" not in text  # no beta-converted effect in the data
    beta = effects.assign(stat_type=["beta"] + ["r"] * (len(effects) - 1))
    conv = rp.methods_paragraph(models["three-level"], beta)
    assert "Peterson & Brown, 2005" in conv
    assert f"Of the {len(effects)} effects, 1 was reported as" in conv  # never opens on a numeral
    kh = rp.methods_paragraph(models["random effects"], effects)
    assert "Knapp & Hartung, 2003" in kh and f"k \u2212 1 = {len(effects) - 1}" in kh
    agg = rp.methods_paragraph(models["aggregated per sample"], effects, rho=0.5)
    assert "\u03c1 = .50" in agg


def test_write_report_is_deterministic_and_lists_cited_references(tmp_path, effects, models):
    p = rp.write_report(tmp_path / "run", models["three-level"], effects, title="All effects",
                        caution="Demonstration, not a synthesis.")
    text = p.read_text(encoding="utf-8")
    assert p.name == "report.md" and "> Demonstration, not a synthesis." in text
    assert "## Method" in text and "## Results" in text
    assert "Konstantopoulos, S. (2011)" in text and "Knapp, G." not in text
    first = (p.read_bytes(), (p.parent / rp.HEADLINE_FILE).read_bytes())
    rp.write_report(tmp_path / "run", models["three-level"], effects, title="All effects",
                    caution="Demonstration, not a synthesis.")
    assert first == (p.read_bytes(), (p.parent / rp.HEADLINE_FILE).read_bytes())
    head = json.loads((p.parent / rp.HEADLINE_FILE).read_text())
    assert head["r"] == pytest.approx(np.tanh(models["three-level"].estimate))
    assert head["k"] == len(effects)


def test_captions_round_trip(tmp_path):
    rp.record_caption(tmp_path, "forest", "Forest plot of 11 effects.", model="three-level")
    rp.record_caption(tmp_path, "funnel", "Funnel plot.")
    caps = rp.read_captions(tmp_path / "figures")
    assert caps["forest"] == {"caption": "Forest plot of 11 effects.", "model": "three-level"}
    assert list(json.loads((tmp_path / "figures" / "captions.json").read_text())) == [
        "forest", "funnel"]


# ---------------------------------------------------------------------------------------------
# Table 1


BIB = r"""
@article{One2010, author = {Smith, Anna}, title = {B title}, year = {2010}}
@article{Two2011,
  author = {Smith, Anna and Jones, Bob},
  title = "Two authors", year = 2011 }
@article{Three2012a, author = {Reuterski{\"o}ld, Lena and Doe, J. and Roe, R.},
  title = {Zeta}, year = {2012}}
@article{Three2012b, author = {Lena Reuterski{\"o}ld and Kim Lee and Max Poe},
  title = {Alpha {Nested} Braces}, year = {2012}}
"""


def test_author_year_labels_follow_apa():
    bib = parse_bib(BIB)
    # APA 8.17: one or two authors by surname, three or more "First et al."
    assert author_year(bib["One2010"]) == ("Smith", "2010")
    assert author_year(bib["Two2011"]) == ("Smith & Jones", "2011")
    assert bib["Three2012b"]["title"] == "Alpha Nested Braces"
    labels = study_labels(["Three2012a", "Three2012b", "One2010", "Missing"], bib)
    # APA 8.19: same authors and year -> a, b ordered by title ("Alpha" before "Zeta")
    assert labels["Three2012b"] == "Reuterski\u00f6ld et al. (2012a)"
    assert labels["Three2012a"] == "Reuterski\u00f6ld et al. (2012b)"
    assert labels["Missing"] == "Missing"


def test_table1_one_row_per_sample():
    bib = parse_bib(BIB)
    df = pd.DataFrame({
        "study_id": ["One2010", "One2010", "Two2011", "Two2011"],
        "sample_id": ["One2010_s1", "One2010_s1", "Two2011_s1", "Two2011_s2"],
        "n": [40, 38, 100, 120], "modality": ["CBT", "CBT", "mixed", "mixed"],
        "outcome_measure": ["BDI", "HAM-D", "OQ-45", "OQ-45"], "country": ["", "", "", ""],
        "r_kind": ["zero-order"] * 4,
    })
    t = table1(df, bib)
    assert list(t["Study"]) == ["Smith (2010)", "Smith & Jones (2011), sample 1",
                                "Smith & Jones (2011), sample 2"]
    assert list(t["n"]) == [40, 100, 120]  # a sample's effects share participants: largest n
    assert list(t["k"]) == [2, 1, 1]
    assert t.loc[0, "Outcome"] == "BDI; HAM-D"
    assert "Country" not in t.columns  # coded nowhere: no empty column


def test_table1_labels_every_curated_study():
    # the curated bibliography gives an author-year label to every study in effects.csv
    df = pd.read_csv(ROOT / "studies" / "effects.csv", dtype=str, keep_default_na=False)
    t = table1(df, ROOT / "studies" / "references.bib")
    assert len(t) == df["sample_id"].nunique()
    assert t["Study"].str.contains(r"\(\d{4}[a-z]?\)").all(), t["Study"].tolist()


def test_three_level_paragraph_reports_profile_cis_pi_and_contain_df(effects):
    y, v, s = effects["yi"], effects["vi"], effects["sample_id"]
    tl = am.three_level(y, v, s, test="t", dfs="contain")
    text = rp.results_paragraph(tl, effects)
    ci = tl.confint()  # expected: metafor's confint.rma.mv as the result computes it
    for comp, name in (("sigma2_between", "between"), ("sigma2_within", "within")):
        lb, ub = ci.loc[comp, "ci_lb"], ci.loc[comp, "ci_ub"]
        assert (f"\u03c3\u00b2 {name} samples = {fmt_var(ci.loc[comp, 'estimate'])}, 95% CI "
                f"{fmt_ci(lb, ub, fmt_var)}") in text
    assert f"was {fmt_ci(np.tanh(tl.pi_lb), np.tanh(tl.pi_ub))}" in text  # predict.rma.mv
    assert f"t({fmt_df(tl.dfs)}) = {fmt_num(tl.tval)}" in text
    assert tl.dfs == effects["sample_id"].nunique() - 1  # contain: samples - 1
    assert "\u201ccontain\u201d" in rp.methods_paragraph(tl, effects)
    stray = [x for x in numbers(text) if x not in _allowed(rp.headline(tl, effects))]
    assert not stray, stray


def test_three_level_fallback_is_reported_as_random_effects(effects):
    one = effects.drop_duplicates("sample_id")
    tl = am.three_level(one["yi"], one["vi"], one["sample_id"], test="t")
    assert tl.fallback  # every sample has one effect
    text = rp.results_paragraph(tl, one)
    assert "fitted as a random-effects model" in text
    assert f"\u03c4\u00b2 = {fmt_var(tl.sigma2_between)}" in text and "within samples" not in text
    assert f"I\u00b2 = {fmt_pct(tl.I2_between)}%" in text
