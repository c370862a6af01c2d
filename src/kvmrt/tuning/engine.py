"""Tune the host for rt VMs and put it back: the three operations boot,
shutdown and crash recovery are made of.

- :func:`tune` adds (or refreshes) an rt VM: siblings offline, shielding,
  vfio IRQs; run again on a running VM it repairs disturbed tuning;
- :func:`release` removes VMs: what no other tuned VM still needs goes back
  to its baseline, exactly;
- :func:`recover` releases VMs the journal lists but that no longer run
  (kvmrt was killed, a VM stopped behind kvmrt's back).

All take the journal's lock, so two kvmrt commands never interleave. The
journal records which process tuned a VM: while that process runs (a
``kvmrt-boot`` between tuning a VM and starting its domain), recovery by
another command leaves the VM alone. A value that could not be put back
keeps its VM in the journal, so that every later command tries again and
``kvmrt-stat`` reports it until it is back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.host import cgroups, irqs, qemu, tasks
from kvmrt.host.fs import HostFS
from kvmrt.host.topology import read_topology
from kvmrt.lockfile import Process
from kvmrt.tuning.apply import Applied, apply
from kvmrt.tuning.journal import Journal, JournalState
from kvmrt.tuning.model import Action, Snapshot, TunedVm
from kvmrt.tuning.plan import plan


@dataclass
class Result:
    actions: list[Action] = field(default_factory=list)   # done, or planned with dry_run
    notes: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def take_snapshot(fs: HostFS, protect: list[str] = ()) -> Snapshot:
    """The host state; the threads of the running domains named in
    ``protect`` (the tuned rt VMs, found by their QEMU PID) are never moved."""
    topo = read_topology(fs)
    return Snapshot(
        all_cpus=topo.all_cpus,
        online={c: info.online for c, info in topo.cpus.items()},
        hotpluggable={c: info.hotpluggable for c, info in topo.cpus.items()},
        tasks=tasks.read_tasks(fs), irqs=irqs.read_irqs(fs),
        default_affinity=irqs.read_default_affinity(fs),
        workqueue=irqs.read_workqueue_mask(fs), cpusets=cgroups.read_cpusets(fs),
        vfio=irqs.vfio_irqs(fs), protected_pids=frozenset(qemu_pids(fs, protect)))


def qemu_pids(fs: HostFS, names: list[str]) -> list[int]:
    """QEMU PIDs of the named running domains (from libvirt's status files)."""
    found = (qemu.read_qemu_status(fs, name) for name in names)
    return [status.pid for status in found if status is not None]


def tune(fs: HostFS, vm: TunedVm, *, dry_run: bool = False) -> Result:
    journal = Journal.for_host(fs)
    with journal.locked(dry_run=dry_run):
        state = journal.load()
        before = list(state.vms.values())
        after = [v for v in before if v.uuid != vm.uuid] + [vm]
        if not dry_run:
            journal.record_vm(vm, Process.current())   # first: a crash from here on is recovered
        return _run(fs, journal, state, before, after, restore=False, dry_run=dry_run)


def refresh(fs: HostFS) -> Result:
    """Shield again for the rt VMs already tuned: threads and IRQs that
    appeared since (a VM started beside them, whose QEMU libvirt lets run
    on every CPU) leave their CPUs."""
    journal = Journal.for_host(fs)
    with journal.locked():
        state = journal.load()
        if not state.vms:
            return Result()
        tuned = list(state.vms.values())
        return _run(fs, journal, state, tuned, tuned, restore=False, dry_run=False)


def release(fs: HostFS, uuids: list[str], *, dry_run: bool = False) -> Result:
    journal = Journal.for_host(fs)
    with journal.locked(dry_run=dry_run):
        return _release(fs, journal, journal.load(), set(uuids), dry_run=dry_run)


def recover(fs: HostFS, running: set[str], *, dry_run: bool = False) -> Result:
    """Release every journaled VM whose domain is not running."""
    journal = Journal.for_host(fs)
    with journal.locked(dry_run=dry_run):
        state = journal.load()
        gone = {u for u in state.vms if u not in running and not state.booting(u)}
        if not gone and (state.vms or not state.baseline):
            if state.empty and not dry_run:
                journal.compact()     # killed between its last line and removing it
            return Result()
        return _release(fs, journal, state, gone, dry_run=dry_run)


def _release(fs, journal: Journal, state: JournalState, uuids: set[str], *,
             dry_run: bool) -> Result:
    before = list(state.vms.values())
    after = [v for v in before if v.uuid not in uuids]
    result = _run(fs, journal, state, before, after, restore=True, dry_run=dry_run)
    if not dry_run and not (result.refused or result.failed):
        # Only when all is back: a VM still journaled is released again by
        # the next command, which retries what the kernel refused.
        for uuid in uuids & state.vms.keys():
            journal.forget_vm(uuid)
        journal.compact()
    return result


def _run(fs, journal: Journal, state: JournalState, before, after, *, restore: bool,
         dry_run: bool) -> Result:
    snapshot = take_snapshot(fs, [v.name for v in before + after])
    p = plan(snapshot, state.baseline, before, after, restore=restore,
             refused=frozenset(state.refused))
    if dry_run:
        return Result(actions=p.actions, notes=p.notes)
    done: Applied = apply(fs, p.actions, journal, state.baseline)
    settled = [k for k in p.settled if k not in done.unchanged] + done.vanished
    journal.settle(sorted(set(settled)))
    return Result(actions=done.done, notes=p.notes, refused=done.refused, failed=done.failed)
