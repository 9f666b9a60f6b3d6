"""Figure and table captions a run records for the site: ``<run>/figures/captions.json`` and
``<run>/tables/captions.json``, each ``{stem: {"caption": str, "model": str}}`` with sorted keys
(byte-identical for identical captions). The site (:mod:`.site`) reads them; a figure without an
entry is captioned by its file stem.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CAPTIONS_FILE", "record_caption", "read_captions"]

CAPTIONS_FILE = "captions.json"



def record_caption(output_dir: str | Path, name: str, caption: str, model: str = "",
                   kind: str = "figures") -> Path:
    """Add one figure's caption to ``<output_dir>/figures/captions.json`` (``kind="tables"``:
    a table's title to ``tables/captions.json``); sorted keys, so the file is byte-identical
    for identical captions. ``model`` names the model that drew the figure or table."""
    if kind not in ("figures", "tables"):
        raise ValueError(f"record_caption: kind must be 'figures' or 'tables', not {kind!r}")
    p = Path(output_dir) / kind / CAPTIONS_FILE
    p.parent.mkdir(parents=True, exist_ok=True)
    caps = read_captions(p.parent)
    caps[name] = {"caption": caption, "model": model}
    p.write_text(json.dumps(caps, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
                 encoding="utf-8")
    return p


def read_captions(figures_dir: str | Path) -> dict[str, dict[str, str]]:
    """The captions of a run's figures (``{}`` if the run wrote none); a bare string value is
    read as the caption."""
    p = Path(figures_dir) / CAPTIONS_FILE
    if not p.exists():
        return {}
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    return {k: ({"caption": v, "model": ""} if isinstance(v, str) else dict(v))
            for k, v in raw.items()}
