"""The end-to-end scenarios, run *inside* the simulated real-time host.

``tests/simhost.py`` boots the simulated host and runs, as root in it::

    python tests/simhost/scenarios.py NAME

after ``prelude.sh`` has started libvirtd. This program collects facts and
judges nothing: every fact is one JSON line ``{"key": K, "value": V}`` in
``$SIMHOST_OUT/results.jsonl`` (a directory shared with the host, so that
the lines cannot interleave with the console), and ``tests/test_simhost.py``
makes the assertions. Progress goes to stdout with the time since start.

Why Python and not a shell script: under TCG, starting Python and importing
kvmrt takes 6-15 s, more than most commands' own work. So the kvmrt
modules are imported once here, and each command runs in a forked child
that executes the installed console script (``.venv/bin/kvmrt-boot``...)
with ``runpy``: a separate process with its own exit status, stdout and
stderr, which can be SIGKILLed, running exactly the code a user runs.

Scenarios (see ``SCENARIOS`` at the end):

- ``default``: 8 CPUs, 2 nodes, SMT: the kernel parameters that
  kvmrt-validate-host suggests; an rt VM with ``cpuset = n1``: boot,
  disturb, repair; a pinned and an unpinned non-rt VM beside it; shutdown
  of all three; SIGKILL of kvmrt-boot half way and recovery; boot, PID 1
  allowed on every CPU while the siblings are offline, shutdown; the same
  with kvmrt-shutdown SIGKILLed half way, and recovery;
- ``two_rt``: 16 CPUs, 2 sockets: two rt VMs, one shut down, then the other;
- ``isolated``: booted with isolcpus/nohz_full/rcu_nocbs/irqaffinity:
  kvmrt-validate-host.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from guest import (T0, Child, allowed, define, destroy_all, emit, host_facts, journal, read,
                   run_tool, say, snapshot, stat_json, step, virsh, vm_threads, write,
                   write_config)

# What the commands need, imported once before any fork (see the docstring);
# the command modules import libvirt, the host readers and the tuning code
# only in their bodies, so those are named here too.
for _module in ("kvmrt.commands.boot", "kvmrt.commands.shutdown", "kvmrt.commands.show_config",
                "kvmrt.commands.stat", "kvmrt.commands.validate_host", "kvmrt.host",
                "kvmrt.host.tasks", "kvmrt.hostcheck", "kvmrt.libvirt_sync.connection",
                "kvmrt.libvirt_sync.domains", "kvmrt.lifecycle", "kvmrt.placement",
                "kvmrt.status", "kvmrt.tuning.engine", "kvmrt.tuning.journal",
                "kvmrt.tuning.watcher", "kvmrt.validate"):
    importlib.import_module(_module)


# --- scenarios ----------------------------------------------------------------

RT1 = "5e1b0001-0000-4000-8000-000000000001"
PLAIN = "5e1b0002-0000-4000-8000-000000000002"
FLOAT = "5e1b0003-0000-4000-8000-000000000003"
RTA = "5e1b000a-0000-4000-8000-00000000000a"
RTB = "5e1b000b-0000-4000-8000-00000000000b"


def scenario_default() -> None:
    """8 CPUs (4 cores x 2 threads), nodes 0-3 and 4-7."""
    cfg = write_config("/tmp/kvmrt.cfg", [
        (RT1, {"name": "rt1", "cpuset": "n1", "rt": "yes"}),
        (PLAIN, {"name": "plain", "cpuset": "2-3"}),
        (FLOAT, {"name": "float"}),
    ])
    define("rt1", RT1)
    define("plain", PLAIN)
    define("float", FLOAT)
    emit("host", host_facts())
    step("plan")
    r = run_tool("kvmrt-show-config", "-f", cfg, "--json")
    emit("plan", json.loads(r["out"]) if r["rc"] == 0 else r)
    r = run_tool("kvmrt-validate-host", "-f", cfg, "--json")
    emit("validate_host", {"rc": r["rc"], "json": _json(r["out"]), "err": r["err"]})

    # 1. boot the rt VM
    step("boot")
    emit("before", snapshot())
    emit("boot", run_tool("kvmrt-boot", "-f", cfg, "rt1"))
    emit("after_boot", snapshot())
    emit("vm_after_boot", vm_threads("rt1"))
    emit("journal_after_boot", journal())
    emit("stat_after_boot", stat_json(cfg, "rt1"))
    emit("stat_threads", run_tool("kvmrt-stat", "-f", cfg, "-t", "rt1"))

    # 2. disturb by hand (PID 1 and a new task allowed on a shielded CPU, an
    # IRQ put back on one, a sibling online), see it, repair it
    step("disturb")
    irq = _moved_irq()
    sleeper = subprocess.Popen(["sleep", "3600"])
    try:
        disturb = {"sleeper": sleeper.pid, "irq": irq,
                   "init_affinity_before": allowed(1),
                   "init_write": _setaffinity(1, {0, 1, 2, 3, 4}),
                   "init_affinity": allowed(1),
                   "sleeper_write": _setaffinity(sleeper.pid, {0, 1, 2, 3, 6}),
                   "sleeper_affinity": allowed(sleeper.pid),
                   "irq_affinity_before": read(f"/proc/irq/{irq}/smp_affinity_list"),
                   "irq_write": write(f"/proc/irq/{irq}/smp_affinity_list", "0-3,6"),
                   "irq_affinity": read(f"/proc/irq/{irq}/smp_affinity_list"),
                   "sibling_write": write("/sys/devices/system/cpu/cpu5/online", "1"),
                   "sibling_online": read("/sys/devices/system/cpu/cpu5/online")}
        emit("disturb", disturb)
        emit("stat_disturbed", stat_json(cfg, "rt1"))
        step("repair")
        emit("repair", run_tool("kvmrt-boot", "-f", cfg, "rt1"))
        emit("after_repair", snapshot())
        emit("vm_after_repair", vm_threads("rt1"))
        emit("stat_repaired", stat_json(cfg, "rt1"))
    finally:
        sleeper.kill()
        sleeper.wait()

    # 5. beside it a pinned non-rt VM, then an unpinned one
    step("side_by_side")
    emit("boot_plain", run_tool("kvmrt-boot", "-f", cfg, "plain"))
    emit("vm_side_rt1", vm_threads("rt1"))
    emit("vm_side_plain", vm_threads("plain"))
    emit("stat_side", stat_json(cfg, "rt1", "plain"))
    step("unpinned")
    emit("boot_float", run_tool("kvmrt-boot", "-f", cfg, "float"))
    emit("vm_float", vm_threads("float"))
    emit("stat_float", stat_json(cfg, "rt1"))
    emit("retune_float", run_tool("kvmrt-boot", "-f", cfg, "rt1"))
    emit("vm_float_retuned", vm_threads("float"))
    emit("vm_rt1_retuned", vm_threads("rt1"))
    emit("stat_float_retuned", stat_json(cfg, "rt1"))

    # 3. shutdown --force of all three restores exactly
    step("shutdown")
    emit("shutdown", run_tool("kvmrt-shutdown", "-f", cfg, "--force", "--timeout", "1"))
    emit("after_shutdown", snapshot())
    emit("journal_after_shutdown", journal())

    # 4. SIGKILL kvmrt-boot half way, then recover
    step("kill")
    emit("before_kill", snapshot())
    emit("killed", _kill_boot_half_way(cfg, irq))
    emit("after_kill", snapshot())
    emit("journal_after_kill", journal())
    emit("stat_after_kill", stat_json(cfg, "rt1"))
    step("recover")
    emit("recover", run_tool("kvmrt-shutdown", "-f", cfg))
    emit("after_recover", snapshot())
    emit("journal_after_recover", journal())

    # 7. an administrator allows PID 1 on every CPU while the siblings are
    # offline (the kernel keeps 0-4,6), then shutdown; then the same with
    # kvmrt-shutdown SIGKILLed once the first sibling is back, and recovery
    step("taskset")
    emit("before_taskset", snapshot())
    emit("taskset_boot", run_tool("kvmrt-boot", "-f", cfg, "rt1"))
    emit("taskset", _taskset_init())
    emit("taskset_shutdown", run_tool("kvmrt-shutdown", "-f", cfg, "--force", "--timeout", "1"))
    emit("after_taskset_shutdown", snapshot())
    emit("journal_after_taskset_shutdown", journal())
    step("kill_shutdown")
    emit("kill_shutdown_boot", run_tool("kvmrt-boot", "-f", cfg, "rt1"))
    emit("kill_shutdown_taskset", _taskset_init())
    emit("killed_shutdown", _kill_shutdown_half_way(cfg))
    emit("after_killed_shutdown", snapshot())
    emit("journal_after_killed_shutdown", journal())
    emit("recover_shutdown", run_tool("kvmrt-shutdown", "-f", cfg))
    emit("after_recover_shutdown", snapshot())
    emit("journal_after_recover_shutdown", journal())
    step("end")


def _taskset_init() -> dict:
    """``taskset -p -c 0-7 1``, as an administrator types it."""
    p = subprocess.run(["taskset", "-p", "-c", "0-7", "1"], capture_output=True, text=True)
    return {"rc": p.returncode, "out": p.stdout, "err": p.stderr, "allowed": allowed(1)}


def _kill_shutdown_half_way(cfg: str) -> dict:
    """kvmrt-shutdown --force, SIGKILLed as soon as CPU 5 is back online:
    the domain is off, the siblings are coming back, nothing else restored."""
    online = Path("/sys/devices/system/cpu/cpu5/online")
    return _kill_when(lambda: online.read_text().strip() == "1", "once CPU 5 is online",
                      "kvmrt-shutdown", "-f", cfg, "--force", "--timeout", "1")


def _setaffinity(pid: int, cpus: set[int]) -> str | None:
    try:
        os.sched_setaffinity(pid, cpus)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _moved_irq() -> str:
    """The lowest IRQ that kvmrt moved off the shielded CPUs (journaled, not refused)."""
    records = journal()
    refused = {r["key"] for r in records if r.get("op") == "refused"}
    moved = [r["key"] for r in records if r.get("op") == "old"
             and r.get("key", "").startswith("irq:") and r["key"] not in refused]
    if not moved:
        raise RuntimeError("kvmrt moved no IRQ")
    return min((k.split(":")[1] for k in moved), key=int)


def _kill_boot_half_way(cfg: str, irq: str) -> dict:
    """Start kvmrt-boot and SIGKILL it as soon as it has moved ``irq``: the
    siblings are offline and the threads moved by then (kvmrt changes CPUs,
    then threads, then IRQs, then the two masks), most IRQs and the masks
    are not done yet."""
    path = Path(f"/proc/irq/{irq}/smp_affinity_list")
    first = path.read_text()
    seen = _kill_when(lambda: path.read_text() != first, f"once IRQ {irq} moved",
                      "kvmrt-boot", "-f", cfg, "rt1")
    return {"irq": irq, **seen}


def _kill_when(moment, what: str, tool: str, *args: str) -> dict:
    """Run ``tool`` and SIGKILL it as soon as ``moment()`` is true."""
    say(f"$ {tool} {' '.join(args)} (to be killed {what})")
    child = Child(tool, *args)
    seen: dict = {}
    deadline = time.monotonic() + 300
    while True:
        if child.poll() is not None:
            seen["finished_before_kill"] = True
            break
        if moment() or time.monotonic() > deadline:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            seen["timeout"] = time.monotonic() > deadline
            break
        time.sleep(0.005)
    seen.update(child.result())
    seen["domain_state"] = virsh("domstate", "rt1", check=False).strip()
    say(f"  killed: {json.dumps({k: v for k, v in seen.items() if k not in ('out', 'err')})}")
    return seen


def scenario_two_rt() -> None:
    """16 CPUs: 2 sockets x 4 cores x 2 threads; node 0 = 0-7, node 1 = 8-15."""
    cfg = write_config("/tmp/kvmrt.cfg", [
        (RTA, {"name": "rta", "cpuset": "n1", "rt": "yes", "nr_vcpus": "2"}),
        (RTB, {"name": "rtb", "cpuset": "c1-c2", "rt": "yes"}),
    ])
    define("rta", RTA, vcpus=2)
    define("rtb", RTB)
    emit("host", host_facts())
    step("plan")
    r = run_tool("kvmrt-show-config", "-f", cfg, "--json")
    emit("plan", json.loads(r["out"]) if r["rc"] == 0 else r)
    step("boot")
    emit("before", snapshot())
    emit("boot", run_tool("kvmrt-boot", "-f", cfg, "rta", "rtb"))
    emit("after_boot", snapshot())
    emit("vm_rta", vm_threads("rta"))
    emit("vm_rtb", vm_threads("rtb"))
    emit("stat_after_boot", stat_json(cfg))
    step("shutdown_rtb")
    emit("shutdown_rtb", run_tool("kvmrt-shutdown", "-f", cfg, "--force", "--timeout", "1", "rtb"))
    emit("after_shutdown_rtb", snapshot())
    emit("vm_rta_after_rtb", vm_threads("rta"))
    emit("stat_after_shutdown_rtb", stat_json(cfg))
    step("shutdown_rta")
    emit("shutdown_rta", run_tool("kvmrt-shutdown", "-f", cfg, "--force", "--timeout", "1"))
    emit("after_shutdown", snapshot())
    emit("journal_after_shutdown", journal())
    step("end")


def scenario_isolated() -> None:
    """8 CPUs booted with the kernel parameters the config asks for."""
    cfg = write_config("/tmp/kvmrt.cfg", [(RT1, {"name": "rt1", "cpuset": "n1", "rt": "yes"})])
    emit("host", host_facts())
    step("validate_host")
    r = run_tool("kvmrt-validate-host", "-f", cfg, "--json")
    emit("validate_host", {"rc": r["rc"], "json": _json(r["out"]), "err": r["err"]})
    emit("validate_host_text", run_tool("kvmrt-validate-host", "-f", cfg))
    step("end")


SCENARIOS = {"default": scenario_default, "two_rt": scenario_two_rt,
             "isolated": scenario_isolated}


def main() -> int:
    name = sys.argv[1]
    say(f"scenario {name}: imports done")
    # Seconds since the guest kernel started: boot, prelude, Python, imports.
    emit("time:guest_uptime", float((read("/proc/uptime") or "0").split()[0]))
    emit("time:imports", round(time.monotonic() - T0, 1))
    domains = {"default": ["rt1", "plain", "float"], "two_rt": ["rta", "rtb"]}.get(name, [])
    try:
        SCENARIOS[name]()
    except BaseException:
        emit("error", traceback.format_exc())
        traceback.print_exc()
        return 1
    finally:
        destroy_all(domains)
    emit("done", True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
