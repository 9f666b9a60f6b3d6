"""A digest of a package folder's Python source: what a stored result depends on besides its
data (the pipeline's run hash, the multiverse's row-set cache)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["source_digest"]


def source_digest(root: Path) -> str:
    """SHA-256 over every ``*.py`` file under ``root``: relative path and bytes, in path order."""
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()
