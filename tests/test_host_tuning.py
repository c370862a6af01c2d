"""The host adapters real-time tuning reads and writes through: masks, tasks,
IRQs, CPU hotplug, cgroup v1 cpusets, libvirt's QEMU status.

Two halves. On fixture hosts (hostgen trees) every function is exercised
and what was written is read back, including each named outcome. On this
real host (root only) the same functions really change threads, IRQs, CPU 1
and cpusets, and put every one of them back in a finalizer, whatever the
test's outcome. CPU 0 is never touched; only threads and IRQs a test
created, or restores exactly, are changed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import hostgen
from kvmrt.sets import PciAddress
from kvmrt.errors import (HostReadError, HostWriteError, IrqRefused, NotMovable,
                          OfflineRefused, SetSyntaxError, TaskVanished)
from kvmrt.host import cgroups, cpuctl, irqs, qemu, tasks
from kvmrt.host.fs import HostFS
from kvmrt.host.masks import format_mask, mask_bits, parse_mask, read_mask

ROOT = Path(__file__).resolve().parent.parent
CPU = "sys/devices/system/cpu"
ALL_64 = frozenset(range(64))


def by_comm(found: list[tasks.Task], comm: str) -> tasks.Task:
    return next(t for t in found if t.comm == comm)


# == masks ====================================================================
@pytest.mark.parametrize("text, nbits, cpus", [
    ("3", 2, {0, 1}),
    ("0", 4, set()),
    ("ffffffff,ffffffff", 64, set(range(64))),
    ("ff,ffffffff", 40, set(range(40))),
    ("00000001,00000000", 64, {32}),
    ("1,00000000", 33, {32}),
    ("0000000f", 32, {0, 1, 2, 3}),
])
def test_mask_format_is_the_kernels(text: str, nbits: int, cpus: set[int]) -> None:
    assert format_mask(cpus, nbits) == text
    assert parse_mask(text + "\n") == cpus
    assert mask_bits(text) == (nbits + 3) // 4 * 4


@given(st.frozensets(st.integers(0, 300)), st.integers(1, 320))
def test_mask_round_trip(cpus: frozenset[int], nbits: int) -> None:
    assert parse_mask(format_mask(cpus, nbits)) == cpus


@pytest.mark.parametrize("bad", ["", "xyz", "0x3", "3 4", ","])
def test_malformed_mask_names_the_text(bad: str) -> None:
    with pytest.raises(SetSyntaxError):
        parse_mask(bad)


def test_read_mask_names_the_file(small: Path) -> None:
    fs = HostFS(small)
    fs.write("proc/irq/default_smp_affinity", "zz")
    with pytest.raises(HostReadError) as err:
        read_mask(fs, "proc/irq/default_smp_affinity")
    assert err.value.path.endswith("proc/irq/default_smp_affinity")
    assert read_mask(fs, "proc/nosuch") is None


# == tasks on fixture hosts =====================================================
def test_read_tasks_classifies_kernel_and_user_threads(threadripper: Path) -> None:
    found = tasks.read_tasks(HostFS(threadripper))
    assert by_comm(found, "kthreadd") == tasks.Task(
        pid=2, tid=2, comm="kthreadd", affinity=ALL_64, last_cpu=0, starttime=22,
        kernel=True, pinned=False)
    soft = by_comm(found, "ksoftirqd/5")
    assert (soft.kernel, soft.pinned, soft.affinity, soft.last_cpu) == (True, True, {5}, 5)
    unbound = next(t for t in found if t.comm.startswith("kworker/u"))
    assert unbound.pinned and unbound.affinity == ALL_64, "pinned, yet on every CPU"
    libvirtd = [t for t in found if t.pid == hostgen.LIBVIRTD]
    assert [t.tid for t in libvirtd] == [5120, 5121, 5122, 5123, 5124]
    assert not any(t.kernel or t.pinned for t in libvirtd)
    assert len([t for t in found if t.comm.startswith("migration/")]) == 64


def test_comm_with_spaces_and_parentheses(make_host) -> None:
    odd = ("CPU 0/KVM", "(sd-pam)", "a) b (c", "")
    spec = dataclasses.replace(hostgen.small_4c1t(), tasks=tuple(
        hostgen.TaskSpec(1, comm, tid=1 + i) for i, comm in enumerate(odd)))
    found = tasks.read_tasks(HostFS(make_host(spec)))
    assert [t.comm for t in found] == list(odd)
    assert {t.affinity for t in found} == {frozenset(range(4))}


def test_read_tasks_of_given_pids_skips_vanished_ones(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    found = tasks.read_tasks(fs, [hostgen.REDHAWK_RT.pid, 99999])
    assert [t.comm for t in found] == ["qemu-system-x86", "qemu-system-x86", "IO mon_iothread",
                                       "CPU 0/KVM", "CPU 1/KVM", "CPU 2/KVM", "CPU 3/KVM",
                                       "kvm-nx-lpage-re", f"vhost-{hostgen.REDHAWK_RT.pid}"]
    assert {t.pid for t in found} == {hostgen.REDHAWK_RT.pid}
    # The kernel's threads in QEMU: PF_USER_WORKER, not PF_KTHREAD.
    assert [t for t in found if t.worker] == found[-2:] and not any(t.kernel for t in found)


def test_read_tasks_without_proc_is_a_host_read_error(make_host) -> None:
    root = make_host(hostgen.big(8, 1, 1))
    with pytest.raises(HostReadError, match="procfs"):
        tasks.read_tasks(HostFS(root))


def test_set_affinity_rewrites_status(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    main = tasks.read_task(fs, hostgen.LIBVIRTD, hostgen.LIBVIRTD)
    worker = tasks.read_task(fs, hostgen.LIBVIRTD, hostgen.LIBVIRTD + 1)
    tasks.set_affinity(fs, main, frozenset({0, 1, 32, 33}))
    tasks.set_affinity(fs, worker, frozenset({63}))
    assert tasks.read_task(fs, main.pid, main.tid).affinity == {0, 1, 32, 33}
    assert tasks.read_task(fs, worker.pid, worker.tid).affinity == {63}
    status = fs.read(f"proc/{main.pid}/task/{main.tid}/status")
    assert "Cpus_allowed:\t00000003,00000003\n" in status
    assert "Cpus_allowed_list:\t0-1,32-33\n" in status
    worker_status = fs.read(f"{tasks.task_dir(worker.pid, worker.tid)}/status")
    assert "Cpus_allowed:\t80000000,00000000" in worker_status


def test_pinned_thread_is_not_movable(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    soft = by_comm(tasks.read_tasks(fs), "ksoftirqd/5")
    with pytest.raises(NotMovable) as err:
        tasks.set_affinity(fs, soft, frozenset({0}))
    assert (err.value.tid, err.value.comm) == (soft.tid, "ksoftirqd/5")
    assert tasks.read_task(fs, soft.pid, soft.tid).affinity == {5}


def test_thread_that_exits_between_read_and_write_vanishes(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    vcpu = tasks.read_task(fs, hostgen.REDHAWK_RT.pid, hostgen.REDHAWK_RT.pid + 4)
    shutil.rmtree(fs.path(tasks.task_dir(vcpu.pid, vcpu.tid)))
    with pytest.raises(TaskVanished) as err:
        tasks.set_affinity(fs, vcpu, frozenset({8}))
    assert err.value.tid == vcpu.tid
    with pytest.raises(TaskVanished):
        tasks.read_task(fs, vcpu.pid, vcpu.tid)
    assert vcpu.tid not in {t.tid for t in tasks.read_tasks(fs)}


def test_reused_tid_is_another_thread(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    sshd = tasks.read_task(fs, hostgen.SSHD, hostgen.SSHD)
    rel = f"{tasks.task_dir(sshd.pid, sshd.tid)}/stat"
    fs.write(rel, fs.read(rel).replace(f" {sshd.starttime} ", " 999999 ", 1))
    with pytest.raises(TaskVanished):
        tasks.set_affinity(fs, sshd, frozenset({1}))
    assert tasks.read_task(fs, sshd.pid, sshd.tid).affinity == ALL_64


def test_empty_affinity_is_a_caller_error(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    with pytest.raises(ValueError):
        tasks.set_affinity(fs, tasks.read_task(fs, 1, 1), frozenset())


# == IRQs on fixture hosts ======================================================
def test_read_irqs_with_names_and_effective_cpus(threadripper: Path) -> None:
    found = {i.number: i for i in irqs.read_irqs(HostFS(threadripper))}
    assert found[0] == irqs.Irq(0, ALL_64, frozenset({0}), "timer")
    assert found[24].name == "PCIe PME, aerdrv"
    assert found[29].name == "nvme0q0"
    assert found[200].name == "vfio-msi[0](0000:21:00.0)"
    assert sorted(found) == [0, 1, 8, 9] + list(range(24, 32)) + [200]


def test_set_irq_affinity_reads_back_and_returns_effective(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    assert irqs.set_irq_affinity(fs, 25, frozenset({0, 1, 2, 3})) == {25}
    fs.write("proc/irq/25/effective_affinity_list", "2")  # what the kernel would choose
    assert irqs.set_irq_affinity(fs, 25, frozenset({2, 3})) == {2}
    assert next(i for i in irqs.read_irqs(fs) if i.number == 25).affinity == {2, 3}


def test_irq_without_effective_file(make_host) -> None:
    spec = dataclasses.replace(hostgen.small_4c1t(), irqs=(
        hostgen.IrqSpec(11, "virtio0-input.0", effective_file=False),))
    fs = HostFS(make_host(spec))
    (irq,) = irqs.read_irqs(fs)
    assert (irq.affinity, irq.effective) == ({0, 1, 2, 3}, None)
    assert irqs.set_irq_affinity(fs, 11, frozenset({3})) is None


@pytest.mark.parametrize("error, reason", [("EIO", "Input/output error"),
                                           ("EPERM", "Operation not permitted")])
def test_managed_irq_refuses(threadripper: Path, error: str, reason: str) -> None:
    fs = HostFS(threadripper)
    hostgen.refuse_irq_writes(threadripper, 30, error)
    with pytest.raises(IrqRefused) as err:
        irqs.set_irq_affinity(fs, 30, frozenset({0}))
    assert (err.value.irq, err.value.reason) == (30, reason)
    assert irqs.set_irq_affinity(fs, 31, frozenset({0})) == {31}, "others still move"


def test_freed_irq_is_a_host_write_error(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    shutil.rmtree(fs.path("proc/irq/200"))
    with pytest.raises(HostWriteError) as err:
        irqs.set_irq_affinity(fs, 200, frozenset({8}))
    assert err.value.path == str(fs.path("proc/irq/200/smp_affinity_list"))
    with pytest.raises(ValueError):
        irqs.set_irq_affinity(fs, 25, frozenset())


def test_default_affinity_and_workqueue_mask_keep_the_width(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    assert irqs.read_default_affinity(fs) == ALL_64
    irqs.write_default_affinity(fs, frozenset(range(8)))
    assert fs.read("proc/irq/default_smp_affinity") == "00000000,000000ff"
    assert irqs.read_default_affinity(fs) == set(range(8))
    assert irqs.read_workqueue_mask(fs) == ALL_64
    irqs.write_workqueue_mask(fs, frozenset({0, 63}))
    assert fs.read("sys/devices/virtual/workqueue/cpumask") == "80000000,00000001"
    assert irqs.read_workqueue_mask(fs) == {0, 63}


def test_kernel_without_workqueue_mask(legacy: Path) -> None:
    fs = HostFS(legacy)
    assert irqs.read_workqueue_mask(fs) is None
    with pytest.raises(HostWriteError) as err:
        irqs.write_workqueue_mask(fs, frozenset({0}))
    assert err.value.path.endswith("sys/devices/virtual/workqueue/cpumask")


def test_default_affinity_absent_is_a_host_read_error(make_host) -> None:
    with pytest.raises(HostReadError):
        irqs.read_default_affinity(HostFS(make_host(hostgen.big(8, 1, 1))))


def test_vfio_irqs_by_device(make_host) -> None:
    dom = dataclasses.replace(hostgen.REDHAWK_RT, pcidevs=(
        "0000:21:00.0", "0000:22:00.0", "0000:22:00.1", "0000:01:00.0"))
    fs = HostFS(make_host(dataclasses.replace(hostgen.threadripper_5975wx(), domains=(dom,))))
    assert irqs.vfio_irqs(fs) == {
        PciAddress.parse("0000:21:00.0"): [200], PciAddress.parse("0000:22:00.0"): [201],
        PciAddress.parse("0000:22:00.1"): [202], PciAddress.parse("0000:01:00.0"): [203, 204]}
    assert irqs.vfio_irqs(HostFS(make_host(hostgen.xeon_2s20c2t()))) == {}


INTERRUPTS = """\
            CPU0       CPU1
   0:         44          0  IR-IO-APIC    2-edge      timer
   7:          0          0   IO-APIC   7-fasteoi
  11:          0          0  GICv3  27 Level     arch_timer
  12:          0          0  XT-PIC  -edge      cascade
  13:          0          0  XT-PIC  rtc0
  36:          0    2105606 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0
 121: 1234567890 1234567890 IR-PCI-MSI 524288-edge      vfio-intx(0000:03:00.0), nvme0q0
 122:          3          0  IR-PCI-MSIX-0000:21:00.0    0-edge      vfio-msix[0](0000:21:00.0)
