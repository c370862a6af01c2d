"""Real time end to end on a simulated real-time host (issue 6).

A QEMU guest with a server-like topology runs Debian's PREEMPT_RT kernel,
libvirtd and kvmrt (``tests/simhost.py``). Each scenario group is ONE boot:
``tests/simhost/scenarios.py`` runs inside, collects facts (snapshots of
every IRQ, task affinity, CPU online file and mask, kvmrt's output and
exit status, the VMs' threads) and the tests below judge them:

- ``default_host``: 8 CPUs (1 socket x 4 cores x 2 threads), nodes 0-3 and
  4-7; an rt VM with ``cpuset = n1``: boot (1), disturb and repair (2), a
  pinned and an unpinned non-rt VM beside it (5), ``kvmrt-shutdown
  --force`` (3), SIGKILL of kvmrt-boot half way and recovery (4); boot,
  ``taskset -p -c 0-7 1`` while the siblings are offline, shutdown, and
  the same with kvmrt-shutdown SIGKILLed half way, then recovery (7);
- ``two_socket_host``: 16 CPUs (2 sockets); two rt VMs (5), one shut down,
  then the other;
- ``isolated_host``: 8 CPUs booted with the isolcpus/nohz_full/rcu_nocbs/
  irqaffinity that kvmrt-validate-host asks for (6).

Inner VMs are disk-less ``type='qemu'`` domains (64 MiB, no OS). Nothing
here touches this machine's CPUs or IRQs: all of it happens in the guest.
Skipped where the simulated host cannot run (see ``simhost.unavailable``);
``scripts/setup-simhost`` installs what it needs. Select with ``-m simhost``
(or leave out with ``-m 'not simhost'``).

What the real kernel does on its own, and the tests allow for: IRQ 0 and 2
refuse every affinity write (EIO); a threaded IRQ handler (irq/N-NAME, every
handler on PREEMPT_RT) follows its IRQ's effective CPU, which the kernel
picks; CPU hotplug resets node-bound kernel threads (kcompactdN, rcub/N) to
their node's online CPUs. kvmrt's planner models all of these (issue 10),
so none of them may show as "changed since kvmrt set it".

Each restore test prints the judge's counts (values compared and differing,
by kind; threads only the kernel moves shown apart) on the terminal and
appends them to ``restore-counts.txt`` in the boot's ``simhost-NAME*``
directory below pytest's basetemp.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

import simhost

pytestmark = pytest.mark.simhost

# The kernel parameters kvmrt-validate-host asks for on the default host with
# the config of the default scenario (rt VM on n1: usable CPUs 4 and 6,
# siblings 5 and 7), booted in scenario 6.
ISOLATED_CMDLINE = ("iommu=pt isolcpus=managed_irq,domain,4,6 nohz_full=4,6 "
                    "rcu_nocbs=4,6 irqaffinity=0-3")

_FOREIGN = re.compile(r"^(\d+) foreign threads allowed on shielded CPUs: (.*)$")
_NAMED = re.compile(r"(\S.*?)\[(\d+)\](?:, | and |$)")


# --- booting a scenario group ---------------------------------------------------

@dataclass
class Boot:
    """One boot of the simulated host and the facts its scenario left."""

    name: str
    status: int
    output: str
    seconds: float
    results: dict = field(default_factory=dict)
    out: Path | None = None      # the directory with its results.jsonl

    def __getitem__(self, key: str):
        if key not in self.results:
            raise AssertionError(f"the {self.name} scenario left no {key!r} "
                                 f"(error: {self.results.get('error')})\n{self.tail()}")
        return self.results[key]

    def tail(self, lines: int = 80) -> str:
        return "\n".join(self.output.splitlines()[-lines:])

    def times(self) -> str:
        """One line: the boot's seconds in all, then each step's."""
        marks = sorted((at, key[5:]) for key, at in self.results.items()
                       if key.startswith("time:") and key[5:] not in ("guest_uptime", "imports"))
        steps = ", ".join(f"{name} {later - at:.0f} s"
                          for (at, name), (later, _) in zip(marks, marks[1:]))
        return (f"simhost {self.name}: {self.seconds:.0f} s in all; guest kernel to "
                f"scenario start {self.results.get('time:guest_uptime', '?')} s (imports "
                f"{self.results.get('time:imports', '?')} s); {steps}")


def boot_scenario(request, tmp_path_factory, name: str, topology: simhost.Topology,
                  cmdline: str = "", *, libvirtd: bool = True) -> Boot:
    """Boot the simulated host once for scenario group ``name``.

    With ``KVMRT_SIMHOST_REPLAY=DIR`` nothing boots: the facts are read from
    ``DIR/NAME/results.jsonl`` (a copy of an earlier run's ``simhost-NAME*``
    directory below pytest's basetemp), to work on the assertions.
    """
    replay = os.environ.get("KVMRT_SIMHOST_REPLAY")
    if replay:
        out = Path(replay) / name
        if not (out / "results.jsonl").exists():
            pytest.skip(f"KVMRT_SIMHOST_REPLAY: no {out / 'results.jsonl'}")
        console = out / "console.log"
        boot = Boot(name, 0, console.read_text() if console.exists() else "", 0.0, out=out)
        return _load(boot, out)
    reason = simhost.unavailable(libvirtd=libvirtd)
    if reason:
        pytest.skip(f"simulated real-time host: {reason}")
    out = tmp_path_factory.mktemp(f"simhost-{name}")
    start, earlier = time.monotonic(), ""
    for attempt in (1, 2):
        status, output = simhost.run(f"python tests/simhost/scenarios.py {name}", topology,
                                     cmdline, libvirtd=libvirtd, out=out, timeout=1800)
        if status == 0 or (out / "results.jsonl").exists():
            break
        # The guest died (vng says only 255; its kernel's last words are in
        # the output) or hung (killed at the boot timeout) before the
        # scenario began. Both were seen, rarely, under TCG on loaded
        # machines, without a cause in kvmrt: boot once more.
        earlier += f"--- attempt {attempt}: exit {status} before the scenario began\n{output}"
        (out / simhost.BOOTED).unlink(missing_ok=True)
    boot = _load(Boot(name, status, earlier + output, time.monotonic() - start, out=out), out)
    _report(request, boot.times() + (" (booted twice)" if earlier else ""))
    (out / "console.log").write_text(boot.output)
    if status != 0 or not boot.results.get("done"):
        pytest.fail(f"the {name} scenario did not finish (exit {status}; console in "
                    f"{out / 'console.log'}):\n{boot.results.get('error') or ''}\n"
                    f"{boot.tail()}", pytrace=False)
    return boot


def _report(request, line: str) -> None:
    """A line on the terminal now, past pytest's output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


def _load(boot: Boot, out: Path) -> Boot:
    results = out / "results.jsonl"
    if results.exists():
        for line in results.read_text().splitlines():
            record = json.loads(line)
            boot.results[record["key"]] = record["value"]
    return boot


@pytest.fixture(scope="module")
def default_host(request, tmp_path_factory) -> Boot:
    return boot_scenario(request, tmp_path_factory, "default", simhost.DEFAULT)


@pytest.fixture(scope="module")
def two_socket_host(request, tmp_path_factory) -> Boot:
    return boot_scenario(request, tmp_path_factory, "two_rt", simhost.TWO_SOCKET)


@pytest.fixture(scope="module")
def isolated_host(request, tmp_path_factory) -> Boot:
    return boot_scenario(request, tmp_path_factory, "isolated", simhost.DEFAULT,
                         ISOLATED_CMDLINE, libvirtd=False)


# --- reading the facts ----------------------------------------------------------

def cpus(text: str | None) -> set[int]:
    """A kernel cpulist (``0-3,6``)."""
    found: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if part:
            first, _, last = part.partition("-")
            found.update(range(int(first), int(last or first) + 1))
    return found


def mask(text: str | None) -> set[int]:
    """A kernel hex CPU mask (``0f``, ``00000000,000000ff``)."""
    value = int((text or "0").replace(",", ""), 16)
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def vm_plan(boot: Boot, name: str) -> dict:
    return next(vm for vm in boot["plan"] if vm["name"] == name)


def stat_of(boot: Boot, key: str, name: str) -> dict:
    r = boot[key]
    assert r["rc"] == 0 and r["json"] is not None, r
    return next(s for s in r["json"] if s["name"] == name)


def by_identity(snap: dict) -> dict:
    return {(t["tid"], t["start"]): t for t in snap["tasks"]}


def kernel_follows_irq(task: dict) -> bool:
    """A threaded IRQ handler (PREEMPT_RT threads every handler). The kernel
    sets its affinity to its IRQ's effective CPU whenever the IRQ fires
    (irq_thread_check_affinity), and the effective CPU is the kernel's
    choice: an IRQ that fired while shielded keeps its new effective CPU
    after its smp_affinity_list is restored (virtio0-requests: 0-7 before
    and after, effective CPU 5 before, 1 after), and so does its thread."""
    return task["kthread"] and task["comm"].startswith("irq/")


def kernel_only(task: dict) -> bool:
    """A thread that only the kernel moves: a threaded IRQ handler, or one
    with PF_NO_SETAFFINITY (kvmrt cannot write it). The kernel moves some
    of the latter itself: a workqueue's rescuer (mm_percpu_wq) binds to the
    CPU whose pool it rescues (seen: 1, then 0, then 6 across one boot)."""
    return kernel_follows_irq(task) or task["pinned"]


def compared_values(before: dict, after: dict) -> Iterator[tuple[str, str, object, object]]:
    """(kind, what, before, after) of every value kvmrt may change that
    both snapshots hold (threads and IRQs that exist in both). Kind
    ``kernel-only`` marks the threads only the kernel moves: shown, never
    a restore difference."""
    for key in ("default_smp_affinity", "workqueue_cpumask"):
        yield "masks", key, before[key], after[key]
    yield "CPU online", "online", before["online"], after["online"]
    for cpu, old in before["online_files"].items():
        yield "CPU online", f"cpu{cpu}/online", old, after["online_files"].get(cpu)
    for irq, old in before["irqs"].items():
        new = after["irqs"].get(irq)
        if new is not None:
            yield "IRQs", f"IRQ {irq} ({old['name']}): smp_affinity_list", \
                old["affinity"], new["affinity"]
    old_tasks = by_identity(before)
    for t in after["tasks"]:
        old = old_tasks.get((t["tid"], t["start"]))
        if old is not None:
            yield ("kernel-only" if kernel_only(t) else "threads"), \
                f"thread {t['tid']} ({t['comm']})", old["allowed"], t["allowed"]
    for group, old in before.get("cpusets", {}).items():
        new = after.get("cpusets", {}).get(group)
        if new is not None:
            yield "cpusets", f"cpuset /{group}", old, new


def restore_differences(before: dict, after: dict) -> list[str]:
    """Every value that kvmrt may change and that is not back at its exact
    earlier text (threads and IRQs that exist in both snapshots)."""
    return [f"{what}: {old!r} -> {new!r}" for kind, what, old, new
            in compared_values(before, after) if old != new and kind != "kernel-only"]


def restore_counts(before: dict, after: dict) -> str:
    """``threads 150 (0 differ), IRQs 41 (0 differ), ...``: how many values
    of each kind the judge compared and how many are not as before."""
    counts: dict[str, list[int]] = {}
    moved = []
    for kind, what, old, new in compared_values(before, after):
        seen = counts.setdefault(kind, [0, 0])
        seen[0] += 1
        seen[1] += old != new
        if old != new and kind == "kernel-only":
            moved.append(f"{what} {old} -> {new}")
    text = ", ".join(f"{kind} {n} ({d} differ)" for kind, (n, d) in counts.items())
    return (f"{text}; restore differences (kernel-only not counted): "
            f"{len(restore_differences(before, after))}"
            + (f"; moved by the kernel: {', '.join(moved)}" if moved else ""))


def report_restore(request, boot: Boot, sequence: str, before: str, after: str) -> None:
    """The judge's counts for ``sequence``, on the terminal and in the
    boot's ``restore-counts.txt`` (next to its results.jsonl)."""
    line = f"simhost {boot.name}, {sequence}: {restore_counts(boot[before], boot[after])}"
    _report(request, line)
    if boot.out is not None:
        with open(boot.out / "restore-counts.txt", "a") as f:
            f.write(line + "\n")


def shield_problems(snap: dict, plans: list[dict], own_pids: set[int],
                    refused_irqs: set[str]) -> list[str]:
    """Does the host hold what the rt VMs ask (SPEC 3): their siblings
    offline, no movable thread, IRQ or mask on their shielded CPUs?"""
    shielded = set().union(*(set(p["shielded_cpus"]) for p in plans))
    offline = set().union(*(set(p["offline_cpus"]) for p in plans))
    problems = []
    for cpu, state in snap["online_files"].items():
        want = "0" if int(cpu) in offline else "1"
        if state is not None and state != want:
            problems.append(f"CPU {cpu} online={state}, want {want}")
    for t in snap["tasks"]:
        if t["pid"] not in own_pids and not t["pinned"] and cpus(t["allowed"]) & shielded:
            problems.append(f"thread {t['tid']} ({t['comm']}) allowed on {t['allowed']}")
    for irq, i in snap["irqs"].items():
        if irq in refused_irqs:
            continue
        if cpus(i["affinity"]) & shielded or cpus(i["effective"]) & shielded:
            problems.append(f"IRQ {irq} ({i['name']}) affinity {i['affinity']}, "
                            f"effective {i['effective']}")
    for key in ("default_smp_affinity", "workqueue_cpumask"):
        if mask(snap[key]) & shielded:
            problems.append(f"{key} {snap[key]} includes shielded CPUs")
    return problems


def placement_problems(vm: dict | None, plan: dict) -> list[str]:
    """vCPU i alone on its planned CPU; every other QEMU thread on the
    emulator CPUs, never on a vCPU's."""
    if vm is None:
        return [f"{plan['name']} is not running (no libvirt status file)"]
    problems = []
    vcpus = {int(k): v for k, v in vm["vcpus"].items()}
    if len(vcpus) != plan["nr_vcpus"]:
        problems.append(f"{len(vcpus)} vCPU threads, planned {plan['nr_vcpus']}")
    vcpu_cpus = set().union(*(set(c) for c in plan["vcpu_cpus"]))
    emulator = set(plan["emulator_cpus"])
    for t in vm["threads"]:
        have = cpus(t["allowed"])
        ids = [n for n, tid in vcpus.items() if tid == t["tid"]]
        if ids:
            if have != set(plan["vcpu_cpus"][ids[0]]):
                problems.append(f"vCPU {ids[0]} ({t['comm']}) on {t['allowed']}, planned "
                                f"{plan['vcpu_cpus'][ids[0]]}")
        elif not have <= emulator or have & vcpu_cpus:
            problems.append(f"thread {t['tid']} ({t['comm']}) on {t['allowed']}, "
                            f"emulator CPUs {sorted(emulator)}")
    return problems


def refused(journal: list[dict]) -> set[str]:
    return {r["key"].split(":")[1] for r in journal
            if r.get("op") == "refused" and r.get("key", "").startswith("irq:")}


def foreign_line(problems: list[str]) -> tuple[int, list[tuple[str, str]]]:
    """(count, [(comm, tid)...]) of kvmrt-stat's foreign-threads problem."""
    for p in problems:
        m = _FOREIGN.match(p)
        if m:
            return int(m.group(1)), _NAMED.findall(m.group(2))
    return 0, []


# --- the simulated host itself ---------------------------------------------------

def check_host(boot: Boot, ncpus: int, packages: set[str]) -> None:
    h = boot["host"]
    assert h["realtime"] == "1" and "PREEMPT_RT" in h["version"], h
    assert len(h["siblings"]) == ncpus
    assert all(len(cpus(s)) == 2 for s in h["siblings"].values()), h["siblings"]
    assert len(h["nodes"]) == 2 and set(h["packages"].values()) == packages
    assert not h["cpu0_online_file"]   # as on real x86 servers


def test_default_host_is_a_preempt_rt_smt_numa_server(default_host):
    check_host(default_host, 8, {"0"})


def test_two_socket_host_is_a_preempt_rt_smt_numa_server(two_socket_host):
    check_host(two_socket_host, 16, {"0", "1"})


# --- 1. an rt VM with cpuset = n1 boots ----------------------------------------

def test_rt_vm_boot_offlines_siblings_pins_threads_and_shields(default_host):
    b = default_host
    plan = vm_plan(b, "rt1")
    assert plan["cpuset"] == [4, 5, 6, 7] and plan["offline_cpus"] == [5, 7]
    assert b["boot"]["rc"] == 0 and "rt1: started" in b["boot"]["out"], b["boot"]
    assert b["after_boot"]["online"] == "0-4,6"
    assert placement_problems(b["vm_after_boot"], plan) == []
    # Every movable thread (kswapd1, kcompactd1 and the threaded IRQ handlers
    # of PREEMPT_RT included), every IRQ and both masks avoid CPUs 4-7.
    assert shield_problems(b["after_boot"], [plan], {b["vm_after_boot"]["pid"]},
                           refused(b["journal_after_boot"])) == []
    # IRQ 0 (timer) and 2 (cascade) refuse every write: reported, not failed.
    assert refused(b["journal_after_boot"]) <= {"0", "2"}
    stat = stat_of(b, "stat_after_boot", "rt1")
    assert (stat["state"], stat["tuning"], stat["problems"]) == ("running", "ok", [])
    assert "vCPU 0" in b["stat_threads"]["out"] and "CPU 0/TCG" in b["stat_threads"]["out"]


# --- 2. disturbed by hand: stat says so and what; boot repairs ------------------

def test_disturbance_is_reported_and_kvmrt_boot_repairs_it(default_host):
    b = default_host
    d, plan = b["disturb"], vm_plan(b, "rt1")
    assert [d["init_write"], d["sleeper_write"], d["irq_write"], d["sibling_write"]] == \
        [None] * 4, d
    assert (d["init_affinity"], d["sleeper_affinity"], d["irq_affinity"],
            d["sibling_online"]) == ("0-4", "0-3,6", "0-3,6", "1")

    stat = stat_of(b, "stat_disturbed", "rt1")
    assert stat["tuning"] == "disturbed"
    assert "SMT siblings back online: CPUs 5" in stat["problems"]
    assert f"IRQs on shielded CPUs: {d['irq']}" in stat["problems"]
    count, named = foreign_line(stat["problems"])
    tids = [tid for _comm, tid in named]
    # PID 1 and the new task, by name (the line names the first five).
    assert "1" in tids and (str(d["sleeper"]) in tids or count > 5), stat["problems"]

    assert b["repair"]["rc"] == 0 and "rt1: retuned" in b["repair"]["out"], b["repair"]
    snap = b["after_repair"]
    assert snap["online_files"]["5"] == "0"
    assert snap["irqs"][d["irq"]]["affinity"] == d["irq_affinity_before"]
    tasks = {t["tid"]: t for t in snap["tasks"]}
    assert tasks[1]["allowed"] == d["init_affinity_before"]
    assert tasks[d["sleeper"]]["allowed"] == "0-3"
    # The VM itself was not moved: the same threads, on the planned CPUs.
    assert placement_problems(b["vm_after_repair"], plan) == []
    assert b["vm_after_repair"]["vcpus"] == b["vm_after_boot"]["vcpus"]
    assert shield_problems(snap, [plan], {b["vm_after_repair"]["pid"]},
                           refused(b["journal_after_boot"])) == []
    assert stat_of(b, "stat_repaired", "rt1")["tuning"] == "ok"


# --- 3. kvmrt-shutdown --force restores exactly ------------------------------------

def test_shutdown_force_restores_every_value_exactly(default_host, request):
    b = default_host
    report_restore(request, b, "boot -> disturb -> repair -> shutdown --force",
                   "before", "after_shutdown")
    out = b["shutdown"]
    assert out["rc"] == 0, out
    for name in ("rt1", "plain", "float"):
        assert f"{name}: did not stop within 1 s; powered off" in out["out"].splitlines()
    assert "host: restored" in out["out"]
    assert "was changed since kvmrt set it" not in out["out"] + out["err"], out
    assert restore_differences(b["before"], b["after_shutdown"]) == []
    assert b["journal_after_shutdown"] == []
    # The comparison covered the whole host, not a handful of values.
    assert len(b["before"]["irqs"]) > 20 and len(b["before"]["tasks"]) > 100


# --- 4. SIGKILL of kvmrt-boot half way, then recovery ------------------------------

def test_sigkill_half_way_then_recovery_restores_exactly(default_host, request):
    b = default_host
    report_restore(request, b, "kvmrt-boot SIGKILLed -> kvmrt-shutdown recovers",
                   "before_kill", "after_recover")
    k = b["killed"]
    assert k["rc"] == -9 and not k.get("finished_before_kill") and not k.get("timeout"), k
    assert k["domain_state"] == "shut off"
    before, at_kill = b["before_kill"], b["after_kill"]
    # Half way: siblings offline, threads moved, the watched IRQ moved; the
    # default IRQ mask (written last but one) not yet.
    assert at_kill["online"] == "0-4,6"
    assert at_kill["irqs"][k["irq"]]["affinity"] != before["irqs"][k["irq"]]["affinity"]
    assert at_kill["default_smp_affinity"] == before["default_smp_affinity"]
    ops = [r.get("op") for r in b["journal_after_kill"]]
    assert "vm" in ops and "old" in ops

    warning = b["stat_after_kill"]["err"]
    assert "host changes are still in place for rt1" in warning, warning
    assert b["recover"]["rc"] == 0 and "recovered:" in b["recover"]["out"], b["recover"]
    assert "was changed since kvmrt set it" not in b["recover"]["out"] + b["recover"]["err"]
    assert restore_differences(before, b["after_recover"]) == []
    assert b["journal_after_recover"] == []


# --- 5. non-rt beside rt; two rt VMs on the 16-CPU host --------------------------------

def test_rt_vm_beside_a_pinned_non_rt_vm(default_host):
    b = default_host
    assert b["boot_plain"]["rc"] == 0 and "plain: started" in b["boot_plain"]["out"]
    assert placement_problems(b["vm_side_plain"], vm_plan(b, "plain")) == []
    assert placement_problems(b["vm_side_rt1"], vm_plan(b, "rt1")) == []
    plain = stat_of(b, "stat_side", "plain")
    assert (plain["state"], plain["tuning"], plain["problems"]) == ("running", None, [])
    rt1 = stat_of(b, "stat_side", "rt1")
    assert (rt1["state"], rt1["tuning"], rt1["problems"]) == ("running", "ok", [])


def test_unpinned_non_rt_vm_booted_beside_an_rt_vm_is_kept_off_its_cpus(default_host):
    """libvirt lets an unpinned QEMU run on every online CPU; kvmrt-boot
    shields the new VM's threads from the tuned rt VM, and a later retune of
    the rt VM keeps them so without moving the VM's vCPU elsewhere."""
    b = default_host
    shielded = set(vm_plan(b, "rt1")["shielded_cpus"])
    assert b["boot_float"]["rc"] == 0 and "float: started" in b["boot_float"]["out"]
    for key in ("vm_float", "vm_float_retuned"):
        assert [t for t in b[key]["threads"] if cpus(t["allowed"]) & shielded] == [], key
    assert stat_of(b, "stat_float", "rt1")["tuning"] == "ok"
    assert b["retune_float"]["rc"] == 0, b["retune_float"]
    assert b["vm_float_retuned"]["vcpus"] == b["vm_float"]["vcpus"]   # the same QEMU
    assert placement_problems(b["vm_rt1_retuned"], vm_plan(b, "rt1")) == []
    assert stat_of(b, "stat_float_retuned", "rt1")["tuning"] == "ok"


def test_two_rt_vms_on_two_sockets(two_socket_host):
    b = two_socket_host
    rta, rtb = vm_plan(b, "rta"), vm_plan(b, "rtb")
    assert rta["cpuset"] == list(range(8, 16)) and rta["nr_vcpus"] == 2
    assert rtb["cpuset"] == [2, 3, 4, 5]
    assert b["boot"]["rc"] == 0, b["boot"]
    assert b["after_boot"]["online"] == "0-2,4,6-8,10,12,14"
    assert placement_problems(b["vm_rta"], rta) == []
    assert placement_problems(b["vm_rtb"], rtb) == []
    own = {b["vm_rta"]["pid"], b["vm_rtb"]["pid"]}
    assert shield_problems(b["after_boot"], [rta, rtb], own, {"0", "2"}) == []
    for name in ("rta", "rtb"):
        stat = stat_of(b, "stat_after_boot", name)
        assert (stat["state"], stat["tuning"], stat["problems"]) == ("running", "ok", [])


def test_two_rt_vms_shutting_one_down_keeps_the_other_tuned(two_socket_host):
    b = two_socket_host
    rta = vm_plan(b, "rta")
    assert b["shutdown_rtb"]["rc"] == 0, b["shutdown_rtb"]
    snap, before = b["after_shutdown_rtb"], b["before"]
    shielded = set(rta["shielded_cpus"])
    # What rtb alone asked for is back; rta's shield and siblings hold.
    assert snap["online"] == "0-8,10,12,14"
    for irq, old in before["irqs"].items():
        if irq not in ("0", "2") and irq in snap["irqs"]:
            want = cpus(old["affinity"]) - shielded or cpus(old["affinity"])
            assert cpus(snap["irqs"][irq]["affinity"]) == want, (irq, old)
    assert mask(snap["default_smp_affinity"]) == mask(before["default_smp_affinity"]) - shielded
    old_tasks = by_identity(before)
    for t in snap["tasks"]:
        old = old_tasks.get((t["tid"], t["start"]))
        if old is None or t["pinned"] or kernel_follows_irq(t) or \
                t["pid"] == b["vm_rta"]["pid"]:
            continue
        base = cpus(old["allowed"])
        # A kernel thread allowed only on rta's CPUs (kswapd1, kcompactd1)
        # goes to the host's CPUs; any other thread just loses rta's CPUs.
        want = base - shielded or (set(range(16)) - shielded if t["kthread"] else base)
        assert cpus(t["allowed"]) == want, (t, old)
    assert placement_problems(b["vm_rta_after_rtb"], rta) == []
    assert shield_problems(snap, [rta], {b["vm_rta"]["pid"]}, {"0", "2"}) == []
    stat = stat_of(b, "stat_after_shutdown_rtb", "rta")
    assert (stat["state"], stat["tuning"], stat["problems"]) == ("running", "ok", [])
    assert stat_of(b, "stat_after_shutdown_rtb", "rtb")["state"] == "shut off"


def test_releasing_one_rt_vm_blames_nobody_for_refused_irqs(two_socket_host):
    """IRQ 0 and 2 refused every write (EIO): kvmrt never set them, so
    releasing one of two rt VMs has nobody to blame for their value."""
    notes = two_socket_host["shutdown_rtb"]["out"] + two_socket_host["shutdown_rtb"]["err"]
    assert "was changed since kvmrt set it" not in notes, notes


def test_two_rt_vms_shutdown_restores_exactly(two_socket_host, request):
    b = two_socket_host
    report_restore(request, b, "two rt VMs booted -> shut down one by one",
                   "before", "after_shutdown")
    assert b["shutdown_rta"]["rc"] == 0, b["shutdown_rta"]
    assert restore_differences(b["before"], b["after_shutdown"]) == []
    assert b["journal_after_shutdown"] == []


# --- 7. an administrator's "all CPUs" while siblings are offline ----------------

def test_affinity_set_to_all_cpus_while_siblings_offline_gets_them_back(default_host,
                                                                        request):
    """``taskset -p -c 0-7 1`` while kvmrt keeps 5 and 7 offline leaves PID 1
    on 0-4,6 (the kernel allows only online CPUs); shutdown gives the
    siblings back, and every value on the host is as before boot."""
    b = default_host
    report_restore(request, b, "boot -> taskset -p -c 0-7 1 -> shutdown",
                   "before_taskset", "after_taskset_shutdown")
    assert b["taskset_boot"]["rc"] == 0, b["taskset_boot"]
    t = b["taskset"]
    assert (t["rc"], t["allowed"]) == (0, "0-4,6"), t
    out = b["taskset_shutdown"]
    assert out["rc"] == 0, out
    assert "was changed since kvmrt set it" not in out["out"] + out["err"], out
    assert restore_differences(b["before_taskset"], b["after_taskset_shutdown"]) == []
    assert {t["tid"]: t["allowed"] for t in b["after_taskset_shutdown"]["tasks"]}[1] == "0-7"
    assert b["journal_after_taskset_shutdown"] == []


def test_sigkill_half_way_through_shutdown_then_recovery_restores_exactly(default_host,
                                                                          request):
    b = default_host
    report_restore(request, b, "boot -> taskset -> kvmrt-shutdown SIGKILLed -> recovery",
                   "before_taskset", "after_recover_shutdown")
    assert b["kill_shutdown_boot"]["rc"] == 0, b["kill_shutdown_boot"]
    assert b["kill_shutdown_taskset"]["allowed"] == "0-4,6"
    k = b["killed_shutdown"]
    assert k["rc"] == -9 and not k.get("finished_before_kill") and not k.get("timeout"), k
    assert k["domain_state"] == "shut off"
    assert b["after_killed_shutdown"]["online_files"]["5"] == "1"
    assert b["journal_after_killed_shutdown"] != []
    r = b["recover_shutdown"]
    assert r["rc"] == 0 and "recovered:" in r["out"], r
    assert "was changed since kvmrt set it" not in r["out"] + r["err"], r
    assert restore_differences(b["before_taskset"], b["after_recover_shutdown"]) == []
    assert b["journal_after_recover_shutdown"] == []


# --- 6. boot parameters matching the config ------------------------------------------

def test_validate_host_asks_for_the_parameters_scenario_6_boots_with(default_host):
    v = default_host["validate_host"]["json"]
    assert v is not None, default_host["validate_host"]
    assert set(v["kernel_cmdline"].split()) == set(ISOLATED_CMDLINE.split())
    checks = {c["id"]: c["status"] for c in v["checks"]}
    assert checks["preempt-rt"] == "PASS"
    for check in ("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity"):
        assert checks[check] == "WARN", (check, v)


def test_validate_host_passes_on_a_host_booted_with_them(isolated_host):
    b = isolated_host
    host = b["host"]
    for param in ISOLATED_CMDLINE.split():
        assert param in host["cmdline"].split()
    assert (host["isolated"], host["nohz_full"]) == ("4,6", "4,6")
    v = b["validate_host"]["json"]
    assert v is not None, b["validate_host"]
    checks = {c["id"]: c for c in v["checks"]}
    for check in ("preempt-rt", "isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity",
                  "iommu-pt", "irq-remapping", "smt-siblings"):
        assert checks[check]["status"] == "PASS", checks[check]
    # Nothing left to add to the kernel command line for the config.
    for param in ISOLATED_CMDLINE.split():
        assert param not in (v.get("kernel_cmdline") or "").split()
