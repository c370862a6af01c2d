#!/usr/bin/env python3
"""How fast are kvmrt-boot and kvmrt-shutdown of an rt VM on a big host?

Builds, on tmpfs (``--dir``, default /dev/shm), a generated 512-CPU host
(2 packages x 128 cores x 2 threads, 16 NUMA nodes of 32 CPUs) with
THREADS threads and IRQS IRQs for each ``--sizes THREADS:IRQS`` (default
10000:1000 20000:2000 30000:4000):

- the standard kernel threads (migration/N, ksoftirqd/N per CPU...), then
  user processes of 20 threads each allowed on every CPU, all movable;
- IRQs: the legacy ones and NIC queue vectors, each allowed on every CPU
  (``proc/interrupts`` is 11 MB at 2,000 IRQs);
- the rt VM ``rt1`` (``cpuset = n1``: 32 CPUs shielded, their 16 SMT
  siblings taken offline, 15 vCPUs) with its QEMU threads and libvirt's
  status file, as after libvirt started it.

libvirt is its test driver (``test:///NODE.xml``, domain XML in the node
file): shut off for kvmrt-boot (which syncs the XML and starts it),
running for kvmrt-shutdown. Each command runs as a user runs it (a new
process, Python start-up and imports included) with KVMRT_FSROOT on the
tree; the tree is the TreeKernel's: each thread's affinity is its
``status`` file (read, rewritten), the one difference from ``/``.

The floor is plain Python (``os`` and ``json``, a new process too) doing
the same reads and writes: every thread's ``stat`` and ``status``, every
IRQ's ``smp_affinity_list`` and ``effective_affinity_list``,
``proc/interrupts`` once, the topology's ``online`` files; the journal of
the old values written and fsynced before the writes; then each change
re-checked (``stat``), written and read back. Shutdown: the journal read,
the host read again, every journaled value put back and read back, the
journal settled and removed.

Every cycle (boot, then shutdown) must leave the tree as it was: the bench
compares every file of it before and after, and stops if one differs.

    .venv/bin/python bench/bench_lifecycle.py [--runs N] [--sizes 20000:2000 ...]

The goal (issue 14): boot and shutdown within 3x the floor, linear in
threads and IRQs up to 30,000 threads and 4,000 IRQs; the journal after
boot under 2 MB at 20,000 threads.

Measured on the 2-CPU development machine (other jobs running; median of
3 runs, seconds; the floor's own figures move by 2x from run to run):

    threads/IRQs              10000/1000   20000/2000   30000/4000
    kvmrt-boot                     1.34         1.71         2.64
    floor boot                     0.51         1.31         1.78
    kvmrt-shutdown                 1.34         2.48         3.05
    floor shutdown                 0.58         1.07         1.52
    kvmrt-boot --dry-run           0.81         1.07         1.38
    boot / floor                   2.61         1.31         1.49
    shutdown / floor               2.33         2.31         2.00
    journal after boot, MB         0.65         1.37         2.19

Before, at 20,000 threads: the issue's figures were boot 29 s, shutdown
27 s, --dry-run 17 s and a 52 MB journal; kvmrt of commit 0c9733c (lazy
imports and faster thread reads already in) measured in the same way on
the same tree: boot 6.8 s, shutdown 23.5 s, --dry-run 4.3 s, 53 MB. What a boot costs now is reading and writing the
threads' files (``stat`` and ``status`` in the snapshot, ``stat`` again
before each write, ``status`` rewritten and read back), as for the floor,
plus Python start-up and imports (about 0.3 s: the 10,000-thread ratio).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import hostgen  # noqa: E402

BIN = Path(sys.executable).parent
UUID = "00000000-0000-4000-8000-0000000000a1"
NAME = "rt1"
QEMU_PID = 7001
FILLER_PID = 10000
PER_PROCESS = 20
VCPUS = 15          # nr_vcpus = auto on the 32 CPUs of node 1
CONFIG = (f"[{UUID}]\nname = {NAME}\ncpuset = n1\nrt = True\nnr_vcpus = auto\n"
          "autostart = True\n")

NODE_XML = """<node>
  <cpu><mhz>2400</mhz><model>big</model><active>512</active><nodes>16</nodes>
    <sockets>1</sockets><cores>16</cores><threads>2</threads></cpu>
  <memory>536870912</memory>
  <domain type='kvm' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>
    <name>{name}</name><uuid>{uuid}</uuid>
    <memory unit='KiB'>4194304</memory><vcpu placement='static'>{vcpus}</vcpu>
    <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
    <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>
      <memballoon model='none'/></devices>
    {state}
  </domain>
