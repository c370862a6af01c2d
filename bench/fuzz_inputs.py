#!/usr/bin/env python3
"""The input fuzz of tests/test_fuzz_inputs.py, bigger and with exact memory.

Generates COUNT set strings and COUNT config texts with the test's
generators (any seed), runs each in-process on the fixture hosts (512-CPU
big host, small, Threadripper, offline), and measures every run's time and
tracemalloc peak. Prints the number of inputs, tracebacks, runs over 2 s or
200 MB, the slowest run and the largest peak, and the first failures.

    .venv/bin/python bench/fuzz_inputs.py [--count 6000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostgen  # noqa: E402
import test_fuzz_inputs as fuzz  # noqa: E402

from kvmrt.errors import KvmrtError  # noqa: E402
from kvmrt.host import HostFS, read_host  # noqa: E402


def _hosts(base: Path) -> list:
    specs = (hostgen.big(), hostgen.small_4c1t(), hostgen.threadripper_5975wx(),
             hostgen.offline_4c2t())
    return [read_host(HostFS(hostgen.build_host(base / s.name, s))) for s in specs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6000, help="inputs of each kind")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    inputs = [(fuzz._try_set, fuzz.set_string(rng)) for _ in range(args.count)]
    inputs += [(fuzz._try_config, fuzz.config_string(rng)) for _ in range(args.count)]
    with tempfile.TemporaryDirectory() as tmp:
        hosts = _hosts(Path(tmp))
        failures, slowest, largest, over = [], 0.0, 0, 0
        tracemalloc.start()
        for i, (attempt, text) in enumerate(inputs):
            tracemalloc.reset_peak()
            start = time.perf_counter()
            try:
                attempt(text, hosts[i % len(hosts)])
            except KvmrtError:
                pass
            except Exception as exc:  # what the fuzz looks for
                failures.append(f"{type(exc).__name__}: {str(exc)[:120]} for {text[:120]!r}")
            seconds = time.perf_counter() - start
            peak = tracemalloc.get_traced_memory()[1]
            over += seconds > fuzz.MAX_SECONDS or peak > fuzz.MAX_BYTES
            slowest, largest = max(slowest, seconds), max(largest, peak)
        tracemalloc.stop()
    print(f"{len(inputs)} inputs (seed {args.seed}): {len(failures)} tracebacks, "
          f"{over} runs over 2 s or 200 MB; slowest {slowest:.3f} s (under tracemalloc), "
          f"largest peak {largest / 2**20:.1f} MB")
    for failure in failures[:10]:
        print(" ", failure)
    sys.exit(1 if failures or over else 0)


if __name__ == "__main__":
    main()
