"""The site (alliance_meta.workflow.site) built from a small review in a temporary folder: the
front page carries the headline model's numbers exactly as headline.json holds them, the
caution, the published syntheses, the build's version, data commit and date; figures are
captioned from captions.json; tables are rendered with their CSV; a rebuild is byte-identical
and "what changed" follows a data change. Expected values come from report.headline on a fit of
simulated data and from the files the test writes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import pytest
from test_report import make_effects

import alliance_meta as am
from alliance_meta.workflow import report as rp
from alliance_meta.workflow import site
from alliance_meta.workflow.apa import fmt_ci, fmt_int, fmt_pct, fmt_r, fmt_var

GIT_DATE = "2024-05-01T12:00:00+00:00"
BIB = "@article{S0, author = {Smith, Anna and Jones, Bob}, title = {T}, year = {2019}}\n" \
      "@article{S1, author = {Doe, Jane}, title = {U}, year = {2021}}\n" \
      "@article{S2, author = {Roe, R. and Poe, P. and Low, L.}, title = {V}, year = {2022}}\n" \
      "@article{S3, author = {Lee, K.}, title = {W}, year = {2023}}\n"
SYNTHESES = (
    "synthesis_id,estimate_id,authors,year,population,construct,subgroup,metric,estimate,ci_lb,"
    "ci_ub,k,k_unit,n,model\n"
    "Big2018,Big2018_1,\"Big, A.\",2018,adult-general,alliance,overall,r,.278,.256,.299,295,"
    "studies,,multilevel\n"
    "Dee2020,Dee2020_1,\"Dee, B.\",2020,youth,alliance,overall,d,1.25,,,12,studies,,\n"
)


def _git(root: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": GIT_DATE, "GIT_COMMITTER_DATE": GIT_DATE}
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t",
                    *args], check=True, capture_output=True, env=env)


def _review(tmp_path: Path, per_sample=(1, 2, 1, 3, 1, 1, 2, 1), syntheses: bool = True):
    root = tmp_path / "review"
    studies = root / "studies"
    studies.mkdir(parents=True)
    df = make_effects(per_sample=per_sample)
    df.to_csv(studies / "effects.csv", index=False)
    (studies / "references.bib").write_text(BIB, encoding="utf-8")
    if syntheses:
        (studies / "syntheses.csv").write_text(SYNTHESES, encoding="utf-8")
    _git(root, "init", "-q")
    _git(root, "add", "studies")
    _git(root, "commit", "-q", "-m", "data")
    out = root / "outputs"
    nb = root / "notebooks" / "02_pooled.ipynb"
    runs = [SimpleNamespace(name="02_pooled-all", notebook=nb,
                            parameters={"dependence": "three-level", "method": "REML"}),
            SimpleNamespace(name="05_sensitivity", notebook=nb, parameters={})]
    cfg = SimpleNamespace(root=root, output_dir=out, runs=runs,
                          data_files=[studies / "effects.csv", studies / "references.bib"])
    _write_run(cfg, df)
    return cfg, df


def _write_run(cfg, df):
    """What a pooled run writes: report.md + headline.json, a figure with its caption, a table."""
    run = cfg.output_dir / "02_pooled-all"
    tl = am.three_level(df["yi"], df["vi"], df["sample_id"], test="t")
    rp.write_report(run, tl, df, title="All effects")
    (run / "tables").mkdir(parents=True, exist_ok=True)
    rp.headline(tl, df).to_frame().to_csv(run / "tables" / "pooled.csv", index=False)
    (run / "figures").mkdir(parents=True, exist_ok=True)
    from alliance_meta.viz.theme import _new_figure

    for name in ("forest", "funnel"):
        fig = _new_figure(1, 1)
        fig.savefig(run / "figures" / f"{name}.png", dpi=20)
    rp.record_caption(run, "forest", "Forest plot of the alliance-outcome correlations.",
                      model="three-level (REML)")
    (run / "notebook.html").write_text("<html><body>" + "executed " * 30 + "</body></html>")
    other = cfg.output_dir / "05_sensitivity" / "tables"
    other.mkdir(parents=True, exist_ok=True)
    (other / "leave_one_out.csv").write_text("left_out,r,pval\nS0_s1,0.2512345,0.00004\n")


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&lt;", "<").replace("&amp;", "&")


def test_front_page_has_the_headline_fields_and_the_caution(tmp_path):
    cfg, df = _review(tmp_path)
    index = site.build_site(cfg)
    page = _text(index.read_text(encoding="utf-8"))
    h = json.loads((cfg.output_dir / "02_pooled-all" / rp.HEADLINE_FILE).read_text())
    # the numbers as headline.json holds them, formatted by the APA helpers
    assert f"{fmt_r(h['r'])}, 95% CI {fmt_ci(h['r_ci_lb'], h['r_ci_ub'])}" in page
    assert f"{fmt_int(h['k'])} effects, {fmt_int(h['n_samples'])} samples, " \
           f"{fmt_int(h['n_studies'])} studies" in page
    assert fmt_int(df.groupby("sample_id")["n"].max().sum()) in page  # total N
    assert f"{fmt_var(h['sigma2_between'])} / {fmt_var(h['sigma2_within'])}" in page
    assert f"{fmt_pct(h['I2_between'])}% / {fmt_pct(h['I2_within'])}%" in page
    assert "95% prediction interval" in page
    # 8 samples < 20: the caution, naming the largest published synthesis from syntheses.csv
    assert "Demonstration, not a synthesis." in page
    assert "Big (2018)" in page or "Big et al. (2018)" in page
    assert "pooled k = 295 studies" in page
    # the results paragraph of the headline run, and the build's version, data commit and date
    assert "the pooled alliance\u2013outcome correlation was" in page
    commit = subprocess.run(["git", "-C", str(cfg.root), "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    assert f"alliance-meta {am.__version__}" in page
    assert commit in page and "2024-05-01" in page


def test_no_caution_once_the_set_is_large(tmp_path):
    cfg, _ = _review(tmp_path, per_sample=(1,) * 44)  # 44 samples in 22 studies
    page = site.build_site(cfg).read_text(encoding="utf-8")
    assert "Demonstration, not a synthesis" not in page


def test_syntheses_beside_ours(tmp_path):
    cfg, _ = _review(tmp_path)
    site.build_site(cfg)
    page = _text((cfg.output_dir / "site" / "syntheses.html").read_text(encoding="utf-8"))
    assert "[.26, .30]" in page  # r as printed, without leading zero
    assert "1.25" in page  # a d keeps its leading digit
    assert "this review (demonstration)" in page
    cfg2, _ = _review(tmp_path / "b", syntheses=False)
    site.build_site(cfg2)
    assert not (cfg2.output_dir / "site" / "syntheses.html").exists()


def test_figures_are_captioned_and_tables_rendered(tmp_path):
    cfg, _ = _review(tmp_path)
    site.build_site(cfg)
    page = (cfg.output_dir / "site" / "02_pooled-all.html").read_text(encoding="utf-8")
    assert "Forest plot of the alliance-outcome correlations. Model: three-level (REML)." in page
    assert "<b>Figure 2.</b> funnel" in page  # no caption recorded: the file stem
    assert '<table class="apa">' in page and 'href="../02_pooled-all/tables/pooled.csv"' in page
    assert "<dt>dependence</dt><dd>three-level</dd>" in page  # parameters, not raw JSON
    assert "<h3>Method</h3>" in page and "<h3>Results</h3>" in page
    other = (cfg.output_dir / "site" / "05_sensitivity.html").read_text(encoding="utf-8")
    assert "<td class=\"num\">.25</td>" in other and "&lt; .001" in other


def test_every_link_resolves_offline(tmp_path):
    cfg, _ = _review(tmp_path)
    site.build_site(cfg)
    pages = sorted((cfg.output_dir / "site").glob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "dataset.html", "syntheses.html",
                                       "02_pooled-all.html", "05_sensitivity.html"}
    for p in pages:
        for ref in re.findall(r'(?:href|src)="([^"]+)"', p.read_text(encoding="utf-8")):
            assert not re.match(r"^[a-z]+://", ref), f"{p.name} links outside: {ref}"
            assert (p.parent / unquote(ref)).exists(), f"{p.name}: broken link {ref}"


def test_rebuild_is_byte_identical_and_touches_nothing(tmp_path):
    cfg, _ = _review(tmp_path)
    site.build_site(cfg)
    files = sorted((cfg.output_dir / "site").iterdir())
    before = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    site.build_site(cfg)
    after = {f.name: (f.read_bytes(), f.stat().st_mtime_ns) for f in files}
    assert before == after


def test_what_changed_follows_a_data_change(tmp_path):
    cfg, df = _review(tmp_path)
    site.build_site(cfg)
    first = json.loads((cfg.output_dir / "02_pooled-all" / rp.HEADLINE_FILE).read_text())
    assert "first data state recorded" in (cfg.output_dir / "site" / "index.html").read_text()
    # a study is added: new data, new headline
    more = make_effects(per_sample=(1, 2, 1, 3, 1, 1, 2, 1, 2, 1), seed=7)
    more.to_csv(cfg.data_files[0], index=False)
    _git(cfg.root, "commit", "-q", "-am", "add a study")
    _write_run(cfg, more)
    site.build_site(cfg)
    site.build_site(cfg)  # a rebuild of the same data adds nothing
    hist = json.loads((cfg.output_dir / "site" / site.HISTORY).read_text())
    assert len(hist) == 2
    new = json.loads((cfg.output_dir / "02_pooled-all" / rp.HEADLINE_FILE).read_text())
    page = _text((cfg.output_dir / "site" / "index.html").read_text(encoding="utf-8"))
    block = page[page.index("What changed"):]
    assert f"r{fmt_r(first['r'])}{fmt_r(new['r'])}" in block.replace("\n", "")
    assert f"k effects{first['k']}{new['k']}" in block.replace("\n", "")
    assert fmt_ci(new["r_ci_lb"], new["r_ci_ub"]) in block


@pytest.mark.parametrize("missing", ["headline", "everything"])
def test_site_without_a_pooled_run(tmp_path, missing):
    cfg, _ = _review(tmp_path)
    run = cfg.output_dir / "02_pooled-all"
    (run / rp.HEADLINE_FILE).unlink()
    if missing == "everything":
        (run / "tables" / "pooled.csv").unlink()
    page = _text(site.build_site(cfg).read_text(encoding="utf-8"))
    if missing == "headline":  # runs written before headline.json: read from pooled.csv
        import pandas as pd

        row = pd.read_csv(run / "tables" / "pooled.csv").iloc[0]
        assert f"{fmt_r(row['r'])}, 95% CI {fmt_ci(row['r_ci_lb'], row['r_ci_ub'])}" in page
    else:
        assert "No pooled run has been executed yet" in page


def test_dataset_page_has_table1_and_the_prisma_diagram(tmp_path):
    from alliance_meta.viz.prisma import prisma_flow, prisma_table

    cfg, df = _review(tmp_path)
    run = cfg.output_dir / "01_dataset"
    cfg.runs.insert(0, SimpleNamespace(name="01_dataset", notebook=cfg.runs[0].notebook,
                                       parameters={}))
    counts = {"identified": {"search": 30}, "duplicates": 2, "screened": 28, "not_retrieved": 1,
              "excluded": {"no-statistic": 23}, "included": {"studies": 4, "samples": 8,
                                                              "effects": len(df)}}
    (run / "figures").mkdir(parents=True)
    (run / "tables").mkdir(parents=True)
    prisma_flow(counts).savefig(run / "figures" / "prisma.svg")
    prisma_table(counts).to_csv(run / "tables" / "prisma_counts.csv", index=False)
    rp.record_caption(run, "prisma", "PRISMA 2020 flow diagram of the studies screened.")
    site.build_site(cfg)
    page = _text((cfg.output_dir / "site" / "dataset.html").read_text(encoding="utf-8"))
    # Table 1: author-year labels from the review's references.bib, one row per sample
    assert "Smith & Jones (2019), sample 1" in page and "Roe et al. (2022), sample 2" in page
    assert (cfg.output_dir / "site" / "table1.csv").exists()
    assert "PRISMA 2020 flow diagram of the studies screened." in page
    assert "Records screened" in page and "searches of the stored pages" in page


def test_demonstration_caution_from_the_headline(tmp_path):
    from alliance_meta.workflow.published import (
        CAUTION_BELOW_SAMPLES,
        demonstration_caution,
        read_syntheses,
    )

    (tmp_path / "syntheses.csv").write_text(SYNTHESES, encoding="utf-8")
    syn = read_syntheses(tmp_path)
    text = demonstration_caution({"k": 11, "n_samples": 8}, syn)
    assert text.startswith("Demonstration, not a synthesis. The curated set holds 11 effects "
                           "from 8 independent samples")
    assert "(the largest listed, Big et al. (2018), pooled k = 295 studies)" in text
    assert demonstration_caution({"k": 40, "n_samples": CAUTION_BELOW_SAMPLES}, syn) == ""
    assert read_syntheses(tmp_path / "absent") is None


def test_what_changed_is_seeded_from_the_committed_outputs(tmp_path):
    cfg, _ = _review(tmp_path)
    old = json.loads((cfg.output_dir / "02_pooled-all" / rp.HEADLINE_FILE).read_text())
    _git(cfg.root, "add", "outputs")
    _git(cfg.root, "commit", "-q", "-m", "outputs")
    commit = subprocess.run(["git", "-C", str(cfg.root), "log", "-1", "--format=%h"],
                            capture_output=True, text=True).stdout.strip()
    # a study is added and the runs re-executed; no site/history.json exists yet
    more = make_effects(per_sample=(1, 2, 1, 3, 1, 1, 2, 1, 2, 1), seed=7)
    more.to_csv(cfg.data_files[0], index=False)
    _write_run(cfg, more)
    site.build_site(cfg)
    hist = json.loads((cfg.output_dir / "site" / site.HISTORY).read_text())
    assert len(hist) == 2 and hist[0]["commit"] == commit
    assert hist[0]["headline"]["r"] == pytest.approx(old["r"])
    page = _text((cfg.output_dir / "site" / "index.html").read_text(encoding="utf-8"))
    block = page[page.index("What changed"):].replace("\n", "")
    assert f"committed to outputs/ at {commit}" in block
    assert f"k effects{old['k']}{len(more)}" in block


def test_paged_figures_in_page_order(tmp_path):
    """Issue 16: a forest split across pages is shown page 1, 2, ..., 10, not 1, 10, 2."""
    from alliance_meta.viz.theme import _new_figure
    from alliance_meta.workflow.site import _figures

    figs = tmp_path / "run" / "figures"
    figs.mkdir(parents=True)
    for i in (1, 2, 10):
        _new_figure(1, 1).savefig(figs / f"forest_page{i}.png", dpi=10)
    shown = re.findall(r'<img src="[^"]*/(forest_page\d+)\.png"', "".join(
        _figures(tmp_path / "run", "run")))
    assert shown == ["forest_page1", "forest_page2", "forest_page10"]
