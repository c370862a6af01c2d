"""Real-time tuning on fixture hosts: plan, journal, apply, restore.

Every test reads back the files kvmrt wrote (cpuN/online, smp_affinity_list,
Cpus_allowed_list, default_smp_affinity, the workqueue cpumask, cgroup
cpusets) and, after a release, compares the whole tree with a snapshot
taken before: restore means byte for byte.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hostgen
from kvmrt.config.file import load_config, parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.host.tasks import read_task
from kvmrt.placement import place
from kvmrt.tuning import engine, watcher
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.model import TunedVm

EXAMPLE = Path(__file__).parent.parent / "examples" / "threadripper-5975wx.cfg"
SHIELDED = set(range(8, 24)) | set(range(40, 56))
QEMU_PID = hostgen.REDHAWK_RT.pid


def tree(root: Path) -> dict[str, bytes | str]:
    """Every file (content) and link (target) below root, but kvmrt's journal."""
    out: dict[str, bytes | str] = {}
    for path in root.rglob("*"):
        rel = str(path.relative_to(root))
        if rel.startswith("run/kvmrt"):
            continue
        if path.is_symlink():
            out[rel] = os.readlink(path)
        elif path.is_file():
            out[rel] = path.read_bytes()
    return out


def changed(before: dict, after: dict) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def rt_vm(root: Path, text: str | None = None) -> TunedVm:
    vm = (parse_config(text).vms[0] if text else load_config(str(EXAMPLE)).vms[0])
    return TunedVm.of(place(vm, read_host(HostFS(root)).topology))


def read(root: Path, rel: str) -> str:
    return (root / rel).read_text().strip()


def cpulist(root: Path, rel: str) -> set[int]:
    from kvmrt.sets import IdSet
    return set(IdSet.parse(read(root, rel)))


@pytest.fixture
def tr(make_host):
    return make_host(hostgen.threadripper_cgroup_v1())


def test_boot_tunes_the_host_and_shutdown_restores_it_exactly(tr):
    fs, before = HostFS(tr), tree(tr)
    result = engine.tune(fs, rt_vm(tr))
    assert not result.failed and not result.refused
    # SMT siblings offline
    assert all(read(tr, f"sys/devices/system/cpu/cpu{c}/online") == "0" for c in range(40, 56))
    # every movable thread but the VM's own is off the shielded CPUs
    for t in (tr / "proc").glob("[0-9]*/task/[0-9]*"):
        pid, tid = int(t.parent.parent.name), int(t.name)
        task = read_task(fs, pid, tid)
        if pid == QEMU_PID:
            assert task.affinity == set(range(64)), "a running VM's threads are not moved"
        elif not task.pinned:
            assert not task.affinity & SHIELDED, task
    # IRQs, the default mask and the workqueue mask avoid them; vfio IRQ on CPU 23
    for irq in (tr / "proc/irq").glob("[0-9]*"):
        cpus = cpulist(tr, f"proc/irq/{irq.name}/smp_affinity_list")
        assert cpus == {23} if irq.name == "200" else not cpus & SHIELDED
    from kvmrt.host.irqs import read_default_affinity, read_workqueue_mask
    assert not read_default_affinity(fs) & SHIELDED and not read_workqueue_mask(fs) & SHIELDED

    engine.release(fs, [rt_vm(tr).uuid])
    assert changed(before, tree(tr)) == []
    assert not Journal.for_host(fs).path.exists()


def test_cgroup_v1_cpusets_come_back_after_siblings_return(tr):
    fs, before = HostFS(tr), tree(tr)
    engine.tune(fs, rt_vm(tr))
    for cpu in range(40, 56):          # what cgroup v1 does on offline
        hostgen.drop_from_cpusets(tr, cpu)
    group = "sys/fs/cgroup/cpuset/machine/cpuset.cpus"
    assert not cpulist(tr, group) & set(range(40, 56))
    engine.release(fs, [rt_vm(tr).uuid])
    # cpuset.effective_cpus is the kernel's to derive; a fixture cannot.
    assert [k for k in changed(before, tree(tr)) if "effective" not in k] == []
    assert cpulist(tr, group) == set(range(64))


