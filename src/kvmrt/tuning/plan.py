"""Plan the host changes for a set of tuned rt VMs, as a pure function.

Every changeable thing has a *key* and a *baseline*: its value before kvmrt
first changed it (from the journal), or its current value. What the host
should hold is a function of the baseline and of the rt VMs now tuned:

- a SMT sibling an rt VM owns is offline; every other CPU keeps its baseline;
- a movable thread, an IRQ, the default IRQ mask and the workqueue mask
  lose the shielded CPUs (if nothing would be left, IRQs and masks go to
  the host's CPUs, and a thread bound only to shielded CPUs is left alone
  and reported). The tuned rt VMs' own threads are never touched (libvirt
  pins them); the threads of other running VMs are shielded like any
  other (SPEC 3.1), which never moves a thread pinned inside the shielded
  CPUs, such as a vCPU: it is left alone and reported;
- the vfio IRQs of an rt VM's passthrough devices go to its IRQ CPU;
- cgroup v1 cpusets lose the offline CPUs (the kernel does that itself; kvmrt
  records the baseline so it can put them back on restore).

Booting a VM, repairing a disturbed one and shutting one down are all the
same computation with a different set of tuned VMs. On restore only the
keys in the journal are touched, and a value someone changed after kvmrt
set it is left as it is and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from kvmrt.config.sets import format_ids
from kvmrt.tuning.model import Action, Snapshot, TunedVm

ORDER = ["cpu-online", "cpuset", "task-affinity", "irq-affinity", "default-affinity",
         "workqueue"]


@dataclass(frozen=True)
class Wanted:
    """What the tuned rt VMs together ask of the host."""

    shielded: frozenset[int] = frozenset()
    offline: frozenset[int] = frozenset()
    irq_cpu_of: dict = field(default_factory=dict)   # PCI address text -> CPU

    @classmethod
    def of(cls, vms: list[TunedVm]) -> "Wanted":
        return cls(
            shielded=frozenset().union(*(v.shielded for v in vms)),
            offline=frozenset().union(*(v.offline for v in vms)),
            irq_cpu_of={a: v.irq_cpu for v in vms if v.irq_cpu is not None for a in v.pcidevs})


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)   # journal keys back at baseline


@dataclass(frozen=True)
class _Item:
    kind: str
    key: str
    label: str
    current: Any
    target: Callable[[Any, Wanted], Any]
    record_only: bool = False


def plan(snapshot: Snapshot, baseline: dict[str, Any], before: list[TunedVm],
         after: list[TunedVm], *, restore: bool) -> Plan:
    """Actions that take the host from ``before`` to ``after``.

    With ``restore`` only journaled keys are touched and values changed by
    someone else since are left alone; otherwise (boot, repair) every key is
    brought to its target, which also repairs disturbed tuning.
    """
    old, new = Wanted.of(before), Wanted.of(after)
    result = Plan(notes=_notes(snapshot, new))
    for item in _items(snapshot, new):
        if restore and item.key not in baseline:
            continue
        base = baseline.get(item.key, item.current)
        target = item.target(base, new)
        if restore and item.current != item.target(base, old) and item.current != target:
            result.notes.append(f"{item.label} was changed since kvmrt set it "
                                f"(now {_fmt(item.current)}); left as it is")
        elif target != item.current:
            # The kernel narrows cpusets itself when CPUs go offline; widening
            # them back is kvmrt's job.
            kernel_does_it = item.record_only and target < item.current
            result.actions.append(Action(item.kind, item.key, item.label, item.current,
                                         target, kernel_does_it))
        if item.key in baseline and target == base:
            result.settled.append(item.key)
    present = {i.key for i in _items(snapshot, new)}
    result.settled += [k for k in baseline if k not in present]   # vanished threads, IRQs
    result.actions.sort(key=lambda a: ORDER.index(a.kind))
    return result


def _items(s: Snapshot, wanted: Wanted) -> Iterator[_Item]:
    host = s.all_cpus - wanted.shielded - wanted.offline
    for cpu in sorted(s.online):
        yield _Item("cpu-online", f"cpu:{cpu}", f"CPU {cpu}", s.online[cpu],
                    lambda base, w, c=cpu: False if c in w.offline else base)
    for group, cpus in sorted(s.cpusets.items()):
        yield _Item("cpuset", f"cpuset:{group}", f"cpuset /{group}", cpus,
                    lambda base, w: (base - w.offline) or base, record_only=True)
    for t in s.tasks:
        if t.pid not in s.protected_pids and not t.pinned:
            yield _Item("task-affinity", f"task:{t.tid}:{t.starttime}",
                        f"thread {t.tid} ({t.comm})", t.affinity,
                        _task_target(s.all_cpus, kernel=t.kernel))
    vfio = {irq: str(a) for a, irqs in s.vfio.items() for irq in irqs}
    for irq in s.irqs:
        yield _Item("irq-affinity", f"irq:{irq.number}", f"IRQ {irq.number} ({irq.name})",
                    irq.affinity, _irq_target(vfio.get(irq.number), host))
    yield _Item("default-affinity", "irq-default", "default IRQ affinity",
                s.default_affinity, lambda base, w: (base - w.shielded) or host)
    if s.workqueue is not None:
        yield _Item("workqueue", "workqueue", "workqueue cpumask", s.workqueue,
                    lambda base, w: (base - w.shielded) or host)


def _task_target(all_cpus: frozenset[int], *, kernel: bool):
    """A thread loses the shielded CPUs. One allowed only on shielded CPUs
    moves to the host's CPUs if it is a movable kernel thread (a node's
    kswapd/kcompactd, a threaded IRQ handler that follows its IRQ), and is
    left alone if it is a user thread (its owner pinned it there)."""
    def target(base: frozenset[int], w: Wanted) -> frozenset[int]:
        if base - w.shielded:
            return base - w.shielded
        if kernel and w.shielded:
            return (all_cpus - w.shielded - w.offline) or base
        return base

    return target


def _irq_target(device: str | None, host: frozenset[int]):
    def target(base: frozenset[int], w: Wanted) -> frozenset[int]:
        if device is not None and device in w.irq_cpu_of:
            return frozenset({w.irq_cpu_of[device]})
        return (base - w.shielded) or host

    return target


def _notes(s: Snapshot, wanted: Wanted) -> list[str]:
    """What shielding cannot do: threads the kernel binds to shielded CPUs."""
    if not wanted.shielded:
        return []
    stuck = [t for t in s.tasks if t.pinned and t.affinity & wanted.shielded]
    notes = []
    if stuck:
        names = ", ".join(sorted({t.comm for t in stuck})[:6])
        notes.append(f"{len(stuck)} per-CPU kernel threads stay on shielded CPUs "
                     f"(the kernel binds them: {names}{', ...' if len(stuck) > 6 else ''})")
    only = [t for t in s.tasks if t.pid not in s.protected_pids and not t.pinned
            and not t.kernel and t.affinity and t.affinity <= wanted.shielded]
    for t in only:
        notes.append(f"thread {t.tid} ({t.comm}) may only run on shielded CPUs "
                     f"{format_ids(t.affinity)}; left as it is")
    return notes


def _fmt(value: Any) -> str:
    if isinstance(value, frozenset):
        return format_ids(value) or "(none)"
    return str(value)
