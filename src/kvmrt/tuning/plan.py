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

import functools
from dataclasses import dataclass, field
from typing import Iterator

from kvmrt.sets import format_ids
from kvmrt.tuning.model import Action, Setting, Snapshot, TunedVm, Value, Wanted
from kvmrt.tuning.settings import KINDS


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settled: list[str] = field(default_factory=list)   # journal keys back at baseline


@dataclass(frozen=True)
class _Item:
    """A setting of the host with its current value."""

    setting: Setting
    current: Value

    @property
    def key(self) -> str:
        return self.setting.key


def plan(snapshot: Snapshot, baseline: dict[str, Value], before: list[TunedVm],
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
    old, new = Wanted.of(before, snapshot.all_cpus), Wanted.of(after, snapshot.all_cpus)
    released = [v for v in before if v.uuid not in {a.uuid for a in after}]
    online_after = frozenset(c for c, on in snapshot.online.items() if on) - new.offline
    result = Plan(notes=_notes(snapshot, new))
    items = list(_items(snapshot))
    for item in items:
        if restore and item.key not in baseline:
            continue
        base = baseline.get(item.key, item.current)
        target = item.setting.target(base, new)
        # No tuned VM needs anything of this key, and it can hold its baseline.
        done = target == base and not _clipped(item, target, new.offline)
        if restore and item.key in refused and item.current == base:
            # The kernel refused kvmrt's write: never written, nothing to put
            # back. (Refused while being put back, it differs: try again.)
            target = item.current
        elif restore and not item.setting.follows_kernel and not _kvmrts(item, base, old, new):
            target = _administrators(item, base, released, new, result.notes)
        action = _action(item, target, new.offline, online_after)
        if action is not None:
            result.actions.append(action)
        wrote_base = action is not None and not action.record_only and action.new == base
        if item.key in baseline and done and (restore or item.current == base or wrote_base):
            result.settled.append(item.key)
    present = {i.key for i in items}
    result.settled += [k for k in baseline if k not in present]   # vanished threads, IRQs
    return result


def _action(item: _Item, target: Value, offline: frozenset[int],
            online_after: frozenset[int]) -> Action | None:
    """The change to ``target``. A target with CPUs that stay offline
    cannot be written: the kernel itself clips a thread's affinity or a
    cpuset when they go offline (or falls back to the online CPUs when
    nothing is left), so that change is journaled and not written."""
    if _clipped(item, target, offline):
        kept = (target - offline) or online_after
        if kept == item.current and not item.current & offline:
            return None
        return Action(item.setting, item.current, kept, record_only=True)
    if target == item.current:
        return None
    # The kernel narrows cpusets itself when CPUs go offline; widening them
    # back is kvmrt's job.
    kernel_does_it = item.setting.kernel_narrows and target < item.current
    return Action(item.setting, item.current, target, record_only=kernel_does_it)


def _clipped(item: _Item, value: Value, offline: frozenset[int]) -> bool:
    """Does the kernel drop CPUs of ``value`` because they stay offline?"""
    return (item.setting.clipped and isinstance(value, frozenset)
            and not value.isdisjoint(offline))


def _kvmrts(item: _Item, base: Value, old: Wanted, new: Wanted) -> bool:
    """Is the current value what kvmrt set, its baseline or its target, as
    the kernel shows it after the CPUs kvmrt takes offline left it?"""
    gone = old.offline | new.offline
    target = item.setting.target
    return any(_kernel_shows(item.current, value, gone)
               for value in (target(base, old), target(base, new), base))


@functools.lru_cache(maxsize=4096)
def _kernel_shows(current: Value, value: Value, gone: frozenset[int]) -> bool:
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


def _administrators(item: _Item, base: Value, released: list[TunedVm], new: Wanted,
                    notes: list[str]) -> Value:
    """An administrator's value: kept, and reported. If it reaches into a
    released VM's CPUs, the siblings kvmrt took offline for that VM (and
    that the baseline had) are given back: they could not be in it."""
    current = item.current
    back: frozenset[int] = frozenset()
    if isinstance(current, frozenset):
        for vm in released:
            if current & vm.shielded:
                back |= (base & vm.offline) - new.offline - current
    show = item.setting.show
    given = (f"kept, with CPUs {show(back)} given back (they were offline when it was set)"
             if back else "left as it is")
    notes.append(f"{item.setting.label} was changed since kvmrt set it (now {show(current)}); "
                 f"{given}")
    return current | back if back else current


def _items(s: Snapshot) -> Iterator[_Item]:
    """Every setting of the host, kind by kind in the order of :data:`KINDS`
    (the order in which the actions are written)."""
    for kind in KINDS:
        for setting, current in kind.present(s):
            yield _Item(setting, current)


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