NMI:          0          0   Non-maskable interrupts
ERR:          0
"""


def test_parse_interrupts_takes_the_actions_column() -> None:
    assert irqs.parse_interrupts(INTERRUPTS) == {
        0: "timer", 7: "", 11: "arch_timer", 12: "cascade", 13: "rtc0", 36: "virtio1-req.0",
        121: "vfio-intx(0000:03:00.0), nvme0q0", 122: "vfio-msix[0](0000:21:00.0)"}


def test_parse_interrupts_with_fewer_counts_than_cpus() -> None:
    """A line with fewer counts than the header has CPUs keeps its columns."""
    text = INTERRUPTS.replace("            CPU0       CPU1", "   CPU0   CPU1   CPU2")
    assert irqs.parse_interrupts(text)[121] == "vfio-intx(0000:03:00.0), nvme0q0"
    assert irqs.parse_interrupts(text)[13] == "rtc0"
    assert irqs.parse_interrupts(INTERRUPTS)[13] == "rtc0", "a second text is parsed anew"


def test_parse_interrupts_where_a_number_or_nothing_stands_before_the_last_column() -> None:
    """Found from the right, the actions column must not be a count, a chip
    alone, or the flow; a number of the chip's columns before it is no count."""
    text = ("            CPU0       CPU1\n  5:          0          0\n"
            "  6:          0          0  XT-PIC\n  7:          0          0  GICv3  27      foo\n"
            "  8:          0          0  IO-APIC    1-edge\n  9: 1 2 3\n")
    assert irqs.parse_interrupts(text) == {5: "", 6: "", 7: "foo", 8: "", 9: ""}


