#!/usr/bin/env python3
"""How fast are kvmrt-validate-config and kvmrt-show-config on a big host?

Builds a 512-CPU, 16-node host (2 packages, 2 threads per core) as a sysfs
tree, a 10,000-VM, a 1,000-VM and a 10-VM config of the same layout: 32 rt VMs of
4 cores each, two per node on cores 0-7 of every node, and non-rt VMs of 2
CPUs each on cores 8-15 of every node, round robin, so that every non-rt VM
shares a node with two rt VMs (about 2,000 node-shared warnings at 1,000
VMs, about 20,000 at 10,000: the validator's cross-VM rules are exercised,
not skipped). The 10-VM config has the first 4 rt and 6 non-rt VMs. Then
runs each command as a user does (a new process each time, Python start-up
included) and prints the median and best of several runs for the configs
side by side, next to the bare interpreter start-up as the floor.

    .venv/bin/python bench/bench_config.py [--runs N] [--baseline SRC]

    .venv/bin/python bench/bench_config.py --baseline /tmp/old/src
        (after: git archive OLD src | tar -x -C /tmp/old)

With --baseline it also times an older kvmrt in the same run and checks
that each command prints the same bytes (stdout, stderr, exit status) as
that older one. The peer row is the standard library reading the same
file with configparser (no meaning, no checks): what parsing the text
alone costs in plain Python.

The goals: both commands well under 2 s at 1,000 VMs on a 2-core machine
(foundation issue), and under 1.5 s at 10,000 VMs (issue 14).

Measured at 10,000 VMs (2-CPU machine shared with other work, 5 runs,
median / best, s), --baseline the kvmrt before issue 14's config work
(a4aa84d), output identical at every size:

    python3 -c pass                          0.011 / 0.011
    configparser reads the file (peer)       0.324 / 0.314
    kvmrt-validate-config                    1.142 / 1.040   before 1.284 / 1.249
    kvmrt-show-config                        0.881 / 0.856   before 1.171 / 1.104
    kvmrt-show-config --json                 1.176 / 1.058   before 1.450 / 1.327

(The issue's 3.7 s / 5.9 s were taken with every module compiled on each
start; the runs now keep bytecode caches, see timing.py.) Where the time
of validate-config goes now (cProfile, share of the run): reading the file
31% (INI syntax 23%, the VM model 7%), the per-VM rules 21% (placing
14%), the cross-VM rules for the 40,000 pairs that share a node with
their 30,000 warnings 22%, the libvirt rules 7%, imports and printing
the rest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import hostgen  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import fmt, timed  # noqa: E402

BIN = Path(sys.executable).parent
NODE_CORES = 16        # cores per node on the big host
RT_VMS = 32
SIZES = (10, 1000, 10000)


def vm_section(i: int) -> str:
    uuid = f"00000000-0000-4000-8000-{i:012d}"
    if i < RT_VMS:  # rt: cores 0-3 or 4-7 of node i // 2
        first = (i // 2) * NODE_CORES + (i % 2) * 4
        return (f"[{uuid}]\nname = rt-{i:04d}\ncpuset = {first}-{first + 3}\nrt = True\n"
                f"nr_vcpus = auto\nautostart = True\n")
    j = i - RT_VMS  # non-rt: two CPUs of cores 8-15 of node j % 16
    core = (j % 16) * NODE_CORES + 8 + (j // 16 * 2) % 8
    extra = "numatune = auto\n" if j % 3 else "hide_kvm = on\n"
    return (f"[{uuid}]\nname = vm-{j:04d}\ntitle = ordinary VM {j}\n"
            f"cpuset = {core},{core + 1}\nnr_vcpus = 1\n{extra}")


def write_config(path: Path, count: int) -> Path:
    idx = list(range(count)) if count > RT_VMS else [*range(4), *range(RT_VMS, RT_VMS + count - 4)]
    path.write_text("\n".join(vm_section(i) for i in idx))
    return path


TOOLS = (("kvmrt-validate-config", []), ("kvmrt-show-config", []),
         ("kvmrt-show-config", ["--json"]))
# The plain-Python peer: the standard library's INI reader on the same file.
PEER = ("import configparser, sys; c = configparser.RawConfigParser(); "
        "c.optionxform = str; c.read(sys.argv[1])")


def row(name: str, cells) -> None:
    print(f"{name:<44}" + "".join(f"{c:>16}" for c in cells))


def same_output(cmd: list[str], env: dict, old: dict) -> bool:
    """Whether kvmrt from --baseline prints the same bytes (stdout, stderr, exit)."""
    def out(e: dict) -> tuple:
        proc = subprocess.run(cmd, env=e, capture_output=True)
        return proc.returncode, proc.stdout, proc.stderr

    return out(env) == out(old)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", metavar="SRC",
                        help="also time kvmrt with PYTHONPATH=SRC (an older src/ of kvmrt, "
                             "e.g. from git archive) and compare its output, in the same run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = hostgen.build_host(tmp / "host", hostgen.big(cpus=512, nodes=16))
        env = {**os.environ, "KVMRT_FSROOT": str(root)}
        old = {**env, "PYTHONPATH": args.baseline or ""}
        configs = {n: write_config(tmp / f"{n}.cfg", n) for n in SIZES}
        floor = timed([sys.executable, "-c", "pass"], env, args.runs)
        print(f"host: 512 CPUs, 16 NUMA nodes; {args.runs} runs each; median / best, seconds")
        row("command", [f"{n} VMs" for n in SIZES])
        row("python3 -c pass (interpreter start-up)", [fmt(floor)])
        row("python3: configparser reads the file (peer)",
            [fmt(timed([sys.executable, "-c", PEER, str(configs[n])], env, args.runs))
             for n in SIZES])
        for tool, extra in TOOLS:
            cmds = [[str(BIN / tool), "-f", str(configs[n]), *extra] for n in SIZES]
            name = " ".join([tool, *extra])
            row(name, [fmt(timed(cmd, env, args.runs, ok=(0, 1))) for cmd in cmds])
            if args.baseline:
                row("  the same, kvmrt from --baseline",
                    [fmt(timed(cmd, old, args.runs, ok=(0, 1))) for cmd in cmds])
                row("  output identical to --baseline",
                    ["yes" if same_output(cmd, env, old) else "NO" for cmd in cmds])


if __name__ == "__main__":
    main()
