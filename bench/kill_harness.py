#!/usr/bin/env python3
"""The SIGKILL harnesses of the test suite, at any size.

1. Journaled tuning (tests/test_journal.py): a process tunes and releases
   an rt VM on a generated Threadripper host in a loop and is SIGKILLed at
   random moments; after each kill, recovery must put the host back byte for
   byte and remove the journal.
2. Config writes (tests/test_inifile.py): a process rewrites a 0640 config
   of 16 MB in a loop and is SIGKILLed at random moments; the config must be
   one whole version each time, no copy more readable than it, and the next
   lock must remove the copies.

Prints kills, states not restored exactly, journals left, configs not
whole, copies left and how many of them were lax or survived the lock.

    .venv/bin/python bench/kill_harness.py [--kills 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostgen  # noqa: E402
import test_inifile  # noqa: E402
import test_journal  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=200, help="kills of each harness")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    forever = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        root = hostgen.build_host(Path(tmp) / "host", hostgen.threadripper_5975wx())
        tuning = test_journal.kill_tuners(root, args.seed, args.kills, forever)
        (Path(tmp) / "cfg").mkdir()
        writes = test_inifile.kill_writers(Path(tmp) / "cfg", args.seed, args.kills, forever)
    print(f"journaled tune/release (seed {args.seed}): {tuning.kills} kills, "
          f"{tuning.inexact} states not restored exactly, {tuning.journals_kept} journals "
          f"left, {tuning.torn} fixture status files torn (put back)")
    print(f"config writes (seed {args.seed}): {writes.kills} kills, {writes.not_whole} "
          f"configs not one whole version, {writes.copies} copies left by killed writers, "
          f"{writes.lax_copies} more readable than the config, {writes.copies_kept} "
          "not removed by the next lock")
    bad = (tuning.inexact, tuning.journals_kept, writes.not_whole, writes.lax_copies,
           writes.copies_kept)
    sys.exit(1 if any(bad) else 0)


if __name__ == "__main__":
    main()
