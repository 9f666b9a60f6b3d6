"""The living-review memory of the site: build information and "what changed".

:func:`build_info` gives the package version and the commit and date of the last commit that
changed the data (never the wall clock, so the site is deterministic). ``outputs/site/
history.json`` keeps one headline per data state (a hash of the analysed files, effects and
bibliography); :func:`changes_html` shows how the headline moved with the last data change.
A site built for the first time seeds the history from the headline committed to git.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .apa import fmt_ci, fmt_int, fmt_r, fmt_var
from .report import HEADLINE_FILE

__all__ = ["HISTORY", "BuildInfo", "build_info", "changes_html"]

HISTORY = "history.json"


def _write(path: Path, text: str) -> None:
    """Write only when the content changed (no-op builds touch nothing), atomically."""
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@dataclass(frozen=True)
class BuildInfo:
    version: str
    commit: str
    date: str
    dirty: bool
    data_hash: str


def _studies(cfg) -> Path:
    return Path(getattr(cfg, "studies", None) or cfg.root / "studies")


def _analysed_files(cfg) -> list[Path]:
    """The files the pooled numbers depend on: the effects and their bibliography (a change
    of the codebook or of the screening log is not a new data state of the headline)."""
    studies = _studies(cfg)
    return [studies / "effects.csv", studies / "references.bib"]


def build_info(cfg) -> BuildInfo:
    """Package version; commit and date of the last commit that changed the data (not the wall
    clock, so a rebuild of unchanged data is byte-identical); whether the data differ from that
    commit; and a hash of the analysed files (effects and bibliography)."""
    from .. import __version__

    files = [str(f) for f in cfg.data_files if f.exists()]
    log = _git(cfg.root, "log", "-1", "--format=%h %cs", "--", *files) if files else ""
    commit, _, date = log.partition(" ")
    dirty = bool(_git(cfg.root, "status", "--porcelain", "--", *files)) if files else False
    h = hashlib.sha256()
    for f in _analysed_files(cfg):
        h.update(f.name.encode())
        h.update(f.read_bytes() if f.exists() else b"<missing>")
    return BuildInfo(__version__, commit or "unknown", date or "unknown", dirty,
                     h.hexdigest()[:16])



# history: what changed


_TRACKED = ("r", "r_ci_lb", "r_ci_ub", "r_pi_lb", "r_pi_ub", "tau2", "k", "n_samples", "N",
            "estimate")


def _tracked(h: dict) -> dict:
    return {k: (None if _nan(h.get(k)) else h.get(k)) for k in _TRACKED}


def _same_state(a: dict, b: dict) -> bool:
    # the counts and the estimate identify a data state well enough to tell builds apart
    return all(a.get(k) == b.get(k) for k in ("k", "n_samples")) and (
        a.get("r") is not None and b.get("r") is not None and abs(a["r"] - b["r"]) < 1e-9)


def _committed_headline(cfg, run: str, current: dict) -> dict | None:
    """The newest headline of ``run`` committed to git under outputs/ that differs from the
    current one (its headline.json, or the first row of its tables/pooled.csv), as a history
    entry; None outside git or without one. Seeds "what changed" on a site built for the
    first time, so the last data change shows even before history.json existed."""
    import io

    run_dir = cfg.output_dir / run
    try:
        rels = [(run_dir / HEADLINE_FILE).relative_to(cfg.root).as_posix(),
                (run_dir / "tables" / "pooled.csv").relative_to(cfg.root).as_posix()]
    except ValueError:
        return None
    for line in _git(cfg.root, "log", "--format=%h %cs", "--", *rels).splitlines()[:20]:
        commit, _, date = line.partition(" ")
        old = None
        text = _git(cfg.root, "show", f"{commit}:{rels[0]}")
        if text:
            old = {k: (float("nan") if v is None else v) for k, v in json.loads(text).items()}
        else:
            text = _git(cfg.root, "show", f"{commit}:{rels[1]}")
            if text:
                df = pd.read_csv(io.StringIO(text))
                old = df.iloc[0].to_dict() if len(df) else None
        if old is None or _nan(old.get("r")):
            continue
        entry = _tracked(old)
        if not _same_state(entry, current):
            return {"data": f"outputs at {commit}", "commit": commit, "date": date,
                    "headline": entry}
    return None


def _update_history(site: Path, info: BuildInfo, h: dict | None, cfg=None,
                    run: str | None = None) -> list[dict]:
    """One entry per data state (hash of the data files). A rebuild of the same data with
    changed numbers (a package change) replaces that state's headline; new data add an entry.
    A history with no earlier state is seeded from the headline committed to git."""
    p = site / HISTORY
    hist: list[dict] = []
    if p.exists():
        try:
            hist = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            hist = []
    if h is None:
        return hist
    entry = {"data": info.data_hash, "commit": info.commit, "date": info.date,
             "headline": _tracked(h)}
    if hist and hist[-1].get("data") == info.data_hash:
        hist[-1] = entry
    else:
        hist.append(entry)
    if len(hist) == 1 and cfg is not None and run is not None:
        seed = _committed_headline(cfg, run, entry["headline"])
        if seed is not None:
            hist.insert(0, seed)
    _write(p, json.dumps(hist, indent=1, sort_keys=True) + "\n")
    return hist


def changes_html(hist: list[dict]) -> str:
    """The "what changed" section: the last two data states of the history side by side."""
    if len(hist) < 2:
        return ("<p>This is the first data state recorded in <code>site/history.json</code>; "
                "the next build after studies are added will show how the headline moved.</p>")
    old, new = hist[-2], hist[-1]
    a, b = old["headline"], new["headline"]

    def val(d: dict, key: str, f) -> str:
        return "\u2013" if d.get(key) is None else f(d[key])

    rows = [("r", val(a, "r", fmt_r), val(b, "r", fmt_r)),
            ("95% CI", fmt_ci(a["r_ci_lb"], a["r_ci_ub"]) if a.get("r_ci_lb") is not None
             else "\u2013", fmt_ci(b["r_ci_lb"], b["r_ci_ub"]) if b.get("r_ci_lb") is not None
             else "\u2013"),
            ("\u03c4\u00b2", val(a, "tau2", fmt_var), val(b, "tau2", fmt_var)),
            ("k effects", val(a, "k", fmt_int), val(b, "k", fmt_int)),
            ("samples", val(a, "n_samples", fmt_int), val(b, "n_samples", fmt_int)),
            ("N", val(a, "N", fmt_int), val(b, "N", fmt_int))]
    body = "".join(f"<tr><td>{html.escape(n)}</td><td class=\"num\">{html.escape(x)}</td>"
                   f"<td class=\"num\">{html.escape(y)}</td></tr>" for n, x, y in rows)
    before = (f"the headline committed to <code>outputs/</code> at <code>"
              f"{html.escape(old['commit'])}</code> ({html.escape(old['date'])})"
              if str(old.get("data", "")).startswith("outputs at") else
              f"the data state before it (commit <code>{html.escape(old['commit'])}</code>, "
              f"{html.escape(old['date'])})")
    return (f"<p>The headline after the last data change (commit <code>{html.escape(new['commit'])}"
            f"</code>, {html.escape(new['date'])}) compared with {before}.</p>"
            '<table class="apa"><thead><tr><th></th><th>Before</th><th>Now</th></tr></thead>'
            f"<tbody>{body}</tbody></table>")
