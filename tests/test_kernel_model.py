"""What the kernel does on its own while an rt VM runs, and why restore is
still exact (issue 10, section 1).

A fixture tree has no kernel: the tests make its reactions with hostgen's
functions (``cpu_went_offline``, ``sched_setaffinity``,
``kthread_reset_on_hotplug``, ``irq_thread_follows``) between kvmrt's steps,
where the kernel makes them:

- offlining a CPU removes it from thread affinities and cpusets, and an
  affinity set later is clipped to the online CPUs (``taskset -p -c 0-7 1``
  gives 0-1,2-5 while 6 and 7 are offline);
- a thread left with no online CPU falls back to the online ones;
- IRQ 0 and 2 refuse every write and keep their mask;
- a threaded IRQ handler follows its IRQ's effective CPU;
- node- and rcu_node-bound kernel threads are reset on CPU hotplug.

None of these is "someone else's change": shutdown and recovery put every
value back, and only a value an administrator chose is kept and reported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import hostgen
from kvmrt.host import HostFS
from kvmrt.tuning import engine
from kvmrt.tuning.apply import apply
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.settings import CpuOnline
from test_tuning import changed, rt_vm, tree

RT = "[00000000-0000-4000-8000-0000000000e1]\nname = rt\ncpuset = n1\nrt = 1\n"
RT_A = "[00000000-0000-4000-8000-0000000000e2]\nname = a\ncpuset = 2\nrt = 1\n"
RT_B = "[00000000-0000-4000-8000-0000000000e3]\nname = b\ncpuset = 3\nrt = 1\n"
RCUB, IRQ_THREAD, APP = 16, 300, 6000
SYSTEMD, SSHD = hostgen.SYSTEMD, hostgen.SSHD


def simlike(cgroup_v1: bool = False) -> hostgen.HostSpec:
    """Like the simulated host: 4 cores x 2 threads, nodes 0 (CPUs 0,1,4,5)
    and 1 (2,3,6,7); rcub/0 on every CPU, eth0's IRQ 24 delivered to CPU 2
    with its threaded handler there, and an application pinned to CPU 6.
    ``cgroup_v1``: with a v1 cpuset tree (``machine``), whose cpusets lose
    a CPU when it goes offline."""
    spec = hostgen.HostSpec("simlike_1s4c2t", cores_per_die=4, threads_per_core=2,
                            numa_nodes=2, proc=True)
    extra = (hostgen.TaskSpec(RCUB, "rcub/0", kernel=True),
             hostgen.TaskSpec(IRQ_THREAD, "irq/24-eth0", kernel=True,
                              affinity=frozenset({2})),
             hostgen.TaskSpec(APP, "pinned-app", affinity=frozenset({6})))
    irqs = (hostgen.IrqSpec(0, "timer", hwirq=2), hostgen.IrqSpec(1, "i8042", hwirq=1),
            hostgen.IrqSpec(2, "cascade", hwirq=2), hostgen.IrqSpec(9, "acpi", hwirq=9),
            hostgen.IrqSpec(24, "eth0", chip="IR-PCI-MSIX-0000:01:00.0",
                            effective=frozenset({2})))
    spec = dataclasses.replace(spec, tasks=hostgen.standard_tasks(spec) + extra, irqs=irqs)
    return dataclasses.replace(spec, cpusets=hostgen.libvirt_cpusets(spec)) if cgroup_v1 else spec


@pytest.fixture
def host(make_host) -> Path:
    return make_host(simlike())


def boot(root: Path, text: str = RT):
    """kvmrt tunes the host for an rt VM; the kernel reacts to the offlined
    siblings and moves the IRQs' effective CPUs."""
    vm = rt_vm(root, text)
    result = engine.tune(HostFS(root), vm)
    assert not result.failed
    for cpu in sorted(vm.offline):
        hostgen.cpu_went_offline(root, cpu)
    for irq in (1, 9, 24):
        hostgen.irq_effective_moves(root, irq)
    return vm


def same(before: dict, root: Path) -> list[str]:
    """What differs from ``before`` but the effective CPUs (the kernel's choice)."""
    return [k for k in changed(before, tree(root)) if "effective" not in k]


def blamed(result: engine.Result) -> list[str]:
    return [n for n in result.notes if "changed since kvmrt set it" in n]


def test_every_cpu_asked_while_siblings_are_offline_comes_back(host):
    """``taskset -p -c 0-7 1`` while 6 and 7 are offline: the kernel keeps
    0-5; shutdown gives PID 1 all eight back and blames nobody."""
    before = tree(host)
    vm = boot(host)
    assert vm.offline == {6, 7}
    assert hostgen.sched_setaffinity(host, SYSTEMD, range(8)) == set(range(6))
    result = engine.release(HostFS(host), [vm.uuid])
    assert blamed(result) == []
    assert hostgen.thread_affinity(host, SYSTEMD) == set(range(8))
    assert same(before, host) == []


def test_a_thread_the_kernel_moved_off_an_offline_cpu_goes_back(host):
    """The application allowed only on CPU 6 falls back to the online CPUs
    when kvmrt takes 6 offline; shutdown puts it back on 6."""
    before = tree(host)
    vm = boot(host)
    assert hostgen.thread_affinity(host, APP) == set(range(6))
    result = engine.release(HostFS(host), [vm.uuid])
    assert blamed(result) == []
    assert hostgen.thread_affinity(host, APP) == {6}
    assert same(before, host) == []


