"""What the benchmarks share: time a command or a call over several runs."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Callable


def timed(cmd: list[str], env: dict, runs: int, *, ok: tuple[int, ...] = (0,)
          ) -> tuple[float, float]:
    """(median, best) seconds of ``cmd`` as a new process each time; one
    uncounted warm-up run first (page cache, dentries, and the bytecode
    caches an installed package has: PYTHONDONTWRITEBYTECODE is dropped, so
    that the runs time what users run, not the compiling of every module)."""
    (result,) = timed_side_by_side([cmd], env, runs, ok=ok)
    return result


def timed_side_by_side(cmds: list[list[str]], env: dict, runs: int, *,
                       ok: tuple[int, ...] = (0,)) -> list[tuple[float, float]]:
    """:func:`timed` of each of ``cmds``, their runs interleaved and the
    order rotated each round (a b c, b c a, c a b, ...): what else the
    machine does in the meantime weighs on each alike (one block of runs
    after the other can differ by a third on a shared machine), and so
    does what one command leaves the next (after ``ps -eLo`` of 30,000
    threads the next command takes ~0.1 s more)."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    times: list[list[float]] = [[] for _ in cmds]
    pairs = list(zip(cmds, times))
    for n in range(runs + 1):
        for cmd, spent in pairs[n % len(pairs):] + pairs[:n % len(pairs)]:
            start = time.perf_counter()
            proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE)
            spent.append(time.perf_counter() - start)
            if proc.returncode not in ok:
                raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")
    return [(statistics.median(t[1:]), min(t[1:])) for t in times]


def timed_call(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(median, best) seconds of ``fn()``, after one uncounted warm-up call."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), min(times[1:])


def fmt(t: tuple[float, float]) -> str:
    return f"{t[0]:.3f} / {t[1]:.3f}"
