"""Processes by name (``/proc/PID/comm``): the daemons that undo kvmrt's tuning.

``irqbalance`` rewrites IRQ affinities behind kvmrt's back; boot warns of
it and ``kvmrt-validate-host`` checks for it, with this one reader.
"""

from __future__ import annotations

from kvmrt.host.fs import HostFS

IRQBALANCE = "irqbalance"


def pids_named(fs: HostFS, comm: str) -> list[int]:
    """The PIDs whose ``comm`` is ``comm``, in ``/proc`` order; a process
    that exits between listing and reading is skipped."""
    pids = []
    for name in (n for n in fs.listdir("proc", default=[]) if n.isdigit()):
        try:
            text = fs.read(f"proc/{name}/comm", default=None)
        except ProcessLookupError:
            continue
        if text == comm:
            pids.append(int(name))
    return pids
