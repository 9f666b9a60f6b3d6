"""A review at the size of a real synthesis (issue 16): 300 SIMULATED effects in 150 samples.

Not a test and not data: the effects are simulated (study ids ``Simab1991`` ..., every row's notes
say "simulated for the benchmark"), written under a temporary folder and imported into a fresh
review made by ``alliance-meta init``, exactly as a user would import a dataset coded elsewhere
(r + n shorthand with foreign column names mapped by ``--rename``, moderators from every
vocabulary of the codebook). Nothing is written to this repository.

It times, as a user sees them (each a fresh ``alliance-meta`` process):

- a cold forced run (``alliance-meta run --force``),
- a no-op run (nothing changed),
- the re-run after importing one more simulated study,

and reports the size of ``outputs/`` and the multiverse's estimable share (read from the run's
multiverse table), each against its target. Where the time of the forced run and of the re-run
goes is printed too: the pipeline records, when ``ALLIANCE_META_TIMINGS`` names a file, each
run's worker, start and end, kernel and papermill overhead, cell times, notebook clean-up and
HTML conversion (see :mod:`alliance_meta.workflow.pipeline`). A study added changes the data
every run reads, so the re-run executes every run again: its floor is the runs' summed work
divided by the cores, which the output states.

The machine may be shared (2 cores here, other jobs running): timings carry that caveat, the
load average is printed beside them.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

from alliance_meta.data import schema  # noqa: E402

CLI = Path(sys.executable).with_name("alliance-meta")
N_SAMPLES, N_EFFECTS = 150, 300
SIM_NOTE = "simulated for the benchmark"
# the foreign column names of the simulated file, mapped by --rename as a user would
RENAME = {"Study": "study_id", "Sample": "sample_id", "N": "n", "r_xy": "r", "Year": "year"}

# moderators of the codebook with a vocabulary: every value appears (cycled, then shuffled)
_STUDY_LEVEL = {"publication_type": schema.PUBLICATION_TYPES}  # one value per study
_SAMPLE_LEVEL = {  # one value per sample
    "modality": schema.MODALITIES, "format": schema.FORMATS, "delivery": schema.DELIVERIES,
    "population": schema.POPULATIONS, "design": schema.DESIGNS,
    "alliance_target": schema.ALLIANCE_TARGETS,
}
_EFFECT_LEVEL = {  # may differ between the effects of one sample
    "alliance_measure": schema.ALLIANCE_MEASURES, "alliance_rater": schema.ALLIANCE_RATERS,
    "alliance_timing": schema.TIMINGS, "outcome_type": schema.OUTCOME_TYPES,
    "outcome_rater": schema.OUTCOME_RATERS, "outcome_timing": schema.OUTCOME_TIMINGS,
    "prior_change_controlled": schema.YES_NO, "qa_temporal": schema.QA_LEVELS,
    "qa_alliance_valid": schema.QA_LEVELS, "qa_outcome_valid": schema.QA_LEVELS,
    "qa_adjusted": schema.QA_LEVELS, "qa_attrition": schema.QA_LEVELS,
}
_COUNTRIES = ("USA", "Germany", "Switzerland", "Canada", "Australia", "Netherlands", "Sweden")


def _cycled(values: tuple, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws holding every value at least once (size >= len(values))."""
    out = np.array([values[i % len(values)] for i in range(size)], dtype=object)
    rng.shuffle(out)
    return out


def _study_id(i: int, year: int) -> str:
    """``Sim`` + two letters numbering the study + its year (the codebook's author+year form)."""
    return f"Sim{chr(97 + i // 26 % 26)}{chr(97 + i % 26)}{year}"


