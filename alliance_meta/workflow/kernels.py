"""One Jupyter kernel per pipeline worker, reused by the runs that worker executes (issue 16).

Starting a kernel and importing the scientific stack into it cost about 3 s of CPU per run, a
third of a forced run of the pipeline on 2 cores. A worker therefore keeps its kernel and hands
it to papermill for each of its runs. Before a run the kernel is brought back to a fresh
kernel's state as far as a notebook can see it: the user namespace and IPython's history are
cleared (``%reset -f``), open figures are closed, matplotlib's rcParams are restored to their
state at start-up and the working directory is set to the notebook's folder. Imported modules
stay imported: that is the saving. A run that fails discards the kernel (its state is unknown)
and the worker's next run starts a new one.

The pipeline's tests check that a name one notebook defines is not visible to the next, that
rcParams and the working directory are a fresh kernel's, that execution counts start at 1, and
that identical runs write identical outputs. Other process-wide state (pandas options, warning
filters, environment variables) is not reset.
"""

from __future__ import annotations

import os
from multiprocessing.util import Finalize

__all__ = ["worker_kernel", "discard_kernel", "kernel_output"]

_KM = None  # this worker process's kernel manager (None until its first run)
_LOG: tuple[str, int] | None = None  # the kernel's stdout/stderr file and how much was read
_KC = None  # this worker's own client of the kernel (for the reset between runs)

# Run in the kernel before every notebook. The first call records matplotlib's start-up
# rcParams (the notebooks import matplotlib anyway); later calls restore them.
_RESET = """\
import os as _am_os
import matplotlib as _am_mpl
_am_os.chdir({cwd!r})
if not hasattr(_am_mpl, "_alliance_meta_rc0"):
    _am_mpl._alliance_meta_rc0 = _am_mpl.rcParams.copy()
else:
    import matplotlib.pyplot as _am_plt
    _am_plt.close("all")
    _am_mpl.rcParams.update({{k: v for k, v in _am_mpl._alliance_meta_rc0.items()
                             if k != "backend"}})
get_ipython().run_line_magic("reset", "-f")
"""


def worker_kernel(cwd: str | os.PathLike, log: str | os.PathLike, kernel_name: str = "python3"):
    """This worker's kernel manager, its kernel started and brought to a fresh kernel's state
    in ``cwd`` (see the module docstring). A new kernel inherits this process's environment
    and writes its own stdout/stderr to ``log`` (read with :func:`kernel_output`). papermill,
    handed a manager it does not own, leaves the kernel running for the worker's next run."""
    global _KM, _LOG
    fresh = _KM is None
    if _KM is None:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=kernel_name)
        with open(log, "ab") as f:
            run_sync(km.start_kernel)(cwd=str(cwd), stdout=f, stderr=f)
        _KM, _LOG = km, (str(log), 0)
        # multiprocessing's workers skip atexit; their Finalize callbacks do run on exit
        Finalize(km, _shutdown, args=(km,), exitpriority=10)
    try:
        _prepare(_KM, cwd)
    except Exception:  # a kernel that cannot be reset is replaced, once
        if fresh:
            raise
        discard_kernel()
        return worker_kernel(cwd, log, kernel_name)
    return _KM


def kernel_output() -> str:
    """What the worker's kernel wrote to its stdout/stderr since the last call."""
    global _LOG
    if _LOG is None:
        return ""
    path, seen = _LOG
    try:
        with open(path, "rb") as f:
            f.seek(seen)
            data = f.read()
    except FileNotFoundError:
        return ""
    _LOG = (path, seen + len(data))
    return data.decode("utf-8", errors="replace")


def _prepare(km, cwd: str | os.PathLike) -> None:
    """Run the reset through the worker's own client of the kernel (connected once: a new
    client's handshake cost a quarter of a second per run)."""
    global _KC
    if _KC is None:
        # the manager's own client: it asks the manager (the process) whether the kernel lives,
        # where a free-standing client judges by heartbeats, which a loaded machine can miss
        _KC = km.blocking_client()
        _KC.start_channels()
        _KC.wait_for_ready(timeout=120)
    reply = _KC.execute_interactive(_RESET.format(cwd=str(cwd)), timeout=120,
                                    output_hook=lambda msg: None)
    if reply["content"].get("status") != "ok":
        c = reply["content"]
        raise RuntimeError(f"resetting the kernel failed: {c.get('ename')}: {c.get('evalue')}")


def discard_kernel() -> None:
    """Shut this worker's kernel down (after a failed run); the next run starts a new one."""
    global _KM, _LOG, _KC
    km, _KM, _LOG = _KM, None, None
    if _KC is not None:
        _KC.stop_channels()
        _KC = None
    if km is not None:
        _shutdown(km)


def _shutdown(km) -> None:
    from jupyter_core.utils import run_sync

    try:
        if km.has_kernel:
            run_sync(km.shutdown_kernel)(now=True)
    except Exception:  # the kernel is gone already: nothing to clean up
        pass
