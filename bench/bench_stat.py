#!/usr/bin/env python3
"""How fast is kvmrt-stat -t on a host with thousands of threads?

Runs on THIS real host (root, /dev/kvm, a CPU 1, libvirtd: started with
scripts/start-libvirtd when it is not running, and only what that started is
stopped afterwards). It defines a throwaway disk-less domain kvmrt-bench-XXXXXXXX
(type kvm, 64 MiB, 2 vCPUs) and boots it with ``kvmrt-boot -f CFG`` from a
temporary kvmrt config (``cpuset = 1``, ``nr_vcpus = 2``; non-rt: an rt VM
needs 3 CPUs and this host may have only 2). The kvmrt state directory
(KVMRT_STATE_DIR) is a temporary one too, so no journal or lock of the host's
own /run/kvmrt is touched. Then it times, as a user runs them (a new process
each time, Python start-up included), median and best of several runs:

- ``kvmrt-stat -f CFG -t`` and ``kvmrt-stat -f CFG -t --json``,
- next to the peer ``ps -eLo tid,psr,comm`` (every thread of the host), and
  the bare interpreter start-up as the floor,
- and, in this process, ``kvmrt.tuning.engine.take_snapshot(HostFS('/'))``
  and the ``read_tasks(HostFS('/'))`` inside it,

first on the host as it is, then with a helper process of ours holding N
extra sleeping threads (--threads, default 2000), side by side.

What the rows mean: for a non-rt VM, the only threads ``stat -t`` reads
are the VM's own (``/proc/QEMU_PID/task/*/{stat,status}``, twice: once to
find iothreads, once for the list), so the host's thread count does not
move it. Measured on a 2-CPU host, nearly all of its ~0.15 s is Python
start-up and imports (libvirt, click, lxml: ~0.13 s); reading a handful of
QEMU threads takes well under a millisecond. With a *running rt VM* in the
selection, ``kvmrt.status.collect`` calls ``take_snapshot``, which reads
every thread of the host (plus IRQs, cpusets, vfio) to check the shielding;
that path is the one that scales with the host, and the take_snapshot row
measures it (an rt VM cannot be booted here, so it is timed in-process; add
the stat -t row's start-up to it for what ``stat -t`` would cost with an rt
VM).

Cleanup, always (finally, also on SIGTERM/SIGINT): the helper is killed by
its PID, the domain destroyed and undefined (only if this run defined it),
the temporary config and state directory removed, and libvirtd/virtlogd
stopped by PID if this run started them. Nothing of the host is changed:
kvmrt-stat only reads, kvmrt-boot of a non-rt VM only syncs and starts the
domain, and CPU 0 is never touched.

    sudo .venv/bin/python bench/bench_stat.py [--runs N] [--threads N]

The goal: kvmrt-stat -t stays fast (well under a second, within a small
factor of ps) on a host with thousands of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import fmt, timed, timed_call  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
URI = "qemu:///system"
PEER = ["ps", "-eLo", "tid,psr,comm"]

# The helper: N threads that block forever on an Event (a futex sleep), a
# small stack each; it exits when the bench closes its stdin (or dies).
HELPER = """\
import sys, threading
threading.stack_size(64 * 1024)
done = threading.Event()
for _ in range(int(sys.argv[1])):
    threading.Thread(target=done.wait, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc


def host_threads() -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                count += len(os.listdir(f"/proc/{pid}/task"))
            except OSError:
                pass
    return count


def check_host() -> None:
    if os.geteuid() != 0:
        sys.exit("bench_stat: needs root (libvirtd's QEMU driver, kvmrt-boot)")
    if not os.path.exists("/dev/kvm"):
        sys.exit("bench_stat: no /dev/kvm: cannot boot a KVM domain")
    if not os.path.exists("/sys/devices/system/cpu/cpu1"):
        sys.exit("bench_stat: needs a CPU 1 (the bench VM runs there, never on CPU 0)")


def start_helper(threads: int) -> subprocess.Popen:
    helper = subprocess.Popen([sys.executable, "-c", HELPER, str(threads)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if helper.stdout.readline().strip() != "ready":
        raise RuntimeError(f"the helper with {threads} threads did not start")
    return helper


def stop_helper(helper: subprocess.Popen | None) -> None:
    if helper is None:
        return
    try:
        os.kill(helper.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    helper.wait()
    for stream in (helper.stdin, helper.stdout):
        try:
            stream.close()
        except OSError:
            pass


def define_domain(xml_path: Path, name: str, uid: str) -> None:
    xml_path.write_text(
        f"<domain type='kvm'><name>{name}</name><uuid>{uid}</uuid>"
        "<memory unit='MiB'>64</memory><vcpu>2</vcpu>"
        "<os><type arch='x86_64'>hvm</type></os><devices/></domain>")
    sh("virsh", "-c", URI, "define", str(xml_path))


def measure(env: dict, cfg: Path, runs: int) -> dict[str, tuple[float, float]]:
    from kvmrt.host.fs import HostFS
    from kvmrt.host.tasks import read_tasks
    from kvmrt.tuning.engine import take_snapshot

    fs = HostFS("/")
    stat = [str(BIN / "kvmrt-stat"), "-f", str(cfg), "-t"]
    return {
        "threads": host_threads(),
        "python3 -c pass (interpreter start-up)": timed([sys.executable, "-c", "pass"], env, runs),
        " ".join(PEER): timed(PEER, env, runs),
        "kvmrt-stat -f CFG -t": timed(stat, env, runs),
        "kvmrt-stat -f CFG -t --json": timed([*stat, "--json"], env, runs),
        "take_snapshot(HostFS('/')) in-process": timed_call(lambda: take_snapshot(fs), runs),
        "  of which read_tasks(HostFS('/'))": timed_call(lambda: read_tasks(fs), runs),
    }


def vm_threads(env: dict, cfg: Path) -> int:
    out = sh(str(BIN / "kvmrt-stat"), "-f", str(cfg), "-t", "--json", env=env).stdout
    (vm,) = json.loads(out)
    roles = {t["role"] for t in vm["threads"]}
    if vm["state"] != "running" or not {"vCPU 0", "vCPU 1", "emulator"} <= roles:
        raise RuntimeError(f"kvmrt-stat -t does not show the bench VM's threads: {out}")
    return len(vm["threads"])


def _terminate(signum, frame):  # run the finally on SIGTERM too
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2000,
                        help="sleeping threads of the helper process (default 2000)")
    args = parser.parse_args()
    check_host()
    signal.signal(signal.SIGTERM, _terminate)

    name, uid = f"kvmrt-bench-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    tmp = Path(tempfile.mkdtemp(prefix="kvmrt-bench-stat-"))
    cfg = tmp / "kvmrt.cfg"
    env = {**os.environ, "LIBVIRT_DEFAULT_URI": URI, "KVMRT_STATE_DIR": str(tmp / "state")}
    env.pop("KVMRT_FSROOT", None)
    started: list[str] = []
    defined = False
    helper = None
    try:
        started = sh(str(ROOT / "scripts/start-libvirtd")).stdout.split()
        define_domain(tmp / f"{name}.xml", name, uid)
        defined = True
        cfg.write_text(f"[{uid}]\nname = {name}\ncpuset = 1\nnr_vcpus = 2\nautostart = yes\n")
        boot = sh(str(BIN / "kvmrt-boot"), "-f", str(cfg), env=env)
        if f"{name}: started" not in boot.stdout:
            raise RuntimeError(f"kvmrt-boot did not start {name}: {boot.stdout}{boot.stderr}")
        nr_vm_threads = vm_threads(env, cfg)

        before = measure(env, cfg, args.runs)
        helper = start_helper(args.threads)
        after = measure(env, cfg, args.runs)
    finally:
        stop_helper(helper)
        if defined:
            sh("virsh", "-c", URI, "destroy", name, check=False)
            sh("virsh", "-c", URI, "undefine", name, check=False)
        for pid in reversed(started):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass
        for path in sorted(tmp.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        tmp.rmdir()

    cols = (f"host: {before['threads']} thr", f"+{args.threads}: {after['threads']} thr")
    print(f"host: {os.cpu_count()} CPUs; VM {name}: non-rt, 2 vCPUs on CPU 1, "
          f"{nr_vm_threads} QEMU threads; {args.runs} runs each; median / best, seconds")
    print(f"{'command':<44}{cols[0]:>20}{cols[1]:>20}")
    for row in before:
        if row != "threads":
            print(f"{row:<44}{fmt(before[row]):>20}{fmt(after[row]):>20}")


if __name__ == "__main__":
    main()