def simulate(n_samples: int = N_SAMPLES, n_effects: int = N_EFFECTS, seed: int = 2026,
             first_study: int = 1) -> pd.DataFrame:
    """A simulated review: studies with one or two samples, each sample with n_effects/n_samples
    correlations (true mean r = .28, between-sample SD .10 and within-sample SD .05 on the z
    scale, Fisher-z sampling error); about a fifth of the effects partial r with 1-3 covariates.
    """
    rng = np.random.default_rng(seed)
    per = n_effects // n_samples
    # a fifth of the studies report two samples
    n_two = n_samples // 5
    study_of_sample = np.concatenate([np.repeat(np.arange(n_two), 2),
                                      np.arange(n_two, n_samples - n_two)]).astype(int)
    sample_rows = []
    seen: dict[int, int] = defaultdict(int)
    n_studies = int(study_of_sample.max()) + 1
    per_study = {c: _cycled(v, max(n_studies, len(v)), rng) for c, v in _STUDY_LEVEL.items()}
    levels = {c: _cycled(v, max(n_samples, len(v)), rng) for c, v in _SAMPLE_LEVEL.items()}
    for s, st in enumerate(study_of_sample):
        seen[st] += 1
        year = 1990 + (first_study + st) % 35
        sid = _study_id(first_study + st, year)
        sample_rows.append(dict(
            Study=sid, Sample=f"{sid}_s{seen[st]}", N=int(rng.integers(30, 400)), Year=year,
            u=rng.normal(0, 0.10), **{c: per_study[c][st] for c in _STUDY_LEVEL},
            **{c: levels[c][s] for c in _SAMPLE_LEVEL},
        ))
    rows = []
    eff = {c: _cycled(v, max(n_samples * per, len(v)), rng) for c, v in _EFFECT_LEVEL.items()}
    for s, smp in enumerate(sample_rows):
        for j in range(per):
            i = s * per + j
            n = smp["N"]
            z = np.arctanh(0.28) + smp["u"] + rng.normal(0, 0.05) + rng.normal(0, 1 / np.sqrt(n - 3))
            partial = rng.random() < 0.2
            rows.append(dict(
                Study=smp["Study"], Sample=smp["Sample"], Year=smp["Year"], N=n,
                r_xy=round(float(np.tanh(z)), 4),
                r_kind="partial" if partial else "zero-order",
                n_covariates=int(rng.integers(1, 4)) if partial else "",
                **{c: smp[c] for c in (*_STUDY_LEVEL, *_SAMPLE_LEVEL)},
                **{c: eff[c][i] for c in _EFFECT_LEVEL},
                country=_COUNTRIES[(first_study + s) % len(_COUNTRIES)],
                diagnosis="simulated", notes=SIM_NOTE,
            ))
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------


def _cli(args: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Seconds and output of one command; a failed run is reported (its time still counts),
    any other failure stops the benchmark."""
    t0 = time.perf_counter()
    out = subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if out.returncode != 0 and args[0] == "run":
        failed = [ln for ln in out.stdout.splitlines() if ln.startswith("FAILED")]
        print(f"\nWARNING: alliance-meta {' '.join(args)} had failures (its time counts):\n"
              + "\n".join(ln[:300] for ln in failed))
    elif out.returncode != 0:
        raise RuntimeError(f"alliance-meta {' '.join(args)} failed:\n{out.stdout[-3000:]}\n"
                           f"{out.stderr[-3000:]}")
    return dt, out.stdout + out.stderr


def _summary(log: str) -> str:
    """The pipeline's "ran N, skipped M (unchanged), failed F" line."""
    return next((ln for ln in log.splitlines() if ln.startswith("ran ")), "")


def _size_mb(folder: Path, skip: tuple[str, ...] = ()) -> float:
    """MB of the files under ``folder``, leaving out the subfolders named in ``skip``."""
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()
               and not any(part in skip for part in f.relative_to(folder).parts)) / 1e6


def _estimable_share(outputs: Path) -> tuple[float, int] | None:
    """Share of the multiverse's specifications that gave an estimate (status ok) and their
    number, from the run's table (impossible combinations are not specifications)."""
    t = outputs / "06_multiverse" / "tables" / "multiverse.csv.gz"
    if not t.exists():
        return None
    status = pd.read_csv(t, usecols=["status"])["status"]
    return float((status == "ok").mean()), len(status)


def _breakdown(path: Path, title: str, wall: float, t_start: float) -> None:
    """Print where a run's time went (records the pipeline wrote): per notebook run its kernel
    and papermill overhead (``kernel_s``: kernel start-up on a worker's first run, the reset
    between runs, papermill), cells, clean-up and HTML; per worker its busy time; and the time
    outside the runs (the command's start-up, hashing, the process pool, the site)."""
    if not path.exists():
        print(f"\n(no timing records for {title}: the pipeline did not write them)")
        return
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows, total = [], defaultdict(float)
    for r in sorted(recs, key=lambda r: -r.get("total_s", 0)):
        cells = r.get("cells_s", [])
        top = sorted(range(len(cells)), key=lambda i: -cells[i])[:3]
        rows.append(dict(run=r["name"], total_s=r.get("total_s"), kernel_s=r.get("kernel_s"),
                         cells_s=sum(cells), clean_s=r.get("clean_s"), html_s=r.get("html_s"),
                         slowest_cells=", ".join(f"#{i} {cells[i]:.1f}s" for i in top)))
        for k in ("kernel_s", "clean_s", "html_s", "total_s"):
            total[k] += r.get(k) or 0.0
        total["cells_s"] += sum(cells)
    print(f"\n## Where the time of {title} goes (per run, seconds of its worker; the runs "
          "overlap on the cores)\n")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print("\nsum over runs: " + ", ".join(f"{k} {v:.1f}" for k, v in total.items()))
    busy = defaultdict(float)
    for r in recs:
        busy[r.get("worker")] += r.get("total_s") or 0.0
    if all("started" in r for r in recs):
        first = min(r["started"] for r in recs) - t_start
        last = t_start + wall - max(r["ended"] for r in recs)
        print("per worker busy: " + ", ".join(f"{v:.1f} s" for v in busy.values())
              + f"; before the first run {first:.1f} s (command start-up, hashing, process "
              f"pool), after the last {last:.1f} s (manifest, site)")


