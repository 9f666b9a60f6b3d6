"""Benchmark: a multiverse of 10,368 specifications over k = 300 SYNTHETIC correlations, locally
and on a Dask LocalCluster with 1 and 2 workers.

Run:  .venv/bin/python benchmarks/bench_multiverse.py [--k 300] [--repeat 2] [--no-dask]

The data are simulated (benchmarks/_common.synthetic_correlations: true r = .28, tau = .1 on the
z scale), grouped into about 150 samples (k * 2/3 labels drawn at random), with random codebook columns for the filters.
The grid is the default grid's model choices (4 tau2 estimators x 2 tests x 4 dependency
handlings x 3 bias adjustments = 96) crossed with 108 inclusion row sets (minimum n 0/50/100 x
rater all/client/therapist/observer x timing all/early/late x modality all/CBT/psychodynamic).
Times are the best of ``--repeat`` wall-clock runs (time.perf_counter), Dask cluster start-up not
included (data scatter included). Issue 5's target: 10,000 specifications in under 30 s. This is a
benchmark, not a test: nothing fails when the target is missed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_time, print_table, synthetic_correlations  # noqa: E402

from alliance_meta.stats.multiverse import multiverse  # noqa: E402

TARGET_S = 30.0

GRID = {
    "method": ["DL", "REML", "PM", "SJ"],
    "test": ["z", "knha"],
    "dependency": ["three-level", "aggregate", "robust", "first"],
    "min_n": [0, 50, 100],
    "rater": ["all", "client", "therapist", "observer"],
    "timing": ["all", "early", "late"],
    "modality": ["all", "CBT", "psychodynamic"],
    "bias": ["none", "trim-and-fill", "PET-PEESE"],
}


def synthetic_studies(k: int, seed: int = 1):
    """SYNTHETIC effects with the codebook's columns (not a real literature)."""
    d = synthetic_correlations(k, seed=seed)
    rng = np.random.default_rng(seed + 1)
    n_samples = max(2, 2 * k // 3)
    sample = np.sort(rng.integers(0, n_samples, k))

    def pick(options):
        return np.asarray(options, dtype=object)[rng.integers(0, len(options), n_samples)][sample]

    d["sample_id"] = [f"s{j}" for j in sample]
    d["n"] = np.rint(1.0 / d["vi"] + 3).astype(int)
    d["r_kind"] = pick(["zero-order", "partial"])
    d["alliance_rater"] = pick(["client", "therapist", "observer"])
    d["alliance_timing"] = pick(["early", "mid", "late"])
    d["publication_type"] = pick(["journal", "dissertation"])
    d["modality"] = pick(["CBT", "psychodynamic", "humanistic"])
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask LocalCluster runs")
    a = ap.parse_args()
    data = synthetic_studies(a.k, a.seed)
    res = multiverse(data, GRID)
    n_specs = len(res.table)
    n_ok = int((res.table["status"] == "ok").sum())
    print(f"SYNTHETIC data: k = {a.k} effects in {data['sample_id'].nunique()} samples; "
          f"{n_specs:,} specifications ({n_ok:,} estimable) in {res.n_rowsets} row sets, "
          f"{res.n_chunks} chunks")
    rows = []
    t_local = best_time(lambda: multiverse(data, GRID), repeat=a.repeat, number=1)
    rows.append({"task": f"{n_specs:,} specifications, local (1 process)", "target_s": TARGET_S,
                 "ours_s": t_local, "note": f"{n_specs / t_local:,.0f} specs/s"})
    if not a.no_dask:
        from dask.distributed import Client, LocalCluster

        times = {}
        for workers in (1, 2):
            with LocalCluster(n_workers=workers, processes=True, threads_per_worker=1,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                t = best_time(lambda c=client: multiverse(data, GRID, scheduler=c),
                              repeat=a.repeat, number=1)
                same = multiverse(data, GRID, scheduler=client).table.equals(res.table)
            times[workers] = t
            note = f"table identical to local: {same}"
            if workers == 2:
                note += f"; speed-up over 1 worker {times[1] / times[2]:.2f}x"
            rows.append({"task": f"{n_specs:,} specifications, Dask, {workers} worker(s)",
                         "target_s": TARGET_S, "ours_s": t, "note": note})
    print_table("Multiverse (issue 5)", rows)
    print("\nThe machine has 2 cores shared with other jobs: the speed-up is bounded by 2.")


if __name__ == "__main__":
    main()
