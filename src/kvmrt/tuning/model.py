"""The values the tuning planner works with."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kvmrt.sets import PciAddress, format_ids
from kvmrt.host.irqs import Irq
from kvmrt.host.tasks import Task
from kvmrt.placement import Placement


@dataclass(frozen=True)
class TunedVm:
    """What the host must give an rt VM while it runs (kept in the journal)."""

    uuid: str
    name: str
    shielded: frozenset[int]
    offline: frozenset[int]
    irq_cpu: int | None = None
    pcidevs: tuple[str, ...] = ()

    @classmethod
    def of(cls, p: Placement) -> "TunedVm":
        return cls(uuid=p.vm.uuid.lower(), name=p.vm.name, shielded=p.shielded_cpus,
                   offline=p.offline_cpus, irq_cpu=p.irq_cpu,
                   pcidevs=tuple(str(a) for a in p.vm.pcidevs))

    def as_json(self) -> dict:
        return {"uuid": self.uuid, "name": self.name, "shielded": sorted(self.shielded),
                "offline": sorted(self.offline), "irq_cpu": self.irq_cpu,
                "pcidevs": list(self.pcidevs)}

    @classmethod
    def from_json(cls, d: dict) -> "TunedVm":
        return cls(d["uuid"], d["name"], frozenset(d["shielded"]), frozenset(d["offline"]),
                   d.get("irq_cpu"), tuple(d.get("pcidevs", ())))


@dataclass
class Snapshot:
    """The host state the planner needs, read at one moment."""

    all_cpus: frozenset[int]
    online: dict[int, bool]
    hotpluggable: dict[int, bool]
    tasks: list[Task]
    irqs: list[Irq]
    default_affinity: frozenset[int]
    workqueue: frozenset[int] | None
    cpusets: dict[str, frozenset[int]]
    vfio: dict[PciAddress, list[int]] = field(default_factory=dict)
    protected_pids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Action:
    """One concrete change: ``key`` names the thing, ``old`` and ``new`` its
    values. ``record_only`` actions are journaled but not written (the
    kernel makes that change itself, e.g. cgroup v1 cpusets on offline)."""

    kind: str
    key: str
    label: str
    old: Any
    new: Any
    record_only: bool = False

    def describe(self) -> str:
        verb = "(kernel) " if self.record_only else ""
        return f"{verb}{self.label}: {_show(self.old)} -> {_show(self.new)}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "online" if value else "offline"
    if isinstance(value, frozenset):
        return format_ids(value) or "(none)"
    return str(value)


KIND_WORDS = {
    "cpu-online": "CPUs online/offline", "cpuset": "cgroup cpusets",
    "task-affinity": "threads", "irq-affinity": "IRQs",
    "default-affinity": "default IRQ affinity", "workqueue": "workqueue cpumask",
}


def summarize(actions: list[Action]) -> str:
    """``threads 143, IRQs 25, CPUs online/offline 16`` (in kind order)."""
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.kind] = counts.get(a.kind, 0) + 1
    return ", ".join(f"{KIND_WORDS[k]} {n}" for k, n in counts.items())
