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

first on the host as it is, then with a helper process of ours holding
enough sleeping threads to bring the host to each count of --threads
(default 10000 and 30000 threads in all), side by side.

Timing starts once QEMU is idle (its firmware keeps one CPU busy for 3-4 s
after the start), and the runs of ps and of the rt path's text and JSON
(and of --baseline) are interleaved, a, b, c, a, b, c...: on a machine
shared with other work, one block of runs after another differs by up to
a third, which is what an earlier version of this bench showed as the text
table being 0.1-0.3 s slower than --json. In-process profiles of both
(cProfile, same host) differ by the table against the JSON writer: under
a millisecond.

The rt path of ``stat -t`` is timed as a user meets it too: a second config
names the same running domain ``rt = yes`` (RTCFG). kvmrt-stat then does
what it does for a running rt VM: it reads every thread of the host, the
IRQs, cpusets and vfio to check the shielding (it reports the VM as
disturbed, which is true: it was booted non-rt; nothing is changed). The
``rt / ps`` row is that time over ``ps -eLo tid,psr,comm`` in the same run:
the goal is at most 1.0.

30,000 threads need pid_max above that (32768 by default) and
``ulimit -u``/threads-max at least as large. A process may hold only about
21,000 threads (each takes 3 of its vm.max_map_count = 65530 mappings), so
the helper threads are spread over processes of at most 10,000 each.

What the other rows mean: for a non-rt VM, the only threads ``stat -t`` reads
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

    sudo .venv/bin/python bench/bench_stat.py --baseline /tmp/old/src
        (after: git archive OLD src | tar -x -C /tmp/old)

The goal (issue 14): kvmrt-stat -t with a running rt VM at most 1.0x ps at
10,000 and 30,000 threads.

Measured (2-CPU machine shared with other work, load average 3-4, 11
runs, median / best, s; --baseline: the code before the guest services'
modules were imported only where used, in the same run):

    threads                          10,000          30,000
    ps -eLo tid,psr,comm             0.541 / 0.484   1.531 / 1.106
    kvmrt-stat -f RTCFG -t           0.602 / 0.456   0.869 / 0.645
    kvmrt-stat -f RTCFG -t --json    0.545 / 0.447   0.875 / 0.590
    the same, --baseline             0.710 / 0.494   0.941 / 0.664
    rt / ps                          1.11 / 0.94     0.57 / 0.58
    baseline / ps                    1.31 / 1.02     0.62 / 0.60

On a quieter machine (load about 1, 7 runs): rt / ps 0.92 / 0.90 and
0.55 / 0.57, baseline / ps 1.13 / 1.02 and 0.51 / 0.61. The text and the
JSON cost the same (best of each within 2 % at every count, the medians
either way round from run to run); the guest services' modules no longer
loaded save ~40 ms of every kvmrt-stat (best: 0.144 against 0.185 s at 140
threads). What is left at 10,000 threads is mostly fixed cost: ~0.15 s of
start-up and imports (the non-rt row), against ps's ~0.35-0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import fmt, timed, timed_call, timed_side_by_side  # noqa: E402

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


PER_HELPER = 10000