def test_a_threaded_irq_handler_following_its_irq_is_nobodys_change(host):
    before = tree(host)
    vm = boot(host)
    hostgen.irq_thread_follows(host, IRQ_THREAD, 24)
    assert hostgen.thread_affinity(host, IRQ_THREAD) == {0}
    result = engine.release(HostFS(host), [vm.uuid])
    assert blamed(result) == []
    assert same(before, host) == []


def test_a_kernel_thread_reset_on_hotplug_is_nobodys_change(host):
    """rcub/0 is reset to the online CPUs when a sibling comes back (an
    administrator onlines CPU 6 while the VM runs, the kernel moves rcub)."""
    before = tree(host)
    vm = boot(host)
    (host / "sys/devices/system/cpu/cpu6/online").write_text("1\n")
    hostgen.kthread_reset_on_hotplug(host, RCUB, range(8))
    assert hostgen.thread_affinity(host, RCUB) == set(range(7))
    result = engine.release(HostFS(host), [vm.uuid])
    assert blamed(result) == []
    assert same(before, host) == []


@pytest.fixture
def refusing_irq2(host):
    """IRQ 2 refuses every write (EPERM, Linux 6.x) and stays readable:
    its file is immutable (chattr +i) until the test ends."""
    with hostgen.immutable(host / "proc/irq/2/smp_affinity_list") as refusing:
        if not refusing:
            pytest.skip("chattr +i is not supported on the file system of tmp_path")
        yield 2


def test_an_irq_that_refused_every_write_is_never_blamed(host, refusing_irq2):
    """Two rt VMs; IRQ 2 refuses. Releasing one of them has nobody to blame
    for IRQ 2 (kvmrt never set it), and the journal forgets it."""
    fs, before = HostFS(host), tree(host)
    a, b = boot(host, RT_A), boot(host, RT_B)
    assert "irq:2" in Journal.for_host(fs).load().refused
    result = engine.release(fs, [b.uuid])
    assert blamed(result) == [], result.notes
    result = engine.release(fs, [a.uuid])
    assert blamed(result) == [], result.notes
    assert same(before, host) == []
    assert not Journal.for_host(fs).path.exists()


def test_an_administrators_value_is_kept_with_the_offline_siblings_given_back(host):
    """sshd set to 1-7 while 6 and 7 are offline (the kernel keeps 1-5) is
    the administrator's: kept, with 6 and 7 given back. systemd set to 0-1,
    away from the VM's CPUs, is kept as it is. Both are reported."""
    vm = boot(host)
    hostgen.sched_setaffinity(host, SSHD, range(1, 8))
    hostgen.sched_setaffinity(host, SYSTEMD, {0, 1})
    result = engine.release(HostFS(host), [vm.uuid])
    assert hostgen.thread_affinity(host, SSHD) == set(range(1, 8))
    assert hostgen.thread_affinity(host, SYSTEMD) == {0, 1}
    assert [n for n in blamed(result) if "(sshd)" in n] == [
        "thread 5012 (sshd) was changed since kvmrt set it (now 1-5); kept, with "
        "CPUs 6-7 given back (they were offline when it was set)"]
    assert [n for n in blamed(result) if "(systemd)" in n] == [
        "thread 1 (systemd) was changed since kvmrt set it (now 0-1); left as it is"]


def kill_points(host: Path, text: str = RT) -> int:
    return len(engine.tune(HostFS(host), rt_vm(host, text), dry_run=True).actions)


def killed_after(root: Path, vm, actions, done: int, *, restore: bool) -> None:
    """kvmrt killed after ``done`` of ``actions``: the journal holds the VM
    (on boot) and every old value (one fsynced batch before the first
    write); the first ``done`` writes happened, and the kernel reacted."""
    fs = HostFS(root)
    journal = Journal.for_host(fs)
    if not restore:
        journal.record_vm(vm)
    journal.record_old(actions, journal.load().baseline)
    apply(fs, actions[:done], journal, journal.load().baseline)
    for a in actions[:done]:
        if isinstance(a.setting, CpuOnline) and a.new is False:
            hostgen.cpu_went_offline(root, a.setting.cpu)
            hostgen.kthread_reset_on_hotplug(root, RCUB, range(8))


KILL_POINTS = [(done, False) for done in (0, 1, 2, 5, 9, 14, 20, 1000)] + [
    (done, True) for done in (1, 2, 20)]


@pytest.mark.parametrize("done, cgroup_v1", KILL_POINTS)
def test_sigkill_at_any_point_of_boot_then_recovery_restores_exactly(make_host, done,
                                                                     cgroup_v1):
    host = make_host(simlike(cgroup_v1))
    fs, before = HostFS(host), tree(host)
    vm = rt_vm(host, RT)
    actions = engine.tune(fs, vm, dry_run=True).actions
    killed_after(host, vm, actions, done, restore=False)
    result = engine.recover(fs, running=set())
    assert blamed(result) == [] and not result.failed
    assert same(before, host) == []
    assert not Journal.for_host(fs).path.exists()


@pytest.mark.parametrize("done, cgroup_v1", [(d, v1) for d, v1 in KILL_POINTS if d != 20])
def test_sigkill_at_any_point_of_shutdown_then_recovery_restores_exactly(make_host, done,
                                                                         cgroup_v1):
    host = make_host(simlike(cgroup_v1))
    fs, before = HostFS(host), tree(host)
    vm = boot(host)
    hostgen.sched_setaffinity(host, SYSTEMD, range(8))
    actions = engine.release(fs, [vm.uuid], dry_run=True).actions
    killed_after(host, vm, actions, done, restore=True)
    result = engine.recover(fs, running=set())
    assert blamed(result) == [] and not result.failed
    assert same(before, host) == []
    assert not Journal.for_host(fs).path.exists()