def test_two_rt_vms_release_only_what_the_other_does_not_need(make_host):
    root = make_host(hostgen.threadripper_5975wx())
    fs, before = HostFS(root), tree(root)
    a = rt_vm(root, "[00000000-0000-4000-8000-00000000000a]\nname = a\ncpuset = 8-11\nrt = 1")
    b = rt_vm(root, "[00000000-0000-4000-8000-00000000000b]\nname = b\ncpuset = 16-19\nrt = 1")
    engine.tune(fs, a)
    engine.tune(fs, b)
    engine.release(fs, [a.uuid])
    assert read(root, "sys/devices/system/cpu/cpu40/online") == "1"
    assert read(root, "sys/devices/system/cpu/cpu48/online") == "0"
    nvme = cpulist(root, "proc/irq/29/smp_affinity_list")
    assert not nvme & (set(range(16, 20)) | set(range(48, 52))) and {8, 40} <= nvme
    engine.release(fs, [b.uuid])
    assert changed(before, tree(root)) == []


def test_dry_run_changes_nothing(tr):
    before = tree(tr)
    result = engine.tune(HostFS(tr), rt_vm(tr), dry_run=True)
    assert result.actions and changed(before, tree(tr)) == []
    assert not Journal.for_host(HostFS(tr)).path.exists()


def test_retune_repairs_disturbed_tuning(make_host):
    tr = make_host(hostgen.threadripper_5975wx())
    fs = HostFS(tr)
    vm = rt_vm(tr)
    engine.tune(fs, vm)
    (tr / "sys/devices/system/cpu/cpu41/online").write_text("1\n")        # a sibling back
    (tr / "proc/irq/29/smp_affinity_list").write_text("0-63\n")          # an IRQ back
    result = engine.tune(fs, vm)
    assert {a.label for a in result.actions} == {"CPU 41", "IRQ 29 (nvme0q0)"}
    assert read(tr, "sys/devices/system/cpu/cpu41/online") == "0"
    # the journal still knows the first baseline: release restores the original
    engine.release(fs, [vm.uuid])
    assert read(tr, "proc/irq/29/smp_affinity_list") == "0-63"


@pytest.fixture
def managed_irq(tr):
    """IRQ 30 refuses writes with EPERM, as a managed IRQ does on Linux 6.x,
    and stays readable: the file is made immutable (chattr +i) until the
    test ends."""
    with hostgen.immutable(tr / "proc/irq/30/smp_affinity_list") as refusing:
        if not refusing:
            pytest.skip("chattr +i is not supported on the file system of tmp_path")
        yield 30


def test_expected_refusals_are_reported_not_fatal(tr, managed_irq):
    fs, before = HostFS(tr), tree(tr)
    result = engine.tune(fs, rt_vm(tr))
    assert [r for r in result.refused if r.startswith("IRQ 30")]
    assert not result.failed
    assert "irq:30" in Journal.for_host(fs).load().refused
    # per-CPU kernel threads are left alone and said so
    assert any("per-CPU kernel threads stay" in n for n in result.notes)
    assert read(tr, "proc/101/task/101/status").count("Cpus_allowed_list") == 1
    engine.release(fs, [rt_vm(tr).uuid])
    assert changed(before, tree(tr)) == []


def test_a_vanished_thread_is_forgotten(tr):
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    import shutil
    shutil.rmtree(tr / "proc/5012")               # sshd exits while the VM runs
    result = engine.release(fs, [rt_vm(tr).uuid])
    assert not result.failed
    assert not Journal.for_host(fs).path.exists()


def test_a_value_changed_by_someone_else_is_left_alone(tr):
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    (tr / "proc/irq/29/smp_affinity_list").write_text("2\n")
    result = engine.release(fs, [rt_vm(tr).uuid])
    assert any("IRQ 29 (nvme0q0) was changed since kvmrt set it (now 2)" in n
               for n in result.notes)
    assert read(tr, "proc/irq/29/smp_affinity_list") == "2"


def test_vfio_irqs_that_appear_later_are_bound_by_the_watcher(tr):
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    # The guest driver enables MSI-X: a new vfio vector appears.
    hostgen.add_irq(tr, hostgen.threadripper_cgroup_v1(),
                    hostgen.IrqSpec(201, "vfio-msix[1](0000:21:00.0)", chip="PCI-MSIX"))
    moved, go_on = watcher.watch_once(fs, Journal.for_host(fs))
    assert go_on and moved == 1
    assert read(tr, "proc/irq/201/smp_affinity_list") == "23"
    engine.release(fs, [rt_vm(tr).uuid])
    assert watcher.watch_once(fs, Journal.for_host(fs)) == (0, False)   # nothing to watch