def _import_times() -> float:
    code = "import alliance_meta, alliance_meta.viz, alliance_meta.workflow.workbench"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main() -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="alliance-meta-bench-") as tmp:
        tmp = Path(tmp)
        data = simulate()
        extra = simulate(n_samples=1, n_effects=2, seed=7, first_study=N_SAMPLES + 1)
        src, src_extra = tmp / "simulated.csv", tmp / "simulated_one_more.csv"
        data.to_csv(src, index=False, quoting=csv.QUOTE_MINIMAL)
        extra.to_csv(src_extra, index=False)
        review = tmp / "review"
        renames = [a for old, new in RENAME.items() for a in ("--rename", f"{old}={new}")]
        _cli(["init", str(review)], tmp)
        _cli(["import", str(src), *renames], review)
        timings = tmp / "timings.jsonl"
        env = {**os.environ, "ALLIANCE_META_TIMINGS": str(timings)}
        t_start = time.time()
        cold, log = _cli(["run", "--force"], review, env)
        _breakdown(timings, "the forced run", cold, t_start)
        noop, log_noop = _cli(["run"], review)
        _cli(["import", str(src_extra), *renames], review)
        timings.unlink(missing_ok=True)
        t_start = time.time()
        added, log_added = _cli(["run"], review, env)
        _breakdown(timings, "the re-run after one added study", added, t_start)
        added_work = sum(json.loads(ln).get("total_s", 0.0) for ln in
                         timings.read_text().splitlines() if ln.strip()) \
            if timings.exists() else 0.0
        reran, noop_note = _summary(log_added), _summary(log_noop)
        if not noop_note.startswith("ran 0"):
            noop_note += " (the package's source changed during the benchmark: a shared tree)"
        out = review / "outputs"
        # what a review commits: outputs/ without .cache/ (git-ignored: what runs keep for
        # the next run, such as the multiverse's row sets) and the runs' scratch folders
        size = _size_mb(out, skip=(".cache", ".tmp", ".scratch"))
        cache_size = _size_mb(out / ".cache") if (out / ".cache").exists() else 0.0
        share = _estimable_share(out)
        by_kind = defaultdict(float)
        for f in out.rglob("*"):
            if f.is_file() and ".cache" not in f.relative_to(out).parts:
                by_kind[f.suffix or f.name] += f.stat().st_size / 1e6
        imports = _import_times()
        tcp_warnings = log.count("without encryption") + log_added.count("without encryption")
    print(f"\nSimulated review: {len(data)} effects in {data['Sample'].nunique()} samples of "
          f"{data['Study'].nunique()} studies (+1 study of {len(extra)} effects). Load average "
          f"at start {load:.1f} on {os.cpu_count()} cores: timings are of a shared machine.")
    print(f"Python import of the package (fresh process): {imports:.2f} s; "
          f"'without encryption' warnings in the run output: {tcp_warnings}")
    print("outputs by file type (MB): " + ", ".join(
        f"{k} {v:.2f}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])[:8]))
    print_table("A review of 300 simulated effects (issue 16)", [
        dict(task="cold `alliance-meta run --force`", target_s=20.0, ours_s=cold, note=""),
        dict(task="no-op `alliance-meta run`", target_s=2.0, ours_s=noop, note=noop_note),
        dict(task="re-run after importing one study", target_s=10.0, ours_s=added, note=reran),
    ])
    if added_work:
        print(f"\nThe re-run after one added study executed every run again (all read the "
              f"data): their work sums to {added_work:.1f} s of worker time, at best "
              f"{added_work / (os.cpu_count() or 1):.1f} s on {os.cpu_count()} cores before "
              "any start-up.")
    print(f"\noutputs/ as committed: {size:.1f} MB (target <= 10 MB): "
          f"{'yes' if size <= 10 else 'NO'}; outputs/.cache/ (git-ignored, kept for the next "
          f"run): {cache_size:.1f} MB")
    if share is None:
        print("multiverse estimable share: no multiverse table found (target >= 50 %): NO")
    else:
        print(f"multiverse estimable share: {100 * share[0]:.1f} % of {share[1]:,} "
              f"specifications (target >= 50 %): {'yes' if share[0] >= 0.5 else 'NO'}")


if __name__ == "__main__":
    main()
