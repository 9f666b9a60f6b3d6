"""Shared helpers for the benchmarks: synthetic data, timing, one-shot R timing, the ratio table.

The data are SYNTHETIC (simulated correlations), clearly not a real literature: speed does not
depend on where the numbers come from.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_correlations(k: int, seed: int = 1, rho: float = 0.28, tau: float = 0.1):
    """k simulated correlations (true mean rho, between-study SD tau on the z scale)."""
    rng = np.random.default_rng(seed)
    n = rng.integers(20, 300, k)
    z = np.arctanh(rho) + rng.normal(0, tau, k) + rng.normal(0, 1 / np.sqrt(n - 3))
    return pd.DataFrame({"yi": z, "vi": 1.0 / (n - 3), "x": rng.normal(size=k),
                         "g": rng.choice(list("abc"), k)})


def best_time(fn: Callable[[], object], repeat: int = 5, number: int | None = None) -> float:
    """Best-of-`repeat` seconds per call (auto-chooses `number` to run >= 0.2 s per repeat)."""
    fn()  # warm-up
    if number is None:
        number, t = 1, 0.0
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            t = time.perf_counter() - t0
            if t >= 0.2 or number >= 10_000:
                break
            number *= 10
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t0) / number)
    return best


def have_r() -> bool:
    return shutil.which("Rscript") is not None and subprocess.run(
        ["Rscript", "-e", "library(metafor)"], capture_output=True
    ).returncode == 0


def time_in_r(data: dict[str, pd.DataFrame], script: str, timeout: int = 1800) -> dict | None:
    """Run an R script that times metafor on the given data frames (written as CSV and passed as
    variables of the same name) and prints a JSON object of seconds. None if R is absent."""
    if not have_r():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        loads = []
        for name, df in data.items():
            path = Path(tmp) / f"{name}.csv"
            df.to_csv(path, index=False)
            loads.append(f'{name} <- read.csv("{path}")')
        code = (
            "suppressPackageStartupMessages({library(metafor); library(jsonlite)})\n"
            "tm <- function(expr, reps = 1) { e <- substitute(expr); f <- parent.frame();"
            " best <- Inf; for (i in seq_len(reps)) { t0 <- proc.time()[['elapsed']];"
            " eval(e, f); best <- min(best, proc.time()[['elapsed']] - t0) }; best }\n"
            + "\n".join(loads) + "\n" + script
        )
        src = Path(tmp) / "bench.R"
        src.write_text(code)
        env = dict(os.environ)
        out = subprocess.run(["Rscript", str(src)], capture_output=True, text=True,
                             timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"R benchmark failed:\n{out.stderr[-2000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def print_table(title: str, rows: list[dict]) -> pd.DataFrame:
    """rows: task, target_s, ours_s, metafor_s, pymare_s (None = not run), note."""
    df = pd.DataFrame(rows)
    for peer in ("metafor", "pymare"):
        col = f"{peer}_s"
        if col in df:
            df[f"{peer}/ours"] = df[col] / df["ours_s"]
    df["meets_target"] = df["ours_s"] <= df["target_s"]

    def fmt(x):
        if x is None or (isinstance(x, float) and np.isnan(x)):
            return "-"
        if isinstance(x, (bool, np.bool_)):
            return "yes" if x else "NO"
        if isinstance(x, float):
            return f"{x * 1e3:.3g} ms" if x < 1 else f"{x:.3g} s"
        return str(x)

    shown = df.copy()
    for c in shown.columns:
        if c.endswith("/ours"):
            shown[c] = [("-" if pd.isna(v) else f"{v:,.0f}x") for v in df[c]]
        else:
            shown[c] = [fmt(v) for v in df[c]]
    print(f"\n## {title}\n")
    print(shown.to_markdown(index=False) if _has_tabulate() else shown.to_string(index=False))
    return df


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401

        return True
    except ImportError:
        return False
