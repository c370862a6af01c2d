"""The host settings kvmrt changes, one class per kind.

Each kind is a small value (:class:`kvmrt.tuning.model.Setting`) that
knows its journal key, its label, the values it may hold, what the tuned
rt VMs want of it, and how it is written and read back. The planner and
the applier know no kind by name: they go through :data:`KINDS`, in its
order (CPUs come online before cpusets widen, before threads move).

Adding a kind of host change (a cgroup v2 cpuset, a CPU's frequency
governor) is one class here, listed in :data:`KINDS`, plus its tests::

    @dataclass(frozen=True)
    class CpuGovernor(Setting):       # cpufreq/scaling_governor

        cpu: int
        words: ClassVar[str] = "CPU governors"       # in a summary

        @property
        def key(self) -> str:                         # never change it
            return f"governor:{self.cpu}"

        @property
        def label(self) -> str:
            return f"CPU {self.cpu} governor"

        @classmethod
        def present(cls, s):                          # from the Snapshot
            return ((cls(c), g) for c, g in sorted(s.governors.items()))

        def target(self, base, w):                    # pure
            return "performance" if self.cpu in w.shielded else base

        def write(self, fs, value):                   # raises unless it reads back
            cpufreq.set_governor(fs, self.cpu, value)

with, where the kind reads a fact the snapshot lacks, a
:class:`~kvmrt.tuning.model.Snapshot` field filled by
:func:`kvmrt.tuning.engine.take_snapshot`, and where its values are not
booleans or CPU sets, their check in the journal's record check.

A key, once written to a journal, is a contract: a journal written by an
older kvmrt must restore, so the key formats below never change.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Iterator

from kvmrt.sets import format_ids
from kvmrt.errors import HostWriteError
from kvmrt.host import cgroups, cpuctl, irqs, tasks
from kvmrt.host.fs import HostFS
from kvmrt.host.tasks import Task
from kvmrt.tuning.model import Setting, Snapshot, Value, Wanted


@dataclass(frozen=True)
class CpuOnline(Setting):
    """``cpuN/online``: an rt VM's SMT siblings go offline."""

    cpu: int
    words: ClassVar[str] = "CPUs online/offline"

    @property
    def key(self) -> str:
        return f"cpu:{self.cpu}"

    @property
    def label(self) -> str:
        return f"CPU {self.cpu}"

    def show(self, value: Value) -> str:
        return "online" if value else "offline"

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        return ((cls(cpu), s.online[cpu]) for cpu in sorted(s.online))

    def target(self, base: Value, w: Wanted) -> Value:
        return False if self.cpu in w.offline else base

    def write(self, fs: HostFS, value: Value) -> None:
        cpuctl.set_online(fs, self.cpu, value)


@dataclass(frozen=True)
class CgroupCpuset(Setting):
    """A cgroup v1 ``cpuset.cpus``: it loses the offline CPUs (the kernel
    drops them itself; kvmrt journals the baseline to put them back)."""

    group: str
    words: ClassVar[str] = "cgroup cpusets"
    clipped: ClassVar[bool] = True
    kernel_narrows: ClassVar[bool] = True
    batch: ClassVar[str | None] = "cpusets"

    @property
    def key(self) -> str:
        return f"cpuset:{self.group}"

    @property
    def label(self) -> str:
        return f"cpuset /{self.group}"

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        return ((cls(group), cpus) for group, cpus in sorted(s.cpusets.items()))

    def target(self, base: Value, w: Wanted) -> Value:
        return (base - w.offline) or base

    def write(self, fs: HostFS, value: Value) -> None:
        self.write_batch(fs, {self: value})

    @classmethod
    def write_batch(cls, fs: HostFS, values: dict[Setting, Value]) -> None:
        """A child's CPUs must lie within its parent's: parents widen first."""
        cgroups.restore_cpusets(fs, {s.group: cpus for s, cpus in values.items()})


