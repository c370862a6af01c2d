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
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once() -> None:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if proc.returncode not in ok:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.decode()}")

    return timed_call(once, runs)


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
