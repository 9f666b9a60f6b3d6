"""Speed of the pipeline (issue #4): cold run of every run, re-run with nothing changed, and
re-run after adding one study. Targets on this machine: < 60 s, < 3 s, < 60 s.

Works on a temporary copy of the project (notebooks, pipeline.yml, studies/). "Adding one study"
re-adds the last real study of studies/effects.csv, which the copy starts without, so no row is
invented. Times include starting the command, as a user would see them.
"""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLI = Path(sys.executable).with_name("alliance-meta")


def _timed(args: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return dt


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(tmp)
        shutil.copytree(ROOT / "notebooks", proj / "notebooks",
                        ignore=shutil.ignore_patterns("*.py", ".ipynb_checkpoints"))
        shutil.copytree(ROOT / "studies", proj / "studies")
        shutil.copy(ROOT / "pipeline.yml", proj / "pipeline.yml")
        effects = proj / "studies" / "effects.csv"
        text = effects.read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines(keepends=True)))
        last = rows[-1]["study_id"]
        keep = [r for r in rows if r["study_id"] != last]
        held = [r for r in rows if r["study_id"] == last]
        header = list(rows[0].keys())

        def write(rs):
            with effects.open("w", encoding="utf-8", newline="") as f:
                w = csv.DictWriter(f, header, lineterminator="\n")
                w.writeheader()
                w.writerows(rs)

        write(keep)
        cfg = ["--config", str(proj / "pipeline.yml")]
        cold = _timed([str(CLI), "run", "--force", *cfg], proj)
        warm = _timed([str(CLI), "run", *cfg], proj)
        write(keep + held)
        added = _timed([str(CLI), "run", *cfg], proj)
    print_table("Pipeline (issue #4)", [
        dict(task="cold `alliance-meta run` (all runs)", target_s=60.0, ours_s=cold, note=""),
        dict(task="re-run, nothing changed", target_s=3.0, ours_s=warm, note=""),
        dict(task=f"re-run after adding one study ({last})", target_s=60.0, ours_s=added,
             note="every run depends on the data"),
    ])


if __name__ == "__main__":
    main()
