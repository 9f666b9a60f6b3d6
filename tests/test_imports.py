"""Every module imports on its own, in a fresh interpreter, whichever is imported first (the
package's exports load lazily, so an import cycle no longer hides behind ``import
alliance_meta`` importing everything in a fixed order)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import alliance_meta


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(alliance_meta.__path__, "alliance_meta."))


def test_every_module_imports_first():
    mods = _modules()
    assert "alliance_meta.stats.permutation" in mods and len(mods) > 50
    # one interpreter per module would take a minute: each child imports a slice of them,
    # every module as the first of the package in its own child
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    for m in [k for k in sys.modules if k.startswith('alliance_meta')]:\n"
            "        del sys.modules[m]\n"
            "    importlib.import_module(name)\n")
    out = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
