"""Benchmark: publication-bias and sensitivity analyses, alliance_meta vs metafor, k = 300.

Run:  .venv/bin/python benchmarks/bench_bias.py [--k 300] [--repeat 5] [--seed 1]

Both sides analyse the same synthetic data (Fisher's z of correlations around r = .25 with
tau = .1, n from 20 to 500, written to a temporary CSV). Ours: the best of ``--repeat`` wall-clock
runs (time.perf_counter) of each call on a fitted REML model. metafor: one Rscript subprocess
times its own calls with system.time (best of the same number of runs for the fast ones, one
run for leave1out and influence, which take seconds to minutes) so R's start-up is not counted.
If Rscript is not on the PATH, only our timings are printed, with a note saying so.

Issue 6 targets at k = 300: leave-one-out < 50 ms, influence < 100 ms, trim-and-fill < 20 ms,
3PSM < 50 ms. This is a benchmark, not a test: nothing fails when a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time  # noqa: E402

import alliance_meta as am  # noqa: E402
from alliance_meta.stats.bias import (  # noqa: E402
    egger_test,
    pet_peese,
    rank_test,
    selection_model,
    trim_and_fill,
)
from alliance_meta.stats.influence import baujat, cumulative, influence, leave_one_out  # noqa: E402

TARGETS_MS = {"leave-one-out": 50, "influence": 100, "trim-and-fill": 20, "3PSM": 50}


def synthetic(k: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = rng.integers(20, 500, size=k)
    theta = rng.normal(np.arctanh(0.25), 0.1, size=k)
    vi = 1.0 / (n - 3)
    yi = rng.normal(theta, np.sqrt(vi))
    return pd.DataFrame({"yi": yi, "vi": vi, "year": rng.integers(1980, 2024, size=k)})


def best_ms(fn, repeat: int) -> float:
    """Best of ``repeat`` single calls after a warm-up, in ms (the shared timer)."""
    return 1e3 * best_time(fn, repeat=repeat, number=1)


R_SCRIPT = textwrap.dedent("""
    suppressPackageStartupMessages(library(metafor))
    args <- commandArgs(trailingOnly = TRUE)
    d <- read.csv(args[1]); rep <- as.integer(args[2])
    pdf(NULL)  # baujat draws a plot
    m <- rma(yi, vi, data = d, method = "REML")
    tm <- function(f, n) min(replicate(n, system.time(f())[["elapsed"]]))
    out <- c(
      "random effects (REML)" = tm(function() rma(yi, vi, data = d, method = "REML"), rep),
      "Egger test" = tm(function() regtest(m), rep),
      "rank test" = tm(function() ranktest(m), rep),
      "trim-and-fill" = tm(function() trimfill(m), rep),
      "PET-PEESE" = tm(function() {
        regtest(d$yi, d$vi, model = "lm", predictor = "sei")
        regtest(d$yi, d$vi, model = "lm", predictor = "vi")}, rep),
      "3PSM" = tm(function() selmodel(m, type = "stepfun", steps = 0.025), rep),
      "leave-one-out" = tm(function() leave1out(m), 1),
      "influence" = tm(function() influence(m), 1),
      "Baujat" = tm(function() baujat(m), 1),
      "cumulative" = tm(function() cumul(m, order = d$year), 1))
    cat(paste(names(out), format(1000 * out, digits = 6), sep = "\\t"), sep = "\\n")
""")


def metafor_times(csv: Path, repeat: int) -> dict[str, float] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as f:
        f.write(R_SCRIPT)
        script = f.name
    try:
        proc = subprocess.run(["Rscript", script, str(csv), str(repeat)], capture_output=True,
                              text=True, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"the metafor timing script failed:\n{proc.stderr}")
        out = proc.stdout
    finally:
        Path(script).unlink(missing_ok=True)
    res = {}
    for line in out.strip().splitlines():
        name, ms = line.split("\t")
        res[name] = float(ms)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-r", action="store_true", help="skip metafor")
    a = ap.parse_args()
    d = synthetic(a.k, a.seed)
    res = am.random_effects(d.yi, d.vi, method="REML")
    ours = {
        "random effects (REML)": best_ms(lambda: am.random_effects(d.yi, d.vi), a.repeat),
        "Egger test": best_ms(lambda: egger_test(res), a.repeat),
        "rank test": best_ms(lambda: rank_test(res), a.repeat),
        "trim-and-fill": best_ms(lambda: trim_and_fill(res), a.repeat),
        "PET-PEESE": best_ms(lambda: pet_peese(d.yi, d.vi), a.repeat),
        "3PSM": best_ms(lambda: selection_model(res, steps=(0.025,)), a.repeat),
        "leave-one-out": best_ms(lambda: leave_one_out(res), a.repeat),
        "influence": best_ms(lambda: influence(res), a.repeat),
        "Baujat": best_ms(lambda: baujat(res), a.repeat),
        "cumulative": best_ms(lambda: cumulative(res, order=d.year), a.repeat),
    }
    theirs = None
    note = ""
    if a.no_r:
        note = "metafor skipped (--no-r)."
    else:
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "bench.csv"
            d.to_csv(csv, index=False)
            theirs = metafor_times(csv, a.repeat)
        if theirs is None:
            note = "metafor skipped: Rscript is not on the PATH."
    rows = []
    for name, ms in ours.items():
        row = {"analysis": name, "alliance_meta_ms": round(ms, 2)}
        if theirs is not None:
            row["metafor_ms"] = round(theirs.get(name, float("nan")), 1)
            row["speed-up"] = round(row["metafor_ms"] / ms, 1)
        tgt = TARGETS_MS.get(name)
        row["target_ms"] = tgt if tgt else ""
        row["meets_target"] = ("yes" if ms < tgt else "NO") if tgt else ""
        rows.append(row)
    print(f"k = {a.k}, best of {a.repeat} runs (metafor leave1out/influence/baujat/cumul: 1 run)")
    print(pd.DataFrame(rows).to_string(index=False))
    if note:
        print(note)


if __name__ == "__main__":
    main()