@dataclass(frozen=True)
class TaskAffinity(Setting):
    """A movable thread's affinity: it loses the shielded CPUs. One allowed
    only on shielded CPUs moves to the host's CPUs if it is a movable
    kernel thread (a node's kswapd/kcompactd, a threaded IRQ handler that
    follows its IRQ), and is left alone if it is a user thread (its owner
    pinned it there)."""

    task: Task
    words: ClassVar[str] = "threads"
    clipped: ClassVar[bool] = True

    @property
    def key(self) -> str:
        return f"task:{self.task.tid}:{self.task.starttime}"

    @property
    def label(self) -> str:
        return f"thread {self.task.tid} ({self.task.comm})"

    @property
    def journal_label(self) -> None:
        # The key (tid and start time) names the thread; a host has tens of
        # thousands, and their labels would make up a third of the journal.
        return None

    @property
    def follows_kernel(self) -> bool:
        return self.task.irq_thread is not None

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        return ((cls(t), t.affinity) for t in s.tasks
                if t.pid not in s.protected_pids and t.vhost_of not in s.protected_pids
                and not t.pinned)

    def target(self, base: Value, w: Wanted) -> Value:
        left = without(base, w.shielded)
        if left:
            return left
        if self.task.kernel and w.shielded:
            return w.host or base
        return base

    def write(self, fs: HostFS, value: Value) -> None:
        task = self.task
        tasks.set_affinity(fs, task, value)
        now = tasks.read_affinity(fs, task)
        if now != value:
            raise HostWriteError(f"thread {task.tid}", f"affinity reads back as "
                                 f"{format_ids(now)}, not {format_ids(value)}")


@dataclass(frozen=True)
class IrqAffinity(Setting):
    """An IRQ's ``smp_affinity_list``: it loses the shielded CPUs; a vfio
    IRQ of an rt VM's passthrough device goes to the VM's IRQ CPU."""

    number: int
    name: str
    device: str | None = None     # the PCI address of a vfio IRQ's device
    words: ClassVar[str] = "IRQs"

    @property
    def key(self) -> str:
        return f"irq:{self.number}"

    @property
    def label(self) -> str:
        return f"IRQ {self.number} ({self.name})"

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        vfio = {irq: str(a) for a, numbers in s.vfio.items() for irq in numbers}
        return ((cls(irq.number, irq.name, vfio.get(irq.number)), irq.affinity)
                for irq in s.irqs)

    def target(self, base: Value, w: Wanted) -> Value:
        if self.device is not None and self.device in w.irq_cpu_of:
            return frozenset({w.irq_cpu_of[self.device]})
        return without(base, w.shielded) or w.host

    def write(self, fs: HostFS, value: Value) -> None:
        # The effective affinity may follow only at the IRQ's next interrupt
        # on hosts without interrupt remapping; kvmrt-stat checks it.
        irqs.set_irq_affinity(fs, self.number, value)


class _HostMask(Setting):
    """A mask of the whole host: it loses the shielded CPUs."""

    def target(self, base: Value, w: Wanted) -> Value:
        return without(base, w.shielded) or w.host


@dataclass(frozen=True)
class DefaultIrqAffinity(_HostMask):
    """``/proc/irq/default_smp_affinity``, the mask of IRQs yet to come."""

    words: ClassVar[str] = "default IRQ affinity"
    key: ClassVar[str] = "irq-default"
    label: ClassVar[str] = "default IRQ affinity"

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        yield cls(), s.default_affinity

    def write(self, fs: HostFS, value: Value) -> None:
        irqs.write_default_affinity(fs, value)


@dataclass(frozen=True)
class WorkqueueMask(_HostMask):
    """The cpumask of unbound workqueues (absent on some kernels)."""

    words: ClassVar[str] = "workqueue cpumask"
    key: ClassVar[str] = "workqueue"
    label: ClassVar[str] = "workqueue cpumask"

    @classmethod
    def present(cls, s: Snapshot) -> Iterator[tuple[Setting, Value]]:
        if s.workqueue is not None:
            yield cls(), s.workqueue

    def write(self, fs: HostFS, value: Value) -> None:
        irqs.write_workqueue_mask(fs, value)


@functools.lru_cache(maxsize=4096)
def without(cpus: frozenset[int], shielded: frozenset[int]) -> frozenset[int]:
    """``cpus - shielded``, kept: thousands of threads and IRQs share a few
    affinities, each a set of up to thousands of CPUs."""
    return cpus - shielded


KINDS: tuple[type[Setting], ...] = (
    CpuOnline, CgroupCpuset, TaskAffinity, IrqAffinity, DefaultIrqAffinity, WorkqueueMask)
"""Every kind of host setting, in the order they are planned and written."""