def test_sigkill_half_way_then_recovery_restores_exactly(tr):
    """kvmrt is killed in the middle of its writes; the next kvmrt command
    finds the journal and restores the host exactly.

    To stop the tuner at a known point, IRQ 31's smp_affinity_list is a FIFO:
    the test feeds it the original text once (the tuner's read), and the
    tuner's write then blocks, after the CPU, thread and earlier IRQ writes.
    """
    fs, before = HostFS(tr), tree(tr)
    irq_file = tr / "proc/irq/31/smp_affinity_list"
    original = irq_file.read_bytes()
    irq_file.unlink()
    os.mkfifo(irq_file)
    script = (f"import sys, pathlib; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
              "from test_tuning import rt_vm\nfrom kvmrt.host import HostFS\n"
              "from kvmrt.tuning import engine\n"
              f"root = pathlib.Path({str(tr)!r})\nengine.tune(HostFS(root), rt_vm(root))\n")
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        with open(irq_file, "wb") as fifo:     # blocks until the tuner reads
            fifo.write(original)
        journal = Journal.for_host(fs)
        deadline = time.monotonic() + 30
        while '"irq:31"' not in _text(journal.path) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)                         # it is now blocked writing IRQ 31
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    irq_file.unlink()
    irq_file.write_bytes(original)
    left = changed(before, tree(tr))
    assert "sys/devices/system/cpu/cpu40/online" in left and "proc/irq/29/smp_affinity_list" in left
    from kvmrt.status import leftovers
    assert leftovers(journal.load(), running=set())
    engine.recover(fs, running=set())
    assert changed(before, tree(tr)) == []
    assert not journal.path.exists()


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def test_two_socket_xeon_cycle_restores_exactly(make_host):
    """Package 1 of the two-socket Xeon (core_id repeats across packages)."""
    root = make_host(hostgen.xeon_2s20c2t())
    fs, before = HostFS(root), tree(root)
    vm = rt_vm(root, "[00000000-0000-4000-8000-0000000000c1]\nname = x\ncpuset = 20-27\nrt = 1")
    assert vm.offline == set(range(60, 68))
    result = engine.tune(fs, vm)
    assert not result.failed
    assert all(read(root, f"sys/devices/system/cpu/cpu{c}/online") == "0" for c in range(60, 68))
    assert read(root, "sys/devices/system/cpu/cpu20/online") == "1"
    for irq in (root / "proc/irq").glob("[0-9]*"):
        assert not cpulist(root, f"proc/irq/{irq.name}/smp_affinity_list") & vm.shielded
    engine.release(fs, [vm.uuid])
    assert changed(before, tree(root)) == []


def test_kernel_threads_only_on_shielded_cpus_move_user_threads_stay(make_host):
    """A node's kswapd (or a threaded IRQ handler) bound to the rt CPUs goes
    to the host CPUs; a user thread its owner pinned there is left alone."""
    spec = hostgen.threadripper_5975wx()
    extra = (hostgen.TaskSpec(116, "kswapd1", affinity=frozenset(range(8, 16)), kernel=True),
             hostgen.TaskSpec(6000, "pinned-app", affinity=frozenset({9})))
    root = make_host(dataclasses.replace(spec, tasks=hostgen.standard_tasks(spec) + extra))
    fs, before = HostFS(root), tree(root)
    result = engine.tune(fs, rt_vm(root))
    assert read_task(fs, 116, 116).affinity == set(range(64)) - SHIELDED
    assert read_task(fs, 6000, 6000).affinity == {9}
    assert any("thread 6000 (pinned-app) may only run on shielded CPUs 9" in n
               for n in result.notes)
    engine.release(fs, [rt_vm(root).uuid])
    assert changed(before, tree(root)) == []


def test_refresh_shields_the_threads_of_a_vm_started_beside(make_host):
    """A non-rt VM started while an rt VM is tuned: libvirt lets its QEMU run
    on every CPU; the refresh that kvmrt-boot runs after it shields them."""
    tr = make_host(hostgen.threadripper_5975wx())
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    hostgen.write_task(hostgen.Tree(tr), hostgen.threadripper_5975wx(),
                       hostgen.TaskSpec(8000, "qemu-system-x86"), 1)
    assert read_task(fs, 8000, 8000).affinity == set(range(64))
    result = engine.refresh(fs)
    assert [a.label for a in result.actions] == ["thread 8000 (qemu-system-x86)"]
    assert not read_task(fs, 8000, 8000).affinity & SHIELDED
    assert read_task(fs, QEMU_PID, QEMU_PID).affinity == set(range(64))  # the rt VM's own
