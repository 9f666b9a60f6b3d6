"""The pipeline: every notebook x parameter set in pipeline.yml, run by papermill.

- One review: pipeline.yml is the review's (found from the working directory, see
  :mod:`alliance_meta.workflow.project`); its ``studies`` folder is what every notebook reads
  (passed to the kernels as ``$ALLIANCE_META_STUDIES``, so a notebook's ``data_path = None``
  means this review's data, not the package's).
- Incremental: a run's content hash covers its notebook, its parameters, the files of the
  studies folder (and any extra ``data`` files) and the package's source; a run whose hash
  matches the manifest's is skipped (``force`` re-runs all).
- Nothing lost: a run executes into outputs/.tmp/ and is moved into place only on success; a
  failing run keeps its previous outputs and its previous manifest entry, the other runs finish,
  and the report says which failed (the command exits non-zero).
- Deterministic: executed notebooks are stripped of timestamps and temporary paths, tables and
  figures are written by deterministic writers, so a git diff of outputs/ shows what the data
  changed.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..stats.source import source_digest
from . import kernels

__all__ = ["Run", "PipelineReport", "load_config", "run_pipeline", "build_site"]


def build_site(cfg: Config) -> Path:
    """Build ``<output_dir>/site/`` (see :mod:`alliance_meta.workflow.site`; imported here
    when called, so that the pipeline module stays light for the worker processes)."""
    from .site import build_site as _build

    return _build(cfg)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
MANIFEST = "manifest.json"
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CACHE = ".cache"  # what runs keep for the next run (not committed)
CACHE_ENV = "ALLIANCE_META_CACHE"
DURATIONS = f"{CACHE}/durations.json"  # seconds of each run's last execution
# PNG for the site and the notebooks; PDF (vector, for a manuscript) and SVG on request:
# every format is drawn on every run (at 300 effects PDF added 1.3 MB and seconds per run)
DEFAULT_FORMATS = ["png"]
# A review's first run has no durations yet: the shipped notebooks' typical seconds (the
# benchmark's 300-effect review, bench_review.py) order it, so that the multiverse does not
# start last; any other notebook counts as longest (it starts first).
_TYPICAL_SECONDS = {"06_multiverse": 7.0, "05_sensitivity": 5.0, "01_dataset": 3.0,
                    "02_pooled": 2.5, "03_moderators": 2.5, "07_syntheses": 1.5,
                    "04_publication_bias": 1.0}
TIMINGS_ENV = "ALLIANCE_META_TIMINGS"  # a file to which each run appends where its time went
# Lines of a run's kernel and worker output that are not the user's concern, dropped from the
# progress output; everything else (papermill's "Passed unknown parameter", a library's
# warning, a crash) is passed on with the run's name.
_NOISE = (
    # ipykernel >= 7 warns on every local kernel: the pipeline's kernels listen on 127.0.0.1 only
    "Kernel is running over TCP without encryption",
    # jupyter_client interrupts every kernel (SIGINT) before asking it to shut down, and
    # ipykernel logs the interrupt it catches as an error although the run succeeded
    "KeyboardInterrupt caught in kernel",
    # papermill reads a notebook's parameters cell line by line to warn about unknown
    # parameters and gives up on a line with two "=" (a pandas query such as "x == 'CBT'"
    # in a default); the parameters are injected all the same
    "Unable to parse line",
)


@dataclass(frozen=True)
class Run:
    name: str
    notebook: Path
    parameters: dict = field(default_factory=dict)


@dataclass
class Config:
    root: Path
    output_dir: Path
    studies: Path
    data_files: list[Path]
    formats: list[str]
    runs: list[Run]


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read pipeline.yml (default: the one of the review containing the working directory) and
    expand its runs.

    ``studies`` (default ``studies``) is the data folder; every file directly in it counts for
    the re-run hash, as do the files listed under ``data``. A run entry may give ``parameters``
    (one run) or ``matrix`` (a list of parameter sets, one run each, named ``<name>-<key>``).
    """
    if path is None:
        from .project import find_review

        path = find_review().pipeline
    path = Path(path).resolve()  # the kernels run in the notebooks' folder: no relative paths
    if not path.exists():
        raise FileNotFoundError(f"pipeline config {path} not found")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML ({e})") from e
    root = path.parent
    out = root / cfg.get("output_dir", "outputs")
    studies = root / cfg.get("studies", "studies")
    # the whole studies folder counts (a screening log or a codebook change re-runs too);
    # subfolders such as studies/incoming/ are staging and do not
    data = sorted(f for f in studies.glob("*") if f.is_file() and not f.name.startswith("."))
    data += [f for f in (root / p for p in cfg.get("data", [])) if f not in data]
    formats = list(cfg.get("formats", DEFAULT_FORMATS))
    runs: list[Run] = []
    for i, entry in enumerate(cfg.get("runs", [])):
        for key in ("name", "notebook"):
            if key not in entry:
                raise ValueError(f"{path}: runs[{i}] has no '{key}'")
        nb = root / entry["notebook"]
        base = dict(entry.get("parameters", {}))
        if "matrix" in entry:
            for tag, params in entry["matrix"].items():
                runs.append(Run(f"{entry['name']}-{tag}", nb, {**base, **(params or {})}))
        else:
            runs.append(Run(entry["name"], nb, base))
    names = [r.name for r in runs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{path}: duplicate run names {sorted(dup)}")
    return Config(root=root, output_dir=out, studies=studies, data_files=data, formats=formats,
                  runs=runs)


def _package_fingerprint() -> str:
    return source_digest(PACKAGE_DIR)


def run_hash(run: Run, cfg: Config, package_fp: str) -> str:
    """Content hash of everything a run's outputs depend on."""
    h = hashlib.sha256()
    h.update(run.notebook.read_bytes())
    # where the work runs (a Dask scheduler) does not change the results
    params = {k: v for k, v in run.parameters.items() if k != "scheduler"}
    h.update(json.dumps(params, sort_keys=True).encode())
    h.update(json.dumps(cfg.formats).encode())
    for f in cfg.data_files:
        h.update((f.relative_to(cfg.root).as_posix() if f.is_relative_to(cfg.root) else f.name).encode())
        h.update(f.read_bytes() if f.exists() else b"<missing>")
    h.update(package_fp.encode())
    return h.hexdigest()


def _read_manifest(out: Path) -> dict:
    return _read_json(out / MANIFEST)


def _read_json(p: Path) -> dict:
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _clean_notebook(nb_path: Path, run: Run, cfg: Config, work: Path) -> None:
    """Remove what changes between identical runs: timestamps, durations, temporary paths."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    final = f"{cfg.output_dir.name}/{run.name}"
    for cell in nb.cells:
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell.source = cell.source.replace(str(work), final)
            cell["id"] = "injected-parameters"  # papermill gives it a random id
    pm = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "exception"):
        pm.pop(key, None)
    pm["input_path"] = run.notebook.relative_to(cfg.root).as_posix()
    pm["output_path"] = f"{cfg.output_dir.name}/{run.name}/notebook.ipynb"
    pm["parameters"] = {k: v for k, v in pm.get("parameters", {}).items() if k != "output_dir"}
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        # numbered 1, 2, ... as in a fresh kernel (a reused kernel's counter runs on)
        if cell.cell_type == "code" and cell.get("execution_count") is not None:
            count += 1
            cell.execution_count = count
            for o in cell.get("outputs", []):
                if o.get("output_type") == "execute_result":
                    o["execution_count"] = count
    nb.metadata.pop("widgets", None)
    # the stored notebook links the figures beside it (JupyterLab resolves the relative path)
    # instead of embedding a base64 copy of every PNG: at 300 effects those copies made half
    # of outputs/. Executed live, Outputs.figure still shows each figure inline.
    nbformat.write(_linked_figures(nb, work / "figures"), nb_path)


NOTEBOOK_CSS = "notebook.css"  # the lab template's stylesheet, once for every run's HTML
_HEAD_STYLE = re.compile(r'<style type="text/css">.*?</style>\s*', re.S)


def _linked_figures(nb, figures: Path):
    """A copy of ``nb`` whose PNG outputs that are byte-identical to a figure the run saved
    (workbench's Outputs.figure shows the saved file) point to that file (``figures/NAME``,
    relative to the run's folder) instead of embedding it: each figure is stored once."""
    import base64
    import copy

    saved = {hashlib.sha256(f.read_bytes()).hexdigest(): f.name
             for f in sorted(figures.glob("*.png"))} if figures.is_dir() else {}
    if not saved:
        return nb
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            data = o.get("data", {})
            if "image/png" not in data:
                continue
            raw = base64.b64decode("".join(data["image/png"]))
            name = saved.get(hashlib.sha256(raw).hexdigest())
            if name is None:
                continue
            width = o.get("metadata", {}).get("image/png", {}).get("width")
            size = f' width="{int(width)}"' if width else ""
            o["data"] = {"text/html": f'<img src="figures/{html.escape(name)}"{size} '
                                      f'alt="{html.escape(Path(name).stem)}">',
                         "text/plain": f"figures/{name}"}
            o["metadata"] = {}
    return nb


_EXPORTER = None  # this process's nbconvert HTMLExporter (see _to_html)


def _to_html(nb_path: Path, html_path: Path, css_path: Path | None = None) -> None:
    """The executed notebook as HTML (nbconvert's lab template), offline, with its figures
    linked from figures/ and, when ``css_path`` is given, the template's stylesheet written
    there once (about 260 kB that every run's page would otherwise repeat)."""
    import nbformat
    from nbconvert import HTMLExporter

    global _EXPORTER
    nb = _linked_figures(nbformat.read(nb_path, as_version=4), nb_path.parent / "figures")
    if _EXPORTER is None:  # one per worker: loading the lab template costs half a second
        _EXPORTER = HTMLExporter(template_name="lab")
        _EXPORTER.exclude_input_prompt = False
    body, _ = _EXPORTER.from_notebook_node(nb)
    # the lab template loads require.js and MathJax from a CDN; the site must work offline and
    # our notebooks use neither, so those script tags are dropped
    body = re.sub(r'<script[^>]+src="https?://[^"]*"[^>]*>\s*</script>', "", body)
    head_end = body.find("</head>")
    styles = _HEAD_STYLE.findall(body, 0, head_end) if css_path is not None else []
    if styles:
        css = "".join(re.sub(r"^<style[^>]*>|</style>\s*$", "", st) for st in styles)
        if not css_path.exists() or css_path.read_text(encoding="utf-8") != css:
            _write_atomic(css_path, css)
        first = body.index(styles[0])
        head = _HEAD_STYLE.sub("", body[first:head_end])
        # the page ends up in outputs/<run>/, the stylesheet in outputs/
        link = f'<link rel="stylesheet" href="../{html.escape(css_path.name)}">\n'
        body = body[:first] + link + head + body[head_end:]
    html_path.write_text(body, encoding="utf-8")


def _import_papermill():
    """papermill, imported once in the parent before its workers fork (they inherit it).

    Under papermill, nbformat imports jsonschema, whose optional IRI format checker imports
    ``rfc3987_syntax`` when it is installed (jupyterlab's jupyter-events pulls it in), and that
    compiles a grammar at import: a second, for a format that no notebook schema uses. The
    pipeline's processes skip it (jsonschema then has no IRI checker) unless it was imported
    already."""
    if "rfc3987_syntax" not in sys.modules:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # import -> ImportError
    import papermill

    return papermill


def _execute(run: Run, cfg: Config, digest: str, threads: int = 0) -> dict:
    """Execute one run into a temporary folder and move it into place on success (own process).

    ``threads``: BLAS/OpenMP threads of the run's kernel (0: the libraries' default), unless
    the user's environment sets them."""
    pm = _import_papermill()

    out = cfg.output_dir
    tmp_root = out / ".tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    work = tmp_root / f"{run.name}.{os.getpid()}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    params = {**run.parameters, "output_dir": str(work), "formats": cfg.formats}
    # the kernel inherits this worker's environment: data_path = None reads this review's data
    os.environ["ALLIANCE_META_PROJECT"] = str(cfg.root)
    os.environ["ALLIANCE_META_STUDIES"] = str(cfg.studies)
    # results a run may reuse on the next run (the multiverse's row sets; workbench.cache_file)
    os.environ[CACHE_ENV] = str(out / CACHE)
    if threads:
        for var in _THREAD_VARS:
            os.environ.setdefault(var, str(threads))
    nb_out = work / "notebook.ipynb"
    t0, started = time.perf_counter(), time.time()
    log = tmp_root / f"{run.name}.{os.getpid()}.log"
    try:
        # this worker's output goes to a file, and its kernel's to another, of which only the
        # lines that matter reach the user (see _NOISE)
        with _captured_output(log):
            # the worker's kernel, started by its first run and reset for each (see kernels)
            km = kernels.worker_kernel(run.notebook.parent, tmp_root / f"kernel.{os.getpid()}.log")
            pm.execute_notebook(
                str(run.notebook), str(nb_out), parameters=params, kernel_name="python3",
                progress_bar=False, cwd=str(run.notebook.parent), log_output=False, km=km,
                request_save_on_cell_execute=False,  # written once, at the end
            )
            t1 = time.perf_counter()
            cells = _cell_seconds(nb_out)
            _clean_notebook(nb_out, run, cfg, work)
            t2 = time.perf_counter()
            _to_html(nb_out, work / "notebook.html", out / NOTEBOOK_CSS)
        _record_timing(run.name, {"total_s": time.perf_counter() - t0, "cells_s": cells,
                                  "kernel_s": t1 - t0 - sum(cells), "clean_s": t2 - t1,
                                  "html_s": time.perf_counter() - t2, "worker": os.getpid(),
                                  "started": started, "ended": time.time()})
    except Exception as e:  # report, keep the previous outputs
        shutil.rmtree(work, ignore_errors=True)
        kernels.discard_kernel()  # its state is unknown: the next run starts a new one
        msg = _describe_failure(e)
        return {"name": run.name, "status": "failed", "error": msg,
                "log": _read_log(log, kernels.kernel_output()),
                "seconds": time.perf_counter() - t0}
    final = out / run.name
    old = tmp_root / f"{run.name}.old.{os.getpid()}"
    if final.exists():
        os.replace(final, old)
    os.replace(work, final)
    shutil.rmtree(old, ignore_errors=True)
    return {"name": run.name, "status": "ok", "hash": digest,
            "log": _read_log(log, kernels.kernel_output()),
            "seconds": time.perf_counter() - t0}


@contextmanager
def _captured_output(path: Path) -> Iterator[None]:
    """Send this process's file descriptors 1 and 2 (and so a kernel's, which inherits them)
    to ``path`` for the duration; only ever used inside a pipeline worker process."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _read_log(path: Path, extra: str = "") -> list[str]:
    """The captured lines (of the file, then ``extra``: the kernel's) that are the user's
    concern (blank lines and _NOISE dropped)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    finally:
        path.unlink(missing_ok=True)
    text += extra
    return [ln.rstrip() for ln in text.splitlines()
            if ln.strip() and not any(n in ln for n in _NOISE)]


def _cell_seconds(nb_path: Path) -> list[float]:
    """Each code cell's execution time as papermill recorded it (before the clean-up drops it)."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    return [float(c.metadata.get("papermill", {}).get("duration") or 0.0)
            for c in nb.cells if c.cell_type == "code"]


def _record_timing(name: str, rec: dict) -> None:
    """Append a run's timing to the file named by $ALLIANCE_META_TIMINGS (the benchmark's
    breakdown; timings never go into outputs/, which must not change between identical runs)."""
    path = os.environ.get(TIMINGS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, **rec}) + "\n")


def _describe_failure(e: Exception) -> str:
    ename = getattr(e, "ename", type(e).__name__)
    evalue = getattr(e, "evalue", str(e))
    source = getattr(e, "source", None)
    cell = getattr(e, "cell_index", None)
    where = f"cell {cell}" if cell is not None else "setup"
    text = f"{where}: {ename}: {evalue}"
    if source:
        text += "\n    " + "\n    ".join(str(source).splitlines()[:15])
    return text


def _say(text: str, bar) -> None:
    """A line for the user that leaves the progress bar whole."""
    if bar is not None:
        bar.write(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr)


@dataclass
class PipelineReport:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"ran {len(self.ran)}, skipped {len(self.skipped)} (unchanged), "
                 f"failed {len(self.failed)}"]
        for name, msg in self.failed.items():
            lines.append(f"FAILED {name}: {msg}")
        return "\n".join(lines)


def run_pipeline(
    config: str | os.PathLike | None = None,
    force: bool = False,
    jobs: int | None = None,
    only: list[str] | None = None,
    progress: bool = True,
    only_changed: bool = True,
    scheduler: str | None = None,
) -> PipelineReport:
    """Run every (changed) notebook x parameter set of the config; see the module docstring.

    ``only`` restricts to runs whose name starts with one of the given prefixes;
    ``only_changed=False`` is the same as ``force=True``; ``scheduler`` (a Dask scheduler
    address) is passed to the runs that declare a ``scheduler`` parameter.
    """
    cfg = load_config(config)
    if scheduler:
        cfg.runs = [Run(r.name, r.notebook, {**r.parameters, "scheduler": scheduler})
                    if "scheduler" in r.parameters else r for r in cfg.runs]
    force = force or not only_changed
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    fp = _package_fingerprint()
    if force:  # everything recomputed: no result kept by an earlier run is read
        for kept in (out / CACHE).glob("*"):
            if kept.is_file() and kept.name != Path(DURATIONS).name:
                kept.unlink()
    todo: list[tuple[Run, str]] = []
    report = PipelineReport()
    for run in cfg.runs:
        if only and not any(run.name.startswith(p) for p in only):
            continue
        if not run.notebook.exists():
            report.failed[run.name] = f"notebook {run.notebook} not found"
            continue
        digest = run_hash(run, cfg, fp)
        if not force and manifest.get(run.name, {}).get("hash") == digest and (out / run.name).exists():
            report.skipped.append(run.name)
        else:
            todo.append((run, digest))
    if todo:
        # longest first (by each run's last duration; new runs first, in config order), so
        # that a long run does not start last while the other cores idle
        durations = _read_json(out / DURATIONS)
        todo.sort(key=lambda rd: -durations.get(rd[0].name, _TYPICAL_SECONDS.get(
            rd[0].notebook.stem, float("inf"))))
        jobs = jobs or max(1, min(os.cpu_count() or 1, len(todo)))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="alliance-meta run", unit="run", file=sys.stderr)
        _import_papermill()  # once here rather than in every worker (fork inherits it)
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            # parallel runs share the cores: a kernel's BLAS spinning up one thread per core
            # for the small matrices of a meta-analysis was 3x slower (leave-one-sample-out
            # of 300 effects, L-BFGS-B's BLAS calls) than one thread per kernel
            threads = max(1, (os.cpu_count() or 1) // jobs)
            futures = {pool.submit(_execute, r, cfg, d, threads): r for r, d in todo}
            for fut in as_completed(futures):
                run = futures[fut]
                try:
                    res = fut.result()
                except Exception as e:  # the worker itself died
                    res = {"name": run.name, "status": "failed", "error": _describe_failure(e)}
                if "seconds" in res:
                    durations[run.name] = round(res["seconds"], 2)
                for line in res.get("log", []):
                    _say(f"{run.name}: {line}", bar)
                if res["status"] == "ok":
                    report.ran.append(run.name)
                    manifest[run.name] = {
                        "hash": res["hash"],
                        "notebook": run.notebook.relative_to(cfg.root).as_posix(),
                        "parameters": run.parameters,
                    }
                else:
                    report.failed[run.name] = res["error"]
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        (out / DURATIONS).parent.mkdir(exist_ok=True)
        _write_atomic(out / DURATIONS, json.dumps(durations, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(out / ".tmp", ignore_errors=True)
    # forget runs that are no longer configured (their folders stay until removed by hand)
    names = {r.name for r in cfg.runs}
    manifest = {k: v for k, v in manifest.items() if k in names}
    _write_atomic(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    report.ran.sort()
    report.skipped.sort()
    build_site(cfg)
    return report


# ---------------------------------------------------------------------------------------------
# the static site