def test_interrupt_counts_per_line_and_online_cpu() -> None:
    """The counts the dashboard's rates come from, read by the same reader
    as the actions: the header names the CPUs (an offline one is absent)."""
    text = INTERRUPTS.replace("            CPU0       CPU1", "            CPU0       CPU2")
    cpus, counts = irqs.interrupt_counts(text)
    assert cpus == [0, 2]
    assert counts["0"] == [44, 0] and counts["36"] == [0, 2105606]
    assert counts["121"] == [1234567890, 1234567890]
    assert counts["NMI"] == [0, 0] and counts["ERR"] == [0]
    assert irqs.interrupt_counts("") == ([], {})


# == CPU hotplug on fixture hosts ===============================================
def test_set_online_writes_and_reads_back(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    cpuctl.set_online(fs, 33, False)
    assert fs.read(f"{CPU}/cpu33/online") == "0" and not cpuctl.is_online(fs, 33)
    cpuctl.set_online(fs, 33, True)
    assert cpuctl.is_online(fs, 33)


def test_cpu_without_online_file_cannot_go_offline(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    with pytest.raises(OfflineRefused) as err:
        cpuctl.set_online(fs, 0, False)
    assert err.value.cpu == 0 and "cannot take it offline" in err.value.reason
    assert str(err.value).startswith("CPU 0: the kernel cannot take it offline")
    assert cpuctl.is_online(fs, 0)
    cpuctl.set_online(fs, 0, True)  # already online: nothing to do


def test_offline_cpu_reads_offline(offline_host: Path) -> None:
    fs = HostFS(offline_host)
    assert not cpuctl.is_online(fs, 5) and cpuctl.is_online(fs, 4)
    cpuctl.set_online(fs, 5, True)
    assert cpuctl.is_online(fs, 5)


def test_online_file_that_reads_back_otherwise(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    path = fs.path(f"{CPU}/cpu7/online")
    path.unlink()
    path.symlink_to("/dev/null")  # takes the write, reads back nothing
    with pytest.raises(HostWriteError, match="reads back"):
        cpuctl.set_online(fs, 7, False)


# == cgroup v1 cpusets on fixture hosts =========================================
VM = "machine/qemu-1-RedHawk-8.4-RT.libvirt-qemu"


def test_read_cpusets(threadripper_v1: Path) -> None:
    fs = HostFS(threadripper_v1)
    found = cgroups.read_cpusets(fs)
    assert list(found)[:3] == ["", "machine", VM]
    assert set(found) >= {f"{VM}/emulator", f"{VM}/vcpu3"}
    assert set(found.values()) == {ALL_64}


def test_no_v1_cpusets_on_cgroup_v2(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    assert cgroups.read_cpusets(fs) == {}
    hostgen.Tree(threadripper).write("sys/fs/cgroup/cpuset/cpuset.cpus", "0-3")
    hostgen.Tree(threadripper).write("sys/fs/cgroup/cpuset/cgroup.controllers", "cpuset")
    assert cgroups.read_cpusets(fs) == {}, "a v2 cgroup called cpuset is not v1"


def test_write_cpuset_reads_back(threadripper_v1: Path) -> None:
    fs = HostFS(threadripper_v1)
    cgroups.write_cpuset(fs, f"{VM}/vcpu0", frozenset({8, 9}))
    assert cgroups.read_cpusets(fs)[f"{VM}/vcpu0"] == {8, 9}
    with pytest.raises(HostWriteError):
        cgroups.write_cpuset(fs, "machine/nosuch", frozenset({1}))


def test_restore_after_cpus_went_offline(threadripper_v1: Path) -> None:
    root = threadripper_v1
    fs = HostFS(root)
    before = cgroups.read_cpusets(fs)
    for cpu in (40, 41):
        cpuctl.set_online(fs, cpu, False)
        hostgen.drop_from_cpusets(root, cpu)  # what cgroup v1 does
        cpuctl.set_online(fs, cpu, True)
    lost = cgroups.read_cpusets(fs)
    assert lost[""] == ALL_64 and lost["machine"] == ALL_64 - {40, 41}
    changed = cgroups.restore_cpusets(fs, before)
    assert changed == [g for g in before if g], "parents first, the root left to the kernel"
    assert cgroups.read_cpusets(fs) == before


def test_restore_skips_vanished_and_matching_groups(threadripper_v1: Path) -> None:
    fs = HostFS(threadripper_v1)
    wanted = cgroups.read_cpusets(fs)
    cgroups.write_cpuset(fs, f"{VM}/vcpu1", frozenset({1}))
    shutil.rmtree(fs.path(cgroups.cpuset_dir(f"{VM}/vcpu2")))
    assert cgroups.restore_cpusets(fs, wanted) == [f"{VM}/vcpu1"]
    assert cgroups.read_cpusets(fs) == {g: c for g, c in wanted.items() if g != f"{VM}/vcpu2"}


def test_restore_narrows_and_widens(threadripper_v1: Path) -> None:
    fs = HostFS(threadripper_v1)
    wanted = {"machine": frozenset(range(8, 16)), VM: frozenset(range(8, 12)),
              f"{VM}/vcpu0": frozenset({8}), f"{VM}/emulator": frozenset({11})}
    assert cgroups.restore_cpusets(fs, wanted) == ["machine", VM, f"{VM}/emulator", f"{VM}/vcpu0"]
    assert {g: c for g, c in cgroups.read_cpusets(fs).items() if g in wanted} == wanted


# == libvirt status on fixture hosts ============================================
def test_read_qemu_status(threadripper: Path) -> None:
    dom = hostgen.REDHAWK_RT
    status = qemu.read_qemu_status(HostFS(threadripper), dom.name)
    assert status == qemu.QemuStatus(pid=dom.pid, vcpus=dom.vcpu_tids(), iothreads={})
    assert status.vcpus == {0: 7004, 1: 7005, 2: 7006, 3: 7007}
    assert qemu.read_qemu_status(HostFS(threadripper), "not-running") is None


def test_iothreads_from_qemus_thread_names_or_the_status(make_host) -> None:
    dom = hostgen.DomainSpec("io-vm", pid=8000, vcpus=1, iothreads=2)
    root = make_host(dataclasses.replace(hostgen.small_4c1t(), domains=(dom,)))
    fs = HostFS(root)
    assert qemu.read_qemu_status(fs, "io-vm") == qemu.QemuStatus(
        pid=8000, vcpus={0: 8005}, iothreads={1: 8002, 2: 8003})
    xml = fs.read("run/libvirt/qemu/io-vm.xml").replace(
        "<vcpus>", "<iothreads>\n    <iothread id='1' pid='8003'/>\n  </iothreads>\n  <vcpus>")
    fs.write("run/libvirt/qemu/io-vm.xml", xml)
    assert qemu.read_qemu_status(fs, "io-vm").iothreads == {1: 8003}


def test_stale_status_of_a_dead_qemu_is_not_running(threadripper: Path) -> None:
    shutil.rmtree(threadripper / f"proc/{hostgen.REDHAWK_RT.pid}")
    assert qemu.read_qemu_status(HostFS(threadripper), hostgen.REDHAWK_RT.name) is None


@pytest.mark.parametrize("text", ["<domstatus", "<domain pid='1'/>", "<domstatus/>",
                                  "<domstatus pid='x'/>"])
def test_malformed_status_names_the_file(threadripper: Path, text: str) -> None:
    fs = HostFS(threadripper)
    fs.write(f"run/libvirt/qemu/{hostgen.REDHAWK_RT.name}.xml", text)
    with pytest.raises(HostReadError) as err:
        qemu.read_qemu_status(fs, hostgen.REDHAWK_RT.name)
    assert err.value.path.endswith("RedHawk-8.4-RT.xml")
    with pytest.raises(HostReadError, match="not a libvirt domain name"):
        qemu.read_qemu_status(fs, "../etc")


# == this real host ==============================================================
real_host = pytest.mark.skipif(os.geteuid() != 0, reason="changes the real host: needs root")
REAL = HostFS("/")


def hotpluggable_cpu1() -> None:
    if not REAL.exists(f"{CPU}/cpu1/online"):
        pytest.skip("this host has no CPU 1 that the kernel can take offline")
    if not cpuctl.is_online(REAL, 1):
        pytest.skip("CPU 1 is offline; this test does not change that")


@pytest.fixture
def own_thread():
    """A thread of this process that waits; its affinity is put back afterwards."""
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=lambda: (ready.set(), stop.wait()), name="kvmrt-test")
    thread.start()
    ready.wait()
    # Not REAL.write: it ends the text with a newline, which comm would keep.
    Path(f"/proc/{os.getpid()}/task/{thread.native_id}/comm").write_text("kvmrt-test")
    original = os.sched_getaffinity(thread.native_id)
    yield thread.native_id
    try:
        os.sched_setaffinity(thread.native_id, original)
    finally:
        stop.set()
        thread.join()


@real_host
def test_real_thread_affinity_round_trip(own_thread: int) -> None:
    hotpluggable_cpu1()
    task = tasks.read_task(REAL, os.getpid(), own_thread)
    assert (task.comm, task.kernel, task.pinned) == ("kvmrt-test", False, False)
    original = task.affinity
    tasks.set_affinity(REAL, task, frozenset({1}))
    assert tasks.read_task(REAL, os.getpid(), own_thread).affinity == {1}
    assert os.sched_getaffinity(own_thread) == {1}
    tasks.set_affinity(REAL, task, original)
    assert tasks.read_task(REAL, os.getpid(), own_thread).affinity == original
    assert own_thread in {t.tid for t in tasks.read_tasks(REAL, [os.getpid()])}


@real_host
def test_real_slash_spelled_otherwise_is_the_running_kernel(own_thread: int) -> None:
    hotpluggable_cpu1()
    fs = HostFS("/proc/..")
    task = tasks.read_task(fs, os.getpid(), own_thread)
    tasks.set_affinity(fs, task, frozenset({1}))
    assert os.sched_getaffinity(own_thread) == {1}
    assert tasks.read_task(fs, os.getpid(), own_thread).affinity == {1}


@real_host
def test_real_process_that_exited_vanishes() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        task = tasks.read_task(REAL, child.pid, child.pid)
        assert task.comm == "sleep"
    finally:
        child.kill()
        child.wait()
    with pytest.raises(TaskVanished):
        tasks.set_affinity(REAL, task, frozenset({0}))


@real_host
def test_real_per_cpu_kernel_thread_is_not_movable() -> None:
    found = [t for t in tasks.read_tasks(REAL) if t.comm in ("ksoftirqd/1", "migration/1")]
    if not found:
        pytest.skip("no ksoftirqd/1 or migration/1 (single-CPU host?)")
    thread = found[0]
    assert thread.kernel and thread.pinned and thread.affinity == {1}
    with pytest.raises(NotMovable) as err:
        tasks.set_affinity(REAL, thread, thread.affinity)  # even its own value: no write
    assert err.value.comm == thread.comm
    assert tasks.read_task(REAL, thread.pid, thread.tid).affinity == {1}


@pytest.fixture
def own_cpusets():
    """A cpuset kvmrt-test-*/child of our own (v1), removed afterwards."""
    if not cgroups.has_cpuset_v1(REAL):
        yield None
        return
    parent = f"kvmrt-test-{uuid.uuid4().hex[:8]}"
    made: list[str] = []
    try:
        for group in (parent, f"{parent}/child"):
            os.mkdir(REAL.path(cgroups.cpuset_dir(group)))
            made.append(group)
            REAL.write(f"{cgroups.cpuset_dir(group)}/cpuset.mems", "0")
            cgroups.write_cpuset(REAL, group, frozenset({0, 1}))
        yield parent
    finally:
        for group in reversed(made):
            os.rmdir(REAL.path(cgroups.cpuset_dir(group)))


@pytest.fixture
def cpu1_hotplug(own_cpusets):
    """Record cpusets and thread affinities; afterwards CPU 1 is online and all
    of them are as recorded, whatever happened in the test."""
    hotpluggable_cpu1()
    cpusets = cgroups.read_cpusets(REAL)
    affinity = {(t.tid, t.starttime): t for t in tasks.read_tasks(REAL) if not t.pinned}
    yield cpusets, own_cpusets
    try:
        if not cpuctl.is_online(REAL, 1):
            cpuctl.set_online(REAL, 1, True)
    finally:
        cgroups.restore_cpusets(REAL, cpusets)
        restore_affinities(affinity)


def restore_affinities(recorded: dict[tuple[int, int], tasks.Task]) -> None:
    """Put back threads whose affinity the hotplug changed (v1 cpusets move
    the tasks of a cpuset that lost a CPU)."""
    for now in tasks.read_tasks(REAL):
        was = recorded.get((now.tid, now.starttime))
        if was is not None and now.affinity != was.affinity:
            try:
                tasks.set_affinity(REAL, now, was.affinity)
            except TaskVanished:
                continue


@real_host
def test_real_cpu1_offline_online_and_cpuset_restore(cpu1_hotplug) -> None:
    before, own = cpu1_hotplug
    cpuctl.set_online(REAL, 1, False)
    assert not cpuctl.is_online(REAL, 1)
    assert 1 not in REAL.read_cpulist(f"{CPU}/online")
    cpuctl.set_online(REAL, 1, True)
    assert cpuctl.is_online(REAL, 1)
    if not before:
        pytest.skip("no cgroup v1 cpuset hierarchy: nothing to restore")
    after = cgroups.read_cpusets(REAL)
    lost = sorted(g for g in before if 1 in before[g] and g in after and 1 not in after[g])
    assert "" not in lost, "the root cpuset follows the online CPUs"
    assert own in lost and f"{own}/child" in lost, "cgroup v1 does not give CPU 1 back"
    wanted = {**before, own: frozenset({0, 1}), f"{own}/child": frozenset({0, 1})}
    assert set(lost) <= set(cgroups.restore_cpusets(REAL, wanted))
    now = cgroups.read_cpusets(REAL)
    assert {g: now[g] for g in wanted if g in now} == {g: wanted[g] for g in wanted if g in now}


@real_host
def test_real_kernel_clips_affinities_to_online_cpus(cpu1_hotplug, own_thread: int) -> None:
    """What kvmrt's restore plan allows for (tuning.plan): an affinity asked
    with an offline CPU keeps at most the asked CPUs; kernels differ in
    whether the offline one is kept (Linux 6.18 on cgroup v2 here: kept;
    Debian's 6.1 in the simulated host: dropped, ``taskset -p -c 0-7 1``
    gives 0-4,6) and none gives it back when the CPU returns. (A thread
    allowed only on the offline CPU shows it while it sleeps; the kernel
    picks a fallback when it wakes.)"""
    cpuctl.set_online(REAL, 1, False)
    os.sched_setaffinity(own_thread, {0, 1})
    kept = tasks.read_task(REAL, os.getpid(), own_thread).affinity
    assert kept in ({0}, {0, 1})
    cpuctl.set_online(REAL, 1, True)
    assert tasks.read_task(REAL, os.getpid(), own_thread).affinity == kept


@real_host
def test_real_cpuset_order_is_enforced_by_the_kernel(own_cpusets) -> None:
    if own_cpusets is None:
        pytest.skip("no cgroup v1 cpuset hierarchy")
    hotpluggable_cpu1()
    own, child = own_cpusets, f"{own_cpusets}/child"
    with pytest.raises(HostWriteError):  # a parent cannot drop a CPU its child uses
        cgroups.write_cpuset(REAL, own, frozenset({0}))
    narrow = {own: frozenset({0}), child: frozenset({0})}
    assert cgroups.restore_cpusets(REAL, narrow) == [own, child]
    wide = {own: frozenset({0, 1}), child: frozenset({0, 1})}
    assert cgroups.restore_cpusets(REAL, wide) == [own, child]
    assert {g: c for g, c in cgroups.read_cpusets(REAL).items() if g in wide} == wide


@pytest.fixture
def restore_irqs():
    """Every IRQ a test changes is put back to its recorded affinity."""
    recorded = {i.number: i.affinity for i in irqs.read_irqs(REAL)}
    touched: list[int] = []
    yield touched
    for number in touched:
        try:
            irqs.set_irq_affinity(REAL, number, recorded[number])
        except IrqRefused:
            continue


@real_host
def test_real_irq_affinity_round_trip(restore_irqs: list[int]) -> None:
    online = REAL.read_cpulist(f"{CPU}/online")
    for irq in irqs.read_irqs(REAL):
        usable = irq.affinity & online
        if len(usable) < 2:
            continue
        restore_irqs.append(irq.number)
        try:
            effective = irqs.set_irq_affinity(REAL, irq.number, frozenset({max(usable)}))
        except IrqRefused:
            continue
        # x86 without interrupt remapping moves the IRQ at its next interrupt:
        # effective_affinity_list may still show the old CPU.
        assert effective is None or effective <= online
        irqs.set_irq_affinity(REAL, irq.number, irq.affinity)
        restored = next(i for i in irqs.read_irqs(REAL) if i.number == irq.number)
        assert restored.affinity == irq.affinity
        return
    pytest.skip("no IRQ on this host accepts a new affinity")


@real_host
def test_real_managed_irq_is_refused() -> None:
    """Writing an IRQ's own affinity back changes nothing where it is accepted;
    a managed IRQ refuses even that."""
    for irq in irqs.read_irqs(REAL):
        try:
            irqs.set_irq_affinity(REAL, irq.number, irq.affinity)
        except IrqRefused as err:
            assert err.irq == irq.number
            after = next(i for i in irqs.read_irqs(REAL) if i.number == irq.number)
            assert after.affinity == irq.affinity
            return
    pytest.skip("no IRQ on this host refuses a write (no managed IRQ)")


@real_host
def test_real_default_affinity_and_workqueue_round_trip() -> None:
    hotpluggable_cpu1()
    default, workqueue = irqs.read_default_affinity(REAL), irqs.read_workqueue_mask(REAL)
    try:
        irqs.write_default_affinity(REAL, frozenset({1}))
        assert irqs.read_default_affinity(REAL) == {1}
        if workqueue is not None:
            irqs.write_workqueue_mask(REAL, frozenset({1}))
            assert irqs.read_workqueue_mask(REAL) == {1}
    finally:
        irqs.write_default_affinity(REAL, default)
        if workqueue is not None:
            irqs.write_workqueue_mask(REAL, workqueue)
    assert irqs.read_default_affinity(REAL) == default
    assert irqs.read_workqueue_mask(REAL) == workqueue


def virsh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {proc.stderr.strip()}")
    return proc


@pytest.fixture
def running_domain(tmp_path: Path):
    """A throwaway diskless domain, started; destroyed and undefined afterwards."""
    if not os.path.exists("/dev/kvm") or shutil.which("virsh") is None:
        pytest.skip("needs /dev/kvm and virsh")
    start = subprocess.run([str(ROOT / "scripts/start-libvirtd")], capture_output=True, text=True)
    if start.returncode != 0:
        pytest.skip(f"libvirtd cannot be started here: {start.stderr.strip()}")
    name = f"kvmrt-test-{uuid.uuid4().hex[:8]}"
    xml = tmp_path / f"{name}.xml"
    xml.write_text(
        f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>2</vcpu>"
        "<iothreads>1</iothreads><os><type arch='x86_64'>hvm</type></os>"
        "<devices><memballoon model='none'/></devices></domain>")
    virsh("define", str(xml))
    try:
        virsh("start", name)
        yield name
    finally:
        virsh("destroy", name, check=False)
        virsh("undefine", name, check=False)


@real_host
def test_real_qemu_status(running_domain: str) -> None:
    status = qemu.read_qemu_status(REAL, running_domain)
    assert status is not None
    assert status.pid == int(REAL.read(f"run/libvirt/qemu/{running_domain}.pid"))
    assert sorted(status.vcpus) == [0, 1]
    threads = {t.tid: t.comm for t in tasks.read_tasks(REAL, [status.pid])}
    assert {n: threads[tid] for n, tid in status.vcpus.items()} == {0: "CPU 0/KVM",
                                                                      1: "CPU 1/KVM"}
    assert {threads[tid] for tid in status.iothreads.values()} == {"IO iothread1"}
    assert qemu.read_qemu_status(REAL, f"{running_domain}-not") is None
