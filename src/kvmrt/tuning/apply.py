"""Carry out a plan through the host adapters.

The old values of the whole batch are journaled (one fsync) before the
first write. Every write is read back. Expected refusals are outcomes, not
failures: a thread that vanished, a thread the kernel binds to its CPU, a
managed IRQ, a CPU the kernel will not take offline. They are reported and
the rest goes on.

Each action is written by its setting (:mod:`kvmrt.tuning.settings`); a
kind whose writes depend on each other (cgroup cpusets: a child within its
parent) is written as one batch, after the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.errors import (HostWriteError, IrqRefused, NotMovable, OfflineRefused,
                          TaskVanished)
from kvmrt.host.fs import HostFS
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.model import Action, Setting, Value


@dataclass
class Applied:
    done: list[Action] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)   # expected refusals, reported
    failed: list[str] = field(default_factory=list)    # unexpected: the job failed
    vanished: list[str] = field(default_factory=list)  # keys of things that are gone
    unchanged: set[str] = field(default_factory=set)   # keys refused or failed


def apply(fs: HostFS, actions: list[Action], journal: Journal,
          baseline: dict[str, Value]) -> Applied:
    journal.record_old(actions, baseline)
    result = Applied()
    written = [a for a in actions if not a.record_only]
    batches: dict[type[Setting], list[Action]] = {}
    for action in written:
        if action.setting.batch is None:
            _one(fs, action, journal, result)
        else:
            batches.setdefault(type(action.setting), []).append(action)
    for kind, batch in batches.items():
        _batch(fs, kind, batch, result)
    result.done += [a for a in actions if a.record_only]
    return result


def _one(fs: HostFS, action: Action, journal: Journal, result: Applied) -> None:
    try:
        action.setting.write(fs, action.new)
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


def _batch(fs: HostFS, kind: type[Setting], actions: list[Action], result: Applied) -> None:
    try:
        kind.write_batch(fs, {a.setting: a.new for a in actions})
        result.done += actions
    except HostWriteError as exc:
        result.failed.append(f"{kind.batch}: {exc}")
        result.unchanged |= {a.key for a in actions}
