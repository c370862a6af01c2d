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
keys in the journal are touched.

On restore a value that differs from what kvmrt set is not at once someone
else's: the kernel changes values itself, and those changes follow from
kvmrt's own (the model, :func:`_kernel_shows`):

- offlining a CPU removes it from thread affinities and cpusets, and an
  affinity written while it is offline is clipped to the online CPUs
  (``taskset -p -c 0-7 1`` with 6 and 7 offline gives 0-5); a thread left
  with no online CPU falls back to the online ones, an IRQ likewise;
- CPU hotplug resets node- and rcu_node-bound kernel threads (kswapdN,
  kcompactdN, rcub/N) to their online CPUs;
- a threaded IRQ handler (``irq/N-name``) follows its IRQ's effective CPU,
  the kernel's choice: it is never blamed and goes back to its baseline;
- a key the kernel refused (IRQ 0 and 2, per-CPU threads) was never
  written: nothing to put back, nobody to blame.

So a value is kvmrt's (or the kernel's consequence of it) when it is what
kvmrt set, the baseline, or the target, *as the kernel would show it* after
the CPUs kvmrt took offline left it; such a value goes back to its
baseline. Any other value an administrator chose: it is kept and reported,
but the CPUs kvmrt took offline are given back to it when it reaches into
the released VM's CPUs (it was written as if that VM were not there, and
the kernel could not keep the offline siblings in it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from kvmrt.sets import format_ids
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
    clipped: bool = False           # the kernel drops offline CPUs from it
    follows_kernel: bool = False    # the kernel sets it (a threaded IRQ handler)


def plan(snapshot: Snapshot, baseline: dict[str, Any], before: list[TunedVm],
         after: list[TunedVm], *, restore: bool, refused: frozenset[str] = frozenset()) -> Plan:
    """Actions that take the host from ``before`` to ``after``.

    With ``restore`` only journaled keys are touched; values an
    administrator chose since are kept (see the module doc), and keys in
    ``refused`` that still hold their baseline (the kernel refused kvmrt's
    write) are left alone; one that differs was refused while being put
    back, and is tried again. Otherwise
    (boot, repair) every key is brought to its target, which also repairs
    disturbed tuning.
    """
    old, new = Wanted.of(before), Wanted.of(after)
    released = [v for v in before if v.uuid not in {a.uuid for a in after}]
    online_after = frozenset(c for c, on in snapshot.online.items() if on) - new.offline
    result = Plan(notes=_notes(snapshot, new))
    for item in _items(snapshot, new):
        if restore and item.key not in baseline:
            continue
        base = baseline.get(item.key, item.current)
        target = item.target(base, new)
        # No tuned VM needs anything of this key, and it can hold its baseline.
        done = target == base and not _clipped(item, target, new.offline)
        if restore and item.key in refused and item.current == base:
            # The kernel refused kvmrt's write: never written, nothing to put
            # back. (Refused while being put back, it differs: try again.)
            target = item.current
        elif restore and not item.follows_kernel and not _kvmrts(item, base, old, new):
            target = _administrators(item, base, released, new, result.notes)
        action = _action(item, target, new.offline, online_after)
        if action is not None:
            result.actions.append(action)
        wrote_base = action is not None and not action.record_only and action.new == base
        if item.key in baseline and done and (restore or item.current == base or wrote_base):
            result.settled.append(item.key)
    present = {i.key for i in _items(snapshot, new)}
    result.settled += [k for k in baseline if k not in present]   # vanished threads, IRQs
    result.actions.sort(key=lambda a: ORDER.index(a.kind))
    return result


def _action(item: _Item, target: Any, offline: frozenset[int],
            online_after: frozenset[int]) -> Action | None:
    """The change to ``target``. A target with CPUs that stay offline
    cannot be written: the kernel itself clips a thread's affinity or a
    cpuset when they go offline (or falls back to the online CPUs when
    nothing is left), so that change is journaled and not written."""
    if _clipped(item, target, offline):
        kept = (target - offline) or online_after
        if kept == item.current and not item.current & offline:
            return None
        return Action(item.kind, item.key, item.label, item.current, kept, True)
    if target == item.current:
        return None
    # The kernel narrows cpusets itself when CPUs go offline; widening them
    # back is kvmrt's job.
    kernel_does_it = item.kind == "cpuset" and target < item.current
    return Action(item.kind, item.key, item.label, item.current, target, kernel_does_it)


def _clipped(item: _Item, value: Any, offline: frozenset[int]) -> bool:
    """Does the kernel drop CPUs of ``value`` because they stay offline?"""
    return item.clipped and isinstance(value, frozenset) and bool(value & offline)


def _kvmrts(item: _Item, base: Any, old: Wanted, new: Wanted) -> bool:
    """Is the current value what kvmrt set, its baseline or its target, as
    the kernel shows it after the CPUs kvmrt takes offline left it?"""
    gone = old.offline | new.offline
    return any(_kernel_shows(item.current, value, gone)
               for value in (item.target(base, old), item.target(base, new), base))


def _kernel_shows(current: Any, value: Any, gone: frozenset[int]) -> bool:
    """Can the kernel show ``current`` for a ``value`` written while (or
    before) the CPUs in ``gone`` went offline? It drops offline CPUs from
    affinities and cpusets, clips writes to the online CPUs, and when
    nothing of a value is left online, falls back to CPUs of its choice."""
    if current == value:
        return True
    if not isinstance(value, frozenset) or not isinstance(current, frozenset):
        return False
    if value and value <= gone:
        return True
    return bool(current) and current <= value and value - current <= gone


def _administrators(item: _Item, base: Any, released: list[TunedVm], new: Wanted,
                    notes: list[str]) -> Any:
    """An administrator's value: kept, and reported. If it reaches into a
    released VM's CPUs, the siblings kvmrt took offline for that VM (and
    that the baseline had) are given back: they could not be in it."""
    current = item.current
    back: frozenset[int] = frozenset()
    if isinstance(current, frozenset):
        for vm in released:
            if current & vm.shielded:
                back |= (base & vm.offline) - new.offline - current
    given = (f"kept, with CPUs {_fmt(back)} given back (they were offline when it was set)"
             if back else "left as it is")
    notes.append(f"{item.label} was changed since kvmrt set it (now {_fmt(current)}); {given}")
    return current | back if back else current


def _items(s: Snapshot, wanted: Wanted) -> Iterator[_Item]:
    host = s.all_cpus - wanted.shielded - wanted.offline
    for cpu in sorted(s.online):
        yield _Item("cpu-online", f"cpu:{cpu}", f"CPU {cpu}", s.online[cpu],
                    lambda base, w, c=cpu: False if c in w.offline else base)
    for group, cpus in sorted(s.cpusets.items()):
        yield _Item("cpuset", f"cpuset:{group}", f"cpuset /{group}", cpus,
                    lambda base, w: (base - w.offline) or base, clipped=True)
    for t in s.tasks:
        if t.pid not in s.protected_pids and not t.pinned:
            yield _Item("task-affinity", f"task:{t.tid}:{t.starttime}",
                        f"thread {t.tid} ({t.comm})", t.affinity,
                        _task_target(s.all_cpus, kernel=t.kernel), clipped=True,
                        follows_kernel=t.irq_thread is not None)
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
