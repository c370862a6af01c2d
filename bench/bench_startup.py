#!/usr/bin/env python3
"""How fast does every kvmrt tool answer ``--help`` and a bad argument?

Runs each installed console script (``kvmrt-boot --help``, ``kvmrt-boot
--no-such-option``, ...) as a user does, a new process each time, next to
the peers ``python -c pass`` (the interpreter's start-up: the floor) and
``virsh --help`` in the same run, and ``python -c 'import click'`` (what
the CLI framework alone costs). The commands take turns, round after
round, so that a busy machine slows them alike. Prints median and best
seconds and the best as a multiple of the best ``python -c pass``.

    .venv/bin/python bench/bench_startup.py [--runs N]

The goal (issue 14): every tool's ``--help`` and argument errors within 3x
``python -c pass``. The console scripts answer ``--help`` and unknown
options from a table of click's own output without importing click
(kvmrt.commands.entry); libvirt, lxml, the host readers and the tuning code
are imported only where a command body uses them.

Measured 2026-12-01 on the 2-CPU development VM (7 rounds, best): ``python
-c pass`` 0.012 s, ``import click`` 4.2x, every tool's ``--help`` 1.1-1.4x
and ``--no-such-option`` 1.7-2.1x (before the table: 4.7-5.8x).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

BIN = Path(sys.executable).parent
GOAL = 3.0


def tools() -> list[str]:
    return sorted(ep.name for ep in entry_points(group="console_scripts")
                  if ep.value.startswith(("kvmrt.commands.", "kvmrt.guestsvc.gsd:")))


def rows() -> list[tuple[str, list[str], tuple[int, ...]]]:
    """(label, argv, accepted exit codes): the peers first, then each tool."""
    out = [("python -c pass", [sys.executable, "-c", "pass"], (0,))]
    virsh = shutil.which("virsh")
    if virsh:
        out.append(("virsh --help", [virsh, "--help"], (0,)))
    # The framework's share: click alone (it imports uuid, platform, inspect).
    out.append(("python -c 'import click'", [sys.executable, "-c", "import click"], (0,)))
    for tool in tools():
        out.append((f"{tool} --help", [str(BIN / tool), "--help"], (0,)))
        out.append((f"{tool} --no-such-option", [str(BIN / tool), "--no-such-option"], (2,)))
    return out


def run_once(argv: list[str], ok: tuple[int, ...]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode not in ok:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.decode()}")
    return elapsed


def measure(table: list[tuple[str, list[str], tuple[int, ...]]], runs: int) -> list[list[float]]:
    """Seconds of each row, ``runs`` rounds after one uncounted warm-up round."""
    times: list[list[float]] = [[] for _ in table]
    for _ in range(runs + 1):
        for i, (_label, argv, ok) in enumerate(table):
            times[i].append(run_once(argv, ok))
    return [t[1:] for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    table = rows()
    times = measure(table, args.runs)
    floor = min(times[0])
    print(f"{args.runs} rounds; seconds; x pass = best / best of python -c pass "
          f"(goal: kvmrt within {GOAL:g}x)")
    print(f"{'command':<48}{'median':>9}{'best':>9}{'x pass':>8}")
    worst = 0.0
    for (label, _argv, _ok), t in zip(table, times):
        ratio = min(t) / floor
        if label.startswith("kvmrt-"):
            worst = max(worst, ratio)
        print(f"{label:<48}{statistics.median(t):>9.3f}{min(t):>9.3f}{ratio:>7.1f}x")
    print(f"slowest kvmrt tool: {worst:.1f}x python -c pass "
          f"({'within' if worst <= GOAL else 'OVER'} the {GOAL:g}x goal)")


if __name__ == "__main__":
    main()
