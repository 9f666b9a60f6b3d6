"""The pipeline: incremental skipping, nothing lost on failure, determinism, the site, and that
the committed outputs/ tables are what the code produces now."""

from __future__ import annotations

import filecmp
import json
import shutil
import textwrap
from pathlib import Path

import nbformat
import pytest

from alliance_meta.workflow.pipeline import _read_log, load_config, run_pipeline

ROOT = Path(__file__).resolve().parents[1]  # this repository is one review (ours)

NB_OK = """\
import pandas as pd
from pathlib import Path
Path(output_dir, "tables").mkdir(parents=True, exist_ok=True)
pd.DataFrame({"x": [value]}).to_csv(Path(output_dir, "tables", "t.csv"), index=False)
"""


def _notebook(path: Path, body: str, value: int = 1) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(f"value = {value}\noutput_dir = 'x'\nformats = []")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A small project: one data file, two notebooks, three runs (synthetic content)."""
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "effects.csv").write_text("a\n1\n")
    (tmp_path / "nb").mkdir()
    _notebook(tmp_path / "nb" / "ok.ipynb", NB_OK)
    _notebook(tmp_path / "nb" / "other.ipynb", NB_OK)
    (tmp_path / "pipeline.yml").write_text(textwrap.dedent("""\
        output_dir: out
        data: [studies/effects.csv]
        formats: [svg]
        runs:
          - name: ok
            notebook: nb/ok.ipynb
            matrix:
              one: {value: 1}
              two: {value: 2}
          - name: other
            notebook: nb/other.ipynb
        """))
    return tmp_path


def test_config_expands_matrix(project):
    cfg = load_config(project / "pipeline.yml")
    assert [r.name for r in cfg.runs] == ["ok-one", "ok-two", "other"]
    assert cfg.runs[1].parameters == {"value": 2}


def test_incremental_skip_and_force(project):
    cfg = project / "pipeline.yml"
    rep = run_pipeline(cfg, progress=False, jobs=2)
    assert rep.ok and rep.ran == ["ok-one", "ok-two", "other"]
    assert (project / "out" / "ok-two" / "tables" / "t.csv").read_text() == "x\n2\n"
    assert (project / "out" / "ok-one" / "notebook.html").exists()
    rep = run_pipeline(cfg, progress=False)
    assert rep.ran == [] and rep.skipped == ["ok-one", "ok-two", "other"]
    # a data change re-runs everything that depends on the data
    (project / "studies" / "effects.csv").write_text("a\n1\n2\n")
    assert run_pipeline(cfg, progress=False).ran == ["ok-one", "ok-two", "other"]
    # a notebook change re-runs only that notebook's runs
    _notebook(project / "nb" / "other.ipynb", NB_OK + "\n# changed\n")
    assert run_pipeline(cfg, progress=False).ran == ["other"]
    assert run_pipeline(cfg, progress=False, force=True).ran == ["ok-one", "ok-two", "other"]
    # each run's last duration is kept (outside the outputs) to start the longest runs first
    assert set(json.loads((project / "out" / ".cache" / "durations.json").read_text())) == {
        "ok-one", "ok-two", "other"}


def test_failure_keeps_previous_outputs_and_reports_cell(project):
    cfg = project / "pipeline.yml"
    assert run_pipeline(cfg, progress=False).ok
    good = (project / "out" / "other" / "tables" / "t.csv").read_bytes()
    _notebook(project / "nb" / "other.ipynb", "raise RuntimeError('boom in cell')")
    (project / "studies" / "effects.csv").write_text("a\n3\n")  # all runs are due
    rep = run_pipeline(cfg, progress=False)
    assert not rep.ok
    assert set(rep.failed) == {"other"}
    assert "RuntimeError" in rep.failed["other"] and "boom in cell" in rep.failed["other"]
    assert sorted(rep.ran) == ["ok-one", "ok-two"]  # the other runs finished
    assert (project / "out" / "other" / "tables" / "t.csv").read_bytes() == good
    assert not (project / "out" / ".tmp").exists()
    # the failed run is retried next time (its manifest entry is the old one)
    assert "other" in run_pipeline(cfg, progress=False).failed


def test_progress_is_quiet(project, capfd):
    """Issue 16: ipykernel's "over TCP without encryption" warning and the "KeyboardInterrupt
    caught in kernel" line of a kernel shut down after a successful run do not reach the
    progress output; one progress bar; a failing cell is still shown."""
    cfg = project / "pipeline.yml"
    _notebook(project / "nb" / "other.ipynb", "raise RuntimeError('boom in cell')")
    rep = run_pipeline(cfg, progress=True, jobs=2)
    err = capfd.readouterr().err
    assert "without encryption" not in err and "KeyboardInterrupt" not in err
    assert "alliance-meta run" in err  # the progress bar
    assert "boom in cell" in rep.failed["other"] and "raise RuntimeError" in rep.failed["other"]


def test_captured_output_keeps_what_matters(tmp_path):
    """Of a run's captured output only the known noise is dropped: a library's warning and a
    papermill warning about a parameter the notebook does not have are passed on."""
    log = tmp_path / "run.log"
    log.write_text(
        "[IPKernelApp] WARNING | Kernel is running over TCP without encryption. All "
        "communication (including code and outputs) is sent in plain text.\n"
        "[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.\n\n"
        "Passed unknown parameter: colour\n"
        "Unable to parse line 6 'ours = {\"CBT\": \"modality == 'CBT'\"}'.\n"
        "/x/y.py:3: RuntimeWarning: invalid value encountered in divide\n")
    assert _read_log(log) == ["Passed unknown parameter: colour",
                              "/x/y.py:3: RuntimeWarning: invalid value encountered in divide"]
    assert not log.exists()


NB_FIGURE = """\
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from pathlib import Path
from IPython.display import Image, display
Path(output_dir, "figures").mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(2, 1))
ax.plot([0, value])
fig.savefig(Path(output_dir, "figures", "f.png"), dpi=50)
display(Image(filename=str(Path(output_dir, "figures", "f.png")), width=300))
"""


def test_html_links_saved_figures_and_one_stylesheet(project):
    """Issue 16: a figure the run saved and shows is linked from the stored notebook and its
    HTML, not embedded again; the template's stylesheet is written once beside the runs."""
    _notebook(project / "nb" / "ok.ipynb", NB_FIGURE)
    assert run_pipeline(project / "pipeline.yml", progress=False).ok
    out = project / "out"
    page = (out / "ok-one" / "notebook.html").read_text()
    assert 'src="figures/f.png"' in page and "data:image/png" not in page
    assert '<link rel="stylesheet" href="../notebook.css">' in page
    assert "<style type=\"text/css\">" not in page.split("</head>")[0]
    assert (out / "notebook.css").stat().st_size > 10_000
    # the stored notebook links it too (JupyterLab resolves figures/ beside the notebook)
    stored = (out / "ok-one" / "notebook.ipynb").read_text()
    assert "image/png" not in stored and 'src=\\"figures/f.png\\"' in stored


