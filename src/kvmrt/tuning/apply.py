"""Carry out a plan through the host adapters.

The old values of the whole batch are journaled (one fsync) before the
first write. Every write is read back. Expected refusals are outcomes, not
failures: a thread that vanished, a thread the kernel binds to its CPU, a
managed IRQ, a CPU the kernel will not take offline. They are reported and
the rest goes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvmrt.sets import format_ids
from kvmrt.errors import (HostWriteError, IrqRefused, NotMovable, OfflineRefused,
                          TaskVanished)
from kvmrt.host import cgroups, cpuctl, irqs, tasks
from kvmrt.host.fs import HostFS
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.model import Action, Snapshot


@dataclass
class Applied:
    done: list[Action] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)   # expected refusals, reported
    failed: list[str] = field(default_factory=list)    # unexpected: the job failed
    vanished: list[str] = field(default_factory=list)  # keys of things that are gone
    unchanged: set[str] = field(default_factory=set)   # keys refused or failed


def apply(fs: HostFS, snapshot: Snapshot, actions: list[Action], journal: Journal,
          baseline: dict[str, Any]) -> Applied:
    journal.record_old(actions, baseline)
    result = Applied()
    writer = _Writer(fs, snapshot)
    cpusets = {a.key.split(":", 1)[1]: a.new for a in actions
               if a.kind == "cpuset" and not a.record_only}
    for action in actions:
        if action.record_only or action.kind == "cpuset":
            continue
        _one(writer, action, journal, result)
    if cpusets:
        try:
            cgroups.restore_cpusets(fs, cpusets)
            result.done += [a for a in actions if a.kind == "cpuset" and not a.record_only]
        except HostWriteError as exc:
            result.failed.append(f"cpusets: {exc}")
            result.unchanged |= {f"cpuset:{g}" for g in cpusets}
    result.done += [a for a in actions if a.record_only]
    return result


def _one(writer: "_Writer", action: Action, journal: Journal, result: Applied) -> None:
    try:
        writer.write(action)
        result.done.append(action)
    except TaskVanished:
        result.vanished.append(action.key)
    except (NotMovable, IrqRefused, OfflineRefused) as exc:
        journal.refused(action.key, str(exc))
        result.refused.append(f"{action.label}: {exc}")
        result.unchanged.add(action.key)
    except HostWriteError as exc:
        result.failed.append(f"{action.label}: {exc}")
        result.unchanged.add(action.key)


class _Writer:
    """One write per action kind, each read back."""

    def __init__(self, fs: HostFS, snapshot: Snapshot) -> None:
        self.fs = fs
        self.tasks = {f"task:{t.tid}:{t.starttime}": t for t in snapshot.tasks}

    def write(self, a: Action) -> None:
        getattr(self, "_" + a.kind.replace("-", "_"))(a)

    def _cpu_online(self, a: Action) -> None:
        cpuctl.set_online(self.fs, int(a.key.split(":")[1]), a.new)

    def _task_affinity(self, a: Action) -> None:
        task = self.tasks[a.key]
        tasks.set_affinity(self.fs, task, a.new)
        now = tasks.read_task(self.fs, task.pid, task.tid).affinity
        if now != a.new:
            raise HostWriteError(f"thread {task.tid}", f"affinity reads back as "
                                 f"{format_ids(now)}, not {format_ids(a.new)}")

    def _irq_affinity(self, a: Action) -> None:
        # The effective affinity may follow only at the IRQ's next interrupt
        # on hosts without interrupt remapping; kvmrt-stat checks it.
        irqs.set_irq_affinity(self.fs, int(a.key.split(":")[1]), a.new)

    def _default_affinity(self, a: Action) -> None:
        irqs.write_default_affinity(self.fs, a.new)

    def _workqueue(self, a: Action) -> None:
        irqs.write_workqueue_mask(self.fs, a.new)