def start_helpers(threads: int, helpers: list[subprocess.Popen]) -> None:
    """Processes holding ``threads`` sleeping threads in all, added to ``helpers``."""
    while threads > 0:
        count = min(threads, PER_HELPER)
        helper = subprocess.Popen([sys.executable, "-c", HELPER, str(count)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        helpers.append(helper)
        if helper.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the helper with {count} threads did not start")
        threads -= count


def stop_helpers(helpers: list[subprocess.Popen]) -> None:
    while helpers:
        stop_helper(helpers.pop())


def stop_helper(helper: subprocess.Popen) -> None:
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


RT_ROW = "kvmrt-stat -f RTCFG -t (rt VM: every thread)"
PEER_ROW = " ".join(PEER)
BASE_ROW = "the same, kvmrt from --baseline"


def measure(env: dict, cfg: Path, rtcfg: Path, runs: int,
            baseline: str | None = None) -> dict[str, tuple[float, float]]:
    from kvmrt.host.fs import HostFS
    from kvmrt.host.tasks import read_tasks
    from kvmrt.tuning.engine import take_snapshot

    fs = HostFS("/")
    stat = [str(BIN / "kvmrt-stat"), "-f", str(cfg), "-t"]
    rt_stat = [str(BIN / "kvmrt-stat"), "-f", str(rtcfg), "-t"]
    rows = {
        "threads": host_threads(),
        "python3 -c pass (interpreter start-up)": timed([sys.executable, "-c", "pass"], env, runs),
    }
    # ps, the text and the JSON of the rt path (and the baseline's text):
    # their runs interleaved, so that the machine's other work weighs on each alike.
    side = {PEER_ROW: PEER, RT_ROW: rt_stat, "kvmrt-stat -f RTCFG -t --json": [*rt_stat, "--json"]}
    if baseline:   # env(1) sets its PYTHONPATH: about 1 ms more
        side[BASE_ROW] = ["env", f"PYTHONPATH={baseline}", *rt_stat]
    ok = (0, *(stat_exit(env, cmd) for cmd in side.values()))
    rows |= dict(zip(side, timed_side_by_side(list(side.values()), env, runs, ok=ok)))
    rows |= {
        "kvmrt-stat -f CFG -t (non-rt VM: its threads)": timed(stat, env, runs),
        "take_snapshot(HostFS('/')) in-process": timed_call(lambda: take_snapshot(fs), runs),
        "  of which read_tasks(HostFS('/'))": timed_call(lambda: read_tasks(fs), runs),
    }
    rows["rt / ps (goal: at most 1.0)"] = ratio(rows[RT_ROW], rows[PEER_ROW])
    if baseline:
        rows["  baseline / ps"] = ratio(rows[BASE_ROW], rows[PEER_ROW])
    return rows


def ratio(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] / b[0], a[1] / b[1]


def stat_exit(env: dict, cmd: list[str]) -> int:
    """The exit status of ``cmd``, checked to have read the VM as rt."""
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if "Traceback" in proc.stderr or not proc.stdout:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    return proc.returncode


def vm_threads(env: dict, cfg: Path) -> int:
    out = sh(str(BIN / "kvmrt-stat"), "-f", str(cfg), "-t", "--json", env=env).stdout
    (vm,) = json.loads(out)
    roles = {t["role"] for t in vm["threads"]}
    if vm["state"] != "running" or not {"vCPU 0", "vCPU 1", "emulator"} <= roles:
        raise RuntimeError(f"kvmrt-stat -t does not show the bench VM's threads: {out}")
    return len(vm["threads"])


def wait_until_idle(pidfile: Path, timeout: float = 60.0) -> None:
    """Until QEMU has used less than a tenth of a CPU for half a second:
    the guest's firmware keeps one CPU (of this machine's 2) busy for
    3-4 s after the start, which would weigh on the first rows timed."""
    stat = Path(f"/proc/{pidfile.read_text().strip()}/stat")
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout

    def cpu() -> int:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])      # utime + stime

    before = cpu()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = cpu()
        if now - before < tick / 20:
            return
        before = now
    raise RuntimeError(f"QEMU ({pidfile}) still busy after {timeout:.0f} s")


def _terminate(signum, frame):  # run the finally on SIGTERM too
    raise SystemExit(128 + signum)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[10000, 30000],
                        help="threads of the host in all, the helper's added "
                             "(default 10000 30000)")
    parser.add_argument("--baseline", metavar="SRC",
                        help="also time the rt row with PYTHONPATH=SRC (an older "
                             "src/ of kvmrt, e.g. from git archive), in the same run")
    args = parser.parse_args()
    check_host()
    signal.signal(signal.SIGTERM, _terminate)

    name, uid = f"kvmrt-bench-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    tmp = Path(tempfile.mkdtemp(prefix="kvmrt-bench-stat-"))
    cfg, rtcfg = tmp / "kvmrt.cfg", tmp / "kvmrt-rt.cfg"
    env = {**os.environ, "LIBVIRT_DEFAULT_URI": URI, "KVMRT_STATE_DIR": str(tmp / "state")}
    env.pop("KVMRT_FSROOT", None)
    started: list[str] = []
    defined = False
    helpers: list[subprocess.Popen] = []
    try:
        started = sh(str(ROOT / "scripts/start-libvirtd")).stdout.split()
        define_domain(tmp / f"{name}.xml", name, uid)
        defined = True
        cfg.write_text(f"[{uid}]\nname = {name}\ncpuset = 1\nnr_vcpus = 2\nautostart = yes\n")
        rtcfg.write_text(cfg.read_text() + "rt = yes\n")
        boot = sh(str(BIN / "kvmrt-boot"), "-f", str(cfg), env=env)
        if f"{name}: started" not in boot.stdout:
            raise RuntimeError(f"kvmrt-boot did not start {name}: {boot.stdout}{boot.stderr}")
        nr_vm_threads = vm_threads(env, cfg)
        wait_until_idle(Path(f"/run/libvirt/qemu/{name}.pid"))

        results = [measure(env, cfg, rtcfg, args.runs, args.baseline)]
        for total in args.threads:
            start_helpers(total - host_threads(), helpers)
            results.append(measure(env, cfg, rtcfg, args.runs, args.baseline))
            stop_helpers(helpers)
    finally:
        stop_helpers(helpers)
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

    print(f"host: {os.cpu_count()} CPUs; VM {name}: booted non-rt, 2 vCPUs on CPU 1, "
          f"{nr_vm_threads} QEMU threads; {args.runs} runs each; median / best, seconds")
    print(f"{'command':<48}" + "".join(f"{str(r['threads']) + ' threads':>18}" for r in results))
    for row in results[0]:
        if row != "threads":
            print(f"{row:<48}" + "".join(f"{fmt(r[row]):>18}" for r in results))


if __name__ == "__main__":
    main()