NB_THREADS = """\
import os
from pathlib import Path
Path(output_dir, "tables").mkdir(parents=True, exist_ok=True)
Path(output_dir, "tables", "t.csv").write_text(os.environ.get("OPENBLAS_NUM_THREADS", "unset"))
"""


def test_parallel_kernels_share_the_cores(project, monkeypatch):
    """Each of the parallel runs' kernels gets cores // jobs BLAS threads (oversubscribed BLAS
    made the three-level refits 3x slower); a value the user set wins."""
    import os

    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    _notebook(project / "nb" / "ok.ipynb", NB_THREADS)
    assert run_pipeline(project / "pipeline.yml", progress=False, jobs=2, only=["ok"]).ok
    expected = str(max(1, (os.cpu_count() or 1) // 2))
    assert (project / "out" / "ok-one" / "tables" / "t.csv").read_text() == expected
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    assert run_pipeline(project / "pipeline.yml", progress=False, jobs=2, force=True,
                        only=["ok"]).ok
    assert (project / "out" / "ok-two" / "tables" / "t.csv").read_text() == "3"


def test_outputs_are_deterministic(project, tmp_path):
    cfg = project / "pipeline.yml"
    run_pipeline(cfg, progress=False)
    first = tmp_path / "first"
    shutil.copytree(project / "out", first)
    run_pipeline(cfg, progress=False, force=True)
    # .cache/ holds run durations for scheduling: not an output, not committed
    cmp = filecmp.dircmp(first, project / "out", ignore=[".cache"])

    def diffs(c):
        out = list(c.diff_files) + c.left_only + c.right_only
        for sub in c.subdirs.values():
            out += diffs(sub)
        return out

    assert diffs(cmp) == []


def test_site_links_every_notebook(project):
    run_pipeline(project / "pipeline.yml", progress=False)
    index = (project / "out" / "site" / "index.html").read_text()
    for name in ("ok-one", "ok-two", "other"):
        assert f'href="../{name}/notebook.html"' in index
    html = (project / "out" / "ok-one" / "notebook.html").read_text()
    import re

    # offline: no script loaded from a CDN (nbconvert's lazy mermaid import only fires for
    # mermaid diagrams, which our notebooks do not have)
    assert not re.search(r'<script[^>]*src="https?://', html)


def test_committed_tables_match_a_fresh_run(tmp_path):
    """CI guard (issue #4): the tables in outputs/ are what the code and data produce now.
    Re-runs the real pipeline into a temporary folder and compares every CSV byte for byte."""
    cfg_text = (ROOT / "pipeline.yml").read_text().replace("output_dir: outputs",
                                                          f"output_dir: {tmp_path / 'fresh'}")
    cfg = ROOT / f".pipeline-test-{tmp_path.name}.yml"
    cfg.write_text(cfg_text)
    try:
        rep = run_pipeline(cfg, progress=False, force=True)
    finally:
        cfg.unlink()
    assert rep.ok, str(rep)
    committed = sorted((ROOT / "outputs").glob("*/tables/*.csv*"))
    fresh = sorted((tmp_path / "fresh").glob("*/tables/*.csv*"))
    assert [p.relative_to(ROOT / "outputs") for p in committed] == \
        [p.relative_to(tmp_path / "fresh") for p in fresh], "outputs/ lists different tables"
    stale = [str(c.relative_to(ROOT)) for c, f in zip(committed, fresh, strict=True)
             if c.read_bytes() != f.read_bytes()]
    assert not stale, f"committed tables differ from a fresh run (run `make run`): {stale}"


NB_SHARED = """\
import os
from pathlib import Path
import matplotlib
Path(output_dir, "tables").mkdir(parents=True, exist_ok=True)
seen = "leaked" if "marker" in dir() else "clean"
marker = value
size = matplotlib.rcParams["font.size"]
matplotlib.rcParams["font.size"] = 3.0
Path(output_dir, "tables", "t.csv").write_text(f"{seen} {size} {os.getpid()} {os.getcwd()}")
"""


def test_runs_share_a_kernel_but_not_its_state(project):
    """Issue 16: a worker's runs share one kernel (kernel start-up and imports were a third of
    a forced run), each starting from a fresh kernel's state: no name of the previous notebook,
    matplotlib's start-up rcParams, the notebook's folder as working directory."""
    _notebook(project / "nb" / "ok.ipynb", NB_SHARED)
    _notebook(project / "nb" / "other.ipynb", NB_SHARED)
    assert run_pipeline(project / "pipeline.yml", progress=False, jobs=1).ok
    seen = [(project / "out" / r / "tables" / "t.csv").read_text().split()
            for r in ("ok-one", "ok-two", "other")]
    assert [s[0] for s in seen] == ["clean"] * 3
    assert len({s[1] for s in seen}) == 1 and seen[0][1] != "3.0"
    assert len({s[2] for s in seen}) == 1  # one kernel process
    assert {s[3] for s in seen} == {str(project / "nb")}
    # numbered as in a fresh kernel
    nb = nbformat.read(project / "out" / "other" / "notebook.ipynb", as_version=4)
    assert [c.execution_count for c in nb.cells] == [1, 2, 3]


NB_CACHE = """\
import os
from pathlib import Path
Path(output_dir, "tables").mkdir(parents=True, exist_ok=True)
kept = Path(os.environ["ALLIANCE_META_CACHE"], "kept.npz")
state = "seen" if kept.exists() else "fresh"
kept.parent.mkdir(parents=True, exist_ok=True)
kept.write_text("x")
Path(output_dir, "tables", "t.csv").write_text(f"{state} {os.environ['ALLIANCE_META_CACHE']}")
"""


def test_runs_keep_a_cache_between_runs_that_force_clears(project):
    """Issue 16: runs get outputs/.cache (the multiverse keeps its row sets there), which
    survives a re-run and is emptied by --force (the durations that order the runs stay)."""
    _notebook(project / "nb" / "other.ipynb", NB_CACHE)
    cfg = project / "pipeline.yml"
    table = project / "out" / "other" / "tables" / "t.csv"
    assert run_pipeline(cfg, progress=False, only=["other"]).ok
    assert table.read_text() == f"fresh {project / 'out' / '.cache'}"
    (project / "studies" / "effects.csv").write_text("a\n5\n")
    assert run_pipeline(cfg, progress=False, only=["other"]).ok
    assert table.read_text().startswith("seen ")
    assert run_pipeline(cfg, progress=False, only=["other"], force=True).ok
    assert table.read_text().startswith("fresh ")
    assert (project / "out" / ".cache" / "durations.json").exists()