</node>
"""


# -- the host ---------------------------------------------------------------
def host_spec(threads: int, irqs: int) -> hostgen.HostSpec:
    spec = dataclasses.replace(hostgen.big(cpus=512, nodes=16), proc=True)
    dom = hostgen.DomainSpec(NAME, pid=QEMU_PID, vcpus=VCPUS, uuid=UUID)
    spec = dataclasses.replace(spec, domains=(dom,))
    standard = hostgen.standard_tasks(spec)
    filler = []
    for i in range(threads - len(standard) - len(dom.threads())):
        pid = FILLER_PID + i // PER_PROCESS * PER_PROCESS
        filler.append(hostgen.TaskSpec(pid, f"app{pid % 97}", tid=FILLER_PID + i))
    legacy = hostgen.standard_irqs(spec)
    nics = tuple(hostgen.IrqSpec(24 + n, f"eth{n // 64}-TxRx-{n % 64}",
                                 chip=f"IR-PCI-MSIX-0000:{n // 64 + 1:02x}:00.0", hwirq=n % 64)
                 for n in range(irqs - len(legacy)))
    return dataclasses.replace(spec, tasks=standard + tuple(filler), irqs=legacy + nics)


def digest(root: Path) -> dict[str, str]:
    """Every file below root (the journal's state directory aside) by hash."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        if "run/kvmrt" in dirpath:
            continue
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                found[path] = hashlib.blake2b(f.read(), digest_size=8).hexdigest()
    return found


# -- the floor: plain Python, the same reads and writes ---------------------
FLOOR = r'''
import json, os, sys

root, mode, shield, offline, journal, qemu_pid = sys.argv[1:7]
P = root + "/"
QEMU = int(qemu_pid)

def ids(text):
    out = set()
    for part in filter(None, text.strip().split(",")):
        a, _, b = part.partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return frozenset(out)

import functools

@functools.lru_cache(maxsize=None)
def fmt(cpus):
    cpus, out, i = sorted(cpus), [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)

@functools.lru_cache(maxsize=None)
def hexmask(cpus, nbits):
    v = sum(1 << c for c in cpus)
    d = f"{v:0{(nbits + 3) // 4}x}"
    head = len(d) % 8 or 8
    return ",".join([d[:head]] + [d[i:i + 8] for i in range(head, len(d), 8)])

@functools.lru_cache(maxsize=None)
def unmask(text):
    v = int(text.strip().replace(",", ""), 16)
    return frozenset(b for b in range(v.bit_length()) if v >> b & 1)

def rd(rel):
    fd = os.open(P + rel, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)

def wr(rel, text):
    fd = os.open(P + rel, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)

cpulist = functools.lru_cache(maxsize=None)(ids)

def status_list(status):
    at = status.index("Cpus_allowed_list:") + 18
    return cpulist(status[at:status.index("\n", at)])

def read_host():
    cpu = "sys/devices/system/cpu"
    online = {}
    for name in os.listdir(P + cpu):
        if name.startswith("cpu") and name[3:].isdigit():
            try:
                online[int(name[3:])] = rd(f"{cpu}/{name}/online").strip() == "1"
            except FileNotFoundError:
                online[int(name[3:])] = True
    threads = {}
    for pid in os.listdir(P + "proc"):
        if not pid.isdigit():
            continue
        for tid in os.listdir(f"{P}proc/{pid}/task"):
            base = f"proc/{pid}/task/{tid}"
            stat = rd(f"{base}/stat")
            fields = stat[stat.rindex(")") + 2:].split()
            flags = int(fields[6])
            threads[f"task:{tid}:{fields[19]}"] = (int(pid), int(tid), stat[stat.index("(") + 1:stat.rindex(")")],
                                                 flags, status_list(rd(f"{base}/status")))
    names = {}
    for line in rd("proc/interrupts").split("\n")[1:]:
        head, _, rest = line.partition(":")
        if head.strip().isdigit():
            cut = rest.rfind("  ")
            names[int(head)] = rest[cut + 2:] if cut >= 0 and "-" not in rest[cut:] else ""
    irqs = {}
    for n in os.listdir(P + "proc/irq"):
        if n.isdigit():
            irqs[f"irq:{n}"] = (int(n), names.get(int(n), ""), cpulist(rd(f"proc/irq/{n}/smp_affinity_list")),
                                cpulist(rd(f"proc/irq/{n}/effective_affinity_list")))
    masks = {"irq-default": "proc/irq/default_smp_affinity",
             "workqueue": "sys/devices/virtual/workqueue/cpumask"}
    masks = {k: (rel, rd(rel)) for k, rel in masks.items()}
    return online, threads, irqs, masks

def append(records):
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, "".join(json.dumps(r) + "\n" for r in records).encode())
    os.fsync(fd)
    os.close(fd)

def set_cpu(cpu, on):
    rel = f"sys/devices/system/cpu/cpu{cpu}/online"
    wr(rel, "1\n" if on else "0\n")
    assert rd(rel).strip() == ("1" if on else "0")

def set_thread(pid, tid, start, cpus):
    base = f"proc/{pid}/task/{tid}"
    stat = rd(f"{base}/stat")
    assert stat[stat.rindex(")") + 2:].split()[19] == start
    status = rd(f"{base}/status")
    a = status.index("\nCpus_allowed:\t") + 15
    b = status.index("\n", a)
    c = status.index("\nCpus_allowed_list:\t", b) + 20
    d = status.index("\n", c)
    mask = hexmask(cpus, 4 * len(status[a:b].replace(",", "")))
    wr(f"{base}/status", f"{status[:a]}{mask}{status[b:c]}{fmt(cpus)}{status[d:]}")
    assert status_list(rd(f"{base}/status")) == cpus

def set_irq(n, cpus):
    rel = f"proc/irq/{n}/smp_affinity_list"
    wr(rel, fmt(cpus) + "\n")
    assert cpulist(rd(rel)) == cpus
    rd(f"proc/irq/{n}/effective_affinity_list")

def set_mask(rel, old, cpus):
    wr(rel, hexmask(cpus, 4 * len(old.strip().replace(",", ""))) + "\n")
    assert unmask(rd(rel)) == cpus

def boot():
    shielded, off = ids(shield), ids(offline)
    online, threads, irqs, masks = read_host()
    cpus_all = frozenset(online)
    olds, moves = [], []
    olds += [{"op": "old", "key": f"cpu:{c}", "label": f"CPU {c}", "value": True} for c in sorted(off)]
    target = {}
    for key, (pid, tid, comm, flags, cpus) in threads.items():
        if cpus not in target:
            target[cpus] = cpus - shielded if cpus & shielded and cpus - shielded else None
        if pid != QEMU and not flags & 0x04000000 and target[cpus]:
            olds.append({"op": "old", "key": key, "label": f"thread {tid} ({comm})", "value": fmt(cpus)})
            moves.append(("t", (pid, tid, key.split(":")[2]), target[cpus]))
    for key, (n, name, cpus, _eff) in irqs.items():
        if cpus & shielded:
            olds.append({"op": "old", "key": key, "label": f"IRQ {n} ({name})", "value": fmt(cpus)})
            moves.append(("i", n, (cpus - shielded) or (cpus_all - shielded - off)))
    for key, (rel, text) in masks.items():
        olds.append({"op": "old", "key": key, "label": key, "value": fmt(unmask(text))})
        moves.append(("m", (rel, text), unmask(text) - shielded))
    append([{"op": "vm", "vm": {"uuid": "u", "shielded": sorted(shielded), "offline": sorted(off)}}])
    append(olds)
    for c in sorted(off):
        set_cpu(c, False)
    for kind, what, cpus in moves:
        if kind == "t":
            set_thread(*what, cpus)
        elif kind == "i":
            set_irq(what, cpus)
        else:
            set_mask(*what, cpus)

def shutdown():
    base = {}
    with open(journal) as f:
        for line in f:
            r = json.loads(line)
            if r["op"] == "old":
                base.setdefault(r["key"], r["value"])
    online, threads, irqs, masks = read_host()
    for key, value in base.items():
        kind, _, rest = key.partition(":")
        if kind == "cpu" and not online[int(rest)]:
            set_cpu(int(rest), True)
    for key, value in base.items():
        if key in threads:
            pid, tid, _comm, _flags, cpus = threads[key]
            if cpus != cpulist(value):
                set_thread(pid, tid, key.split(":")[2], cpulist(value))
        elif key in irqs:
            if irqs[key][2] != cpulist(value):
                set_irq(irqs[key][0], cpulist(value))
        elif key in masks:
            set_mask(masks[key][0], masks[key][1], cpulist(value))
    append([{"op": "settled", "key": k} for k in base] + [{"op": "vm-gone", "uuid": "u"}])
    os.unlink(journal)

boot() if mode == "boot" else shutdown()
'''


# -- running ------------------------------------------------------------------
@dataclasses.dataclass
class Setup:
    root: Path
    cfg: Path
    node_off: Path
    node_on: Path
    state: Path

    def env(self, node: Path) -> dict:
        env = {**os.environ, "KVMRT_FSROOT": str(self.root),
               "LIBVIRT_DEFAULT_URI": f"test://{node}", "KVMRT_STATE_DIR": str(self.state)}
        return env


def build(base: Path, threads: int, irqs: int) -> Setup:
    root = base / "host"
    hostgen.build_host(root, host_spec(threads, irqs))
    setup = Setup(root, base / "kvmrt.cfg", base / "node-off.xml", base / "node-on.xml",
                  base / "state")
    setup.cfg.write_text(CONFIG)
    fmt = dict(name=NAME, uuid=UUID, vcpus=VCPUS)
    setup.node_off.write_text(NODE_XML.format(state="<test:runstate>5</test:runstate>", **fmt))
    setup.node_on.write_text(NODE_XML.format(state="", **fmt))
    return setup


def run(cmd: list[str], env: dict, expect: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0 or expect not in proc.stdout:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return took


def kvmrt_cycle(s: Setup, extra: list[str]) -> tuple[float, float, int]:
    boot = run([str(BIN / "kvmrt-boot"), "-f", str(s.cfg), *extra], s.env(s.node_off),
               f"{NAME}: started")
    size = (s.state / "journal.jsonl").stat().st_size
    shut = run([str(BIN / "kvmrt-shutdown"), "-f", str(s.cfg), "--timeout", "5", *extra],
               s.env(s.node_on), "host: restored")
    return boot, shut, size


def floor_cycle(s: Setup) -> tuple[float, float, int]:
    shield, offline = "16-31,272-287", "272-287"
    journal = s.state / "floor.jsonl"
    s.state.mkdir(exist_ok=True)
    args = [str(s.root), "", shield, offline, str(journal), str(QEMU_PID)]
    times = []
    for mode in ("boot", "shutdown"):
        args[1] = mode
        times.append(run([sys.executable, "-c", FLOOR, *args], os.environ, ""))
        if mode == "boot":
            size = journal.stat().st_size
    return times[0], times[1], size


def dry_run(s: Setup) -> float:
    return run([str(BIN / "kvmrt-boot"), "-f", str(s.cfg), "--dry-run"], s.env(s.node_off),
               f"{NAME}: would be started")


def median(xs: list[float]) -> float:
    return sorted(xs)[len(xs) // 2]


def measure(base: Path, threads: int, irqs: int, runs: int) -> dict:
    t0 = time.perf_counter()
    s = build(base, threads, irqs)
    print(f"  built {threads} threads, {irqs} IRQs in {time.perf_counter() - t0:.1f} s",
          file=sys.stderr)
    before = digest(s.root)
    rows: dict[str, list] = {k: [] for k in ("boot", "shutdown", "floor boot", "floor shutdown",
                                             "boot --dry-run")}
    sizes = {}
    for i in range(runs + 1):   # the first cycle warms the page cache: not counted
        k = kvmrt_cycle(s, [])
        f = floor_cycle(s)
        d = dry_run(s)
        if i:
            for name, value in zip(rows, (*k[:2], *f[:2], d)):
                rows[name].append(value)
        sizes = {"journal": k[2], "floor journal": f[2]}
        if i == 0 and digest(s.root) != before:
            raise RuntimeError("a boot and shutdown cycle did not leave the tree as it was")
    return {"rows": {k: median(v) for k, v in rows.items()}, "sizes": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", nargs="+", default=["10000:1000", "20000:2000", "30000:4000"],
                        help="THREADS:IRQS of the hosts to build")
    parser.add_argument("--dir", default="/dev/shm", help="where to build the trees (tmpfs)")
    args = parser.parse_args()
    sizes = [tuple(int(x) for x in s.split(":")) for s in args.sizes]
    results = {}
    for threads, irqs in sizes:
        base = Path(tempfile.mkdtemp(prefix="kvmrt-bench-life-", dir=args.dir))
        try:
            results[threads, irqs] = measure(base, threads, irqs, args.runs)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    print(f"512 CPUs, 16 nodes; rt VM on node 1; median of {args.runs} runs, seconds")
    head = "".join(f"{f'{t}/{i}':>14}" for t, i in sizes)
    print(f"{'threads/IRQs':<34}{head}")
    for row in ("boot", "floor boot", "shutdown", "floor shutdown", "boot --dry-run"):
        print(f"{'kvmrt-' + row if 'floor' not in row else row:<34}"
              + "".join(f"{results[s]['rows'][row]:>14.3f}" for s in sizes))
    for what in ("boot", "shutdown"):
        print(f"{what + ' / floor (goal: at most 3)':<34}"
              + "".join(f"{results[s]['rows'][what] / results[s]['rows']['floor ' + what]:>14.2f}"
                        for s in sizes))
    for what in ("boot", "shutdown"):
        print(f"{what + ' µs per thread':<34}"
              + "".join(f"{results[s]['rows'][what] / s[0] * 1e6:>14.1f}" for s in sizes))
    for what in ("journal", "floor journal"):
        print(f"{what + ' after boot, MB':<34}"
              + "".join(f"{results[s]['sizes'][what] / 1e6:>14.2f}" for s in sizes))


if __name__ == "__main__":
    main()
