"""Any review, not only ours (issue 13): a wheel of this project, installed (not editable) into a
fresh environment, creates a review in a fresh folder, imports a dataset coded elsewhere with
columns of its own, runs the pooled notebook, and agrees with metafor; exports round-trip;
``validate`` checks the review it stands in.

The dataset is metadat's molloy2014 written out as Author, Year, r_xy, N by
tests/reference/make_own_review_reference.R, which also writes metafor's estimates
(tests/reference/own_review_molloy2014.json). molloy2014 has one correlation per study, so
each study is one sample: the headline of the 02_pooled run (three-level, t-test with contain
df, issue 12) is fitted as random effects there, and is compared with metafor's
rma.mv(test = "t", dfs = "contain"), which equals rma(test = "t") on these data (only the sum of
the two variance components is identified).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alliance_meta.data import StudiesValidationError, load_studies
from alliance_meta.data.importer import import_effects
from alliance_meta.workflow.project import NotAReviewError, find_review, init_review

ROOT = Path(__file__).resolve().parents[1]
FOREIGN = ROOT / "tests" / "fixtures" / "molloy2014_foreign.csv"
REF = json.loads((ROOT / "tests" / "reference" / "own_review_molloy2014.json").read_text())
RENAME = ["--rename", "Author=study_id", "--rename", "Year=year", "--rename", "r_xy=r",
          "--rename", "N=n"]
TOL_ITERATIVE = 1e-5  # tests/conftest.py: REML is iterative


def _clean_env() -> dict[str, str]:
    """The environment without this repository's review or studies settings."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("ALLIANCE_META_PROJECT", "ALLIANCE_META_STUDIES", "PYTHONPATH")}
    return env


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> Path:
    """A fresh virtual environment holding only a wheel of this project; its dependencies come
    from the test environment's site-packages through a .pth file (nothing downloaded, and the
    editable install's import hook is not loaded: .pth files of an added path are not run)."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheels = tmp / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w",
                    str(wheels)], check=True, capture_output=True)
    (whl,) = wheels.glob("alliance_meta-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True,
                               text=True).stdout.strip())
    (site / "_deps_from_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps",
                    "--no-index", "-q", str(whl)], check=True, capture_output=True)
    # data files of the dependencies live beside site-packages: nbconvert's HTML templates
    share = venv / "share" / "jupyter"
    share.mkdir(parents=True)
    (share / "nbconvert").symlink_to(Path(sys.prefix) / "share" / "jupyter" / "nbconvert")
    # the kernel papermill starts must be this environment's python, not the test env's
    subprocess.run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", "python3"],
                   check=True, capture_output=True, env=_clean_env())
    where = subprocess.run([str(py), "-c", "import alliance_meta; print(alliance_meta.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp,
                           env=_clean_env()).stdout.strip()
    assert Path(where).is_relative_to(site), f"alliance_meta imported from {where}, not the wheel"
    return venv


def _cli(venv: Path, *args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run([str(venv / "bin" / "alliance-meta"), *args], cwd=cwd, text=True,
                         capture_output=True, env=_clean_env())
    if ok:
        assert res.returncode == 0, f"alliance-meta {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


def test_wheel_review_end_to_end(wheel_env, tmp_path):
    work = tmp_path / "fresh"
    work.mkdir()
    _cli(wheel_env, "init", "review", cwd=work)
    review = work / "review"
    for f in ("pipeline.yml", "README.md", "studies/effects.csv", "studies/CODEBOOK.md",
              "studies/references.bib", "studies/datapackage.json",
              "notebooks/02_pooled.ipynb"):
        assert (review / f).is_file(), f
    assert (review / "studies" / "CODEBOOK.md").read_bytes() == \
        (ROOT / "alliance_meta" / "data" / "CODEBOOK.md").read_bytes()
    shutil.copy(FOREIGN, review / "data.csv")
    res = _cli(wheel_env, "import", "data.csv", *RENAME, cwd=review)
    assert "Imported 16 row(s) from 16 study(ies)" in res.stdout
    _cli(wheel_env, "run", "--only", "02_pooled-all", cwd=review / "notebooks")  # found upwards
    pooled = pd.read_csv(review / "outputs" / "02_pooled-all" / "tables" / "pooled.csv")
    (row,) = [r for _, r in pooled.iterrows() if r["dependence"] == "three-level"]  # headline
    # the headline: three-level, t with contain df (issue 12); with one effect per sample it is
    # fitted as random effects (the label says so; its wording belongs to the notebook)
    assert "random effects" in row["model"]
    mv = REF["three_level"]
    assert row["k"] == REF["k"] == 16 and row["df"] == mv["df"] == 15
    for ours, theirs in ((row["estimate"], mv["beta"]), (row["se"], mv["se"]),
                         (row["r_ci_lb"], np.tanh(mv["ci_lb"])),
                         (row["r_ci_ub"], np.tanh(mv["ci_ub"])), (row["tau2"], mv["sigma2_sum"])):
        np.testing.assert_allclose(ours, theirs, rtol=TOL_ITERATIVE)
    # rma.mv equals rma(test = "t") here (the same model)
    np.testing.assert_allclose(mv["beta"], REF["random_effects_t"]["beta"], rtol=TOL_ITERATIVE)

    # back to R: yi and vi are metafor's escalc values; the script fits rma.mv
    _cli(wheel_env, "export", "--format", "metafor", "export/molloy.csv", cwd=review)
    out = pd.read_csv(review / "export" / "molloy.csv")
    assert list(out.columns[:5]) == ["es_id", "sample_id", "study_id", "yi", "vi"]
    np.testing.assert_allclose(out["yi"], REF["yi"], rtol=1e-12, atol=1e-15)  # closed form
    np.testing.assert_allclose(out["vi"], REF["vi"], rtol=1e-12)
    script = (review / "export" / "molloy.R").read_text()
    assert 'read.csv("molloy.csv"' in script
    assert "rma.mv(yi, vi, random = ~ 1 | sample_id/es_id" in script
    # ... and into a second review through the yi/vi shorthand: the same effects come back
    _cli(wheel_env, "init", "again", cwd=work)
    _cli(wheel_env, "import", str(review / "export" / "molloy.csv"), cwd=work / "again")
    back = load_studies(work / "again" / "studies")
    assert list(back["es_id"]) == list(out["es_id"])
    np.testing.assert_allclose(back["yi"], out["yi"], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(back["vi"], out["vi"], rtol=1e-12)

    # validate checks the review it stands in: a broken copy fails, the original still passes
    copy = work / "copy"
    shutil.copytree(review, copy, ignore=shutil.ignore_patterns("outputs"))
    copied = copy / "studies" / "effects.csv"
    header = copied.read_text(encoding="utf-8").splitlines()[0].split(",")
    broken = dict.fromkeys(header, "") | {"es_id": "Broken2020_1", "study_id": "Broken2020",
                                          "sample_id": "Broken2020_s1", "n": "2", "stat_type": "r",
                                          "stat_value": "0.5", "sign": "1",
                                          "r_kind": "zero-order", "provenance": "external"}
    with copied.open("a", encoding="utf-8") as f:
        f.write(",".join(broken.values()) + "\n")
    bad = _cli(wheel_env, "validate", cwd=copy / "notebooks", ok=False)
    assert bad.returncode == 1 and f"{copied}:18: n: 2 is below the minimum" in bad.stdout
    assert _cli(wheel_env, "validate", cwd=review).returncode == 0
    assert _cli(wheel_env, "validate", "--project", str(copy), cwd=work, ok=False).returncode == 1
    nowhere = _cli(wheel_env, "validate", cwd=work, ok=False)
    assert nowhere.returncode == 2 and "alliance-meta init" in nowhere.stderr


# ---------------------------------------------------------------------------------------------
# the import path in this process (fast): shorthand, renaming, errors, nothing written


@pytest.fixture()
def review(tmp_path) -> Path:
    return init_review(tmp_path / "r").root


def test_find_review_upwards_and_not_the_package(review, monkeypatch):
    monkeypatch.delenv("ALLIANCE_META_PROJECT", raising=False)
    monkeypatch.chdir(review / "notebooks")
    assert find_review().root == review
    monkeypatch.chdir(review.parent)
    with pytest.raises(NotAReviewError, match="alliance-meta init"):
        find_review()
    with pytest.raises(FileExistsError):
        init_review(review)


def test_import_r_and_n_with_rename_ids_and_bibliography(review):
    rows = import_effects(FOREIGN, {"Author": "study_id", "Year": "year", "r_xy": "r", "N": "n"},
                          review / "studies")
    assert len(rows) == 16 and set(rows["provenance"]) == {"external"}
    # "Axelsson et al." 2009 and 2011 are two studies; O'Cleirigh keeps its letters
    assert {"Axelsson2009", "Axelsson2011", "OCleirigh2007"} <= set(rows["study_id"])
    assert rows.loc[rows.study_id == "Axelsson2009", "notes"].iloc[0] == \
        "study as given in the imported file: Axelsson et al."
    assert (rows["sample_id"] == rows["study_id"] + "_s1").all()
    np.testing.assert_allclose(rows["yi"], REF["yi"], rtol=1e-12, atol=1e-15)
    bib = (review / "studies" / "references.bib").read_text()
    assert bib.count("@misc{") == 16 and "@misc{Axelsson2011," in bib
    # importing the same file again finds the same studies, so its rows are duplicates
    before = (review / "studies" / "effects.csv").read_bytes()
    with pytest.raises(StudiesValidationError, match="the same effect"):
        import_effects(FOREIGN, {"Author": "study_id", "Year": "year", "r_xy": "r", "N": "n"},
                       review / "studies")
    assert (review / "studies" / "effects.csv").read_bytes() == before


def test_import_yi_vi_and_refusals_write_nothing(review, tmp_path):
    effects = review / "studies" / "effects.csv"
    before = effects.read_bytes()
    n = np.array([40, 103])
    good = pd.DataFrame({"study": ["Lee2001", "Kim2003"], "yi": np.arctanh([0.3, -0.1]),
                         "vi": 1 / (n - 3)})
    # vi from another formula (not 1/(n - 3) for a whole n) is refused, naming row and column
    bad = good.assign(vi=[0.0251, 0.01])
    with pytest.raises(StudiesValidationError) as e:
        import_effects(bad, {"study": "study_id"}, review / "studies")
    assert "<data frame>:2: vi: vi = 0.0251 is not 1/(n - 3)" in str(e.value)
    # a bad value is reported with the file's line and the user's column name
    path = tmp_path / "mine.csv"  # a blank line 3 is skipped but counted
    path.write_text("Author,r_xy,N\nLee2001,0.3,40\n\nKim2003,0.12,3\n", encoding="utf-8")
    with pytest.raises(StudiesValidationError) as e:
        import_effects(path, {"Author": "study_id", "r_xy": "r", "N": "n"}, review / "studies")
    assert f"{path}:4: n (N in the file): 3 is below the minimum of 4" in str(e.value)
    with pytest.raises(StudiesValidationError, match="no such column"):
        import_effects(path, {"Writer": "study_id"}, review / "studies")
    assert effects.read_bytes() == before
    # the same rows as yi/vi pass, through the dry run first (nothing written) and then for real
    dry = import_effects(good, {"study": "study_id"}, review / "studies", dry_run=True)
    assert effects.read_bytes() == before and list(dry["n"]) == [40, 103]
    rows = import_effects(good, {"study": "study_id"}, review / "studies")
    np.testing.assert_allclose(rows["r"], [0.3, -0.1], rtol=1e-12)
    np.testing.assert_allclose(rows["vi"], 1 / (n - 3), rtol=1e-12)


def test_import_excel(review, tmp_path):
    path = tmp_path / "mine.xlsx"
    pd.read_csv(FOREIGN).rename(columns={"Author": "study_id", "Year": "year", "r_xy": "r",
                                         "N": "n"}).to_excel(path, index=False)
    rows = import_effects(path, path=review / "studies")
    assert len(rows) == 16
    np.testing.assert_allclose(rows["yi"], REF["yi"], rtol=1e-12, atol=1e-15)


def test_import_partial_r_with_covariates_as_metafor_zpcor(review):
    # expected: tests/reference/metafor_escalc.json, escalc(measure = "ZPCOR", ti, ni, mi) on
    # dat.aloe2013, where mi counts the alliance's predictor too (n_covariates = mi - 1)
    ref = json.loads((ROOT / "tests" / "reference" / "metafor_escalc.json").read_text())
    ids = [f"Aloe{2001 + i}" for i in range(len(ref["n"]))]
    q = np.array(ref["preds"]) - 1
    as_r = pd.DataFrame({"study_id": ids, "r": ref["pcor"], "n": ref["n"], "n_covariates": q})
    rows = import_effects(as_r, path=review / "studies", dry_run=True)
    assert set(rows["stat_type"]) == {"partial_r"} and set(rows["r_kind"]) == {"partial"}
    np.testing.assert_allclose(rows["yi"], ref["zpcor_yi"], rtol=1e-12)
    np.testing.assert_allclose(rows["vi"], ref["zpcor_vi"], rtol=1e-12)
    as_z = pd.DataFrame({"study_id": ids, "yi": ref["zpcor_yi"], "vi": ref["zpcor_vi"],
                         "n_covariates": q})
    rows = import_effects(as_z, path=review / "studies")
    assert list(rows["n"]) == ref["n"]
    np.testing.assert_allclose(rows["vi"], ref["zpcor_vi"], rtol=1e-12)


def test_review_template_runs_are_ours():
    """The pipeline.yml that `init` writes has the runs of this repository's pipeline.yml (same
    notebooks, same parameters), without the subset runs that only fit our data."""
    import yaml

    from alliance_meta.workflow.pipeline import load_config

    ours = load_config(ROOT / "pipeline.yml")
    tmpl = yaml.safe_load((ROOT / "alliance_meta" / "workflow" / "templates" / "pipeline.yml")
                          .read_text(encoding="utf-8"))
    mine = {r.name: r for r in ours.runs}
    names = []
    for entry in tmpl["runs"]:
        for tag, extra in (entry.get("matrix") or {"": {}}).items():
            name = f"{entry['name']}-{tag}" if tag else entry["name"]
            names.append(name)
            assert name in mine, f"template run {name} is not in pipeline.yml"
            assert ROOT / entry["notebook"] == mine[name].notebook
            assert {**entry.get("parameters", {}), **(extra or {})} == mine[name].parameters
    left_out = [r for r in ours.runs if r.name not in names]
    assert all("subset" in r.parameters for r in left_out), left_out
    assert {r.notebook for r in ours.runs} == {ROOT / e["notebook"] for e in tmpl["runs"]}


def test_every_command_takes_the_review_from_cwd_or_project(review, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from alliance_meta.data import studies_dir
    from alliance_meta.workflow.cli import app

    monkeypatch.delenv("ALLIANCE_META_PROJECT", raising=False)
    monkeypatch.delenv("ALLIANCE_META_STUDIES", raising=False)
    run = CliRunner().invoke
    # in a notebook of the review (as JupyterLab runs it), data_path = None means its studies
    monkeypatch.chdir(review / "notebooks")
    assert studies_dir() == review / "studies"
    # elsewhere, --project before or after the command names the review
    monkeypatch.chdir(tmp_path)
    res = run(app, ["import", str(FOREIGN), "--project", str(review), "--rename", "Author=study_id",
                    "--rename", "Year=year", "--rename", "r_xy=r", "--rename", "N=n"])
    assert res.exit_code == 0, res.output
    assert len(load_studies(review / "studies")) == 16
    res = run(app, ["--project", str(review), "export", "--format", "csv", "all.csv"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "all.csv")
    assert {"r", "yi", "vi", "weight_random_effects", "weight_three_level"} <= set(table.columns)
    # metafor's weights() of rma and rma.mv (tests/reference/own_review_molloy2014.json)
    np.testing.assert_allclose(table["weight_random_effects"], REF["weights_random_effects"],
                               rtol=TOL_ITERATIVE)
    np.testing.assert_allclose(table["weight_three_level"], REF["weights_three_level"],
                               rtol=TOL_ITERATIVE)
    res = run(app, ["validate", "--project", str(review)])
    assert res.exit_code == 0 and "0 error(s)" in res.output, res.output
    res = run(app, ["validate"])
    assert res.exit_code == 2 and "no review here" in res.output


def test_three_level_weights_as_metafor_on_nested_effects():
    from alliance_meta.data.export import _three_level_weights
    from alliance_meta.stats.rma_mv import three_level

    k = REF["konstantopoulos2011"]  # weights(rma.mv(..., random = ~ 1 | district/school))
    yi, vi, district = (np.asarray(k[c], dtype=float) for c in ("yi", "vi", "district"))
    fit = three_level(yi, vi, district)
    np.testing.assert_allclose([fit.sigma2_between, fit.sigma2_within], k["sigma2"],
                               rtol=TOL_ITERATIVE)
    w = _three_level_weights(vi, district, fit.sigma2_between, fit.sigma2_within)
    np.testing.assert_allclose(w, k["weights"], rtol=TOL_ITERATIVE)
