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

    .venv/bin/python bench/bench_config.py [--runs N]

The goals: both commands well under 2 s at 1,000 VMs on a 2-core machine
(foundation issue), and under 1.5 s at 10,000 VMs (issue 14).
"""

from __future__ import annotations

import argparse
import os
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        root = hostgen.build_host(tmp / "host", hostgen.big(cpus=512, nodes=16))
        env = {**os.environ, "KVMRT_FSROOT": str(root)}
        configs = {n: write_config(tmp / f"{n}.cfg", n) for n in SIZES}
        floor = timed([sys.executable, "-c", "pass"], env, args.runs)
        print(f"host: 512 CPUs, 16 NUMA nodes; {args.runs} runs each; median / best, seconds")
        print(f"{'command':<44}" + "".join(f"{f'{n} VMs':>16}" for n in SIZES))
        print(f"{'python3 -c pass (interpreter start-up)':<44}{fmt(floor):>16}")
        for tool, extra in (("kvmrt-validate-config", []), ("kvmrt-show-config", ["--json"])):
            row = [timed([str(BIN / tool), "-f", str(configs[n]), *extra], env, args.runs,
                         ok=(0, 1))
                   for n in SIZES]
            name = " ".join([tool, *extra])
            print(f"{name:<44}" + "".join(f"{fmt(t):>16}" for t in row))


if __name__ == "__main__":
    main()
