"""The values the tuning planner works with: the tuned VMs, the host
snapshot, what the VMs want, the host settings and the changes of them."""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar, Iterator, Union

from kvmrt.sets import PciAddress, format_ids
from kvmrt.host.fs import HostFS
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


Value = Union[bool, frozenset[int]]
"""What a setting holds: a CPU is online or not; a mask is a set of CPUs."""


@dataclass(frozen=True)
class Wanted:
    """What the tuned rt VMs together ask of the host."""

    all_cpus: frozenset[int] = frozenset()
    shielded: frozenset[int] = frozenset()
    offline: frozenset[int] = frozenset()
    irq_cpu_of: dict = field(default_factory=dict)   # PCI address text -> CPU

    @classmethod
    def of(cls, vms: list[TunedVm], all_cpus: frozenset[int]) -> "Wanted":
        return cls(
            all_cpus=all_cpus,
            shielded=frozenset().union(*(v.shielded for v in vms)),
            offline=frozenset().union(*(v.offline for v in vms)),
            irq_cpu_of={a: v.irq_cpu for v in vms if v.irq_cpu is not None for a in v.pcidevs})

    @functools.cached_property
    def host(self) -> frozenset[int]:
        """The CPUs left to the host: neither shielded nor taken offline."""
        return self.all_cpus - self.shielded - self.offline


class Setting(ABC):
    """One thing of the host that kvmrt changes and puts back, as a value:
    it knows its journal key, its label, how to show its values, what the
    tuned rt VMs want of it and how it is written (and read back).

    The kinds are in :mod:`kvmrt.tuning.settings`, one class each; its
    ``KINDS`` lists them in the order they are planned and written.
    """

    words: ClassVar[str]                    # in a summary: "threads 143"
    clipped: ClassVar[bool] = False         # the kernel drops offline CPUs from it
    kernel_narrows: ClassVar[bool] = False  # ... and narrowing it is the kernel's job
    batch: ClassVar[str | None] = None      # written all at once by write_batch, as this

    @property
    @abstractmethod
    def key(self) -> str:
        """Its name in the journal (``journal.jsonl`` "key"): never change it."""

    @property
    @abstractmethod
    def label(self) -> str:
        """Its name for people: ``thread 812 (sshd)``."""

    @property
    def journal_label(self) -> str | None:
        """Its label in the journal; None where the key names it well enough."""
        return self.label

    @property
    def follows_kernel(self) -> bool:
        """The kernel sets it (a threaded IRQ handler): never blamed on anyone."""
        return False

    def show(self, value: Value) -> str:
        """A value as kvmrt prints it: a CPU list, ``(none)`` when empty."""
        if isinstance(value, frozenset):
            return format_ids(value) or "(none)"
        return str(value)

    @classmethod
    @abstractmethod
    def present(cls, s: Snapshot) -> Iterator[tuple["Setting", Value]]:
        """Every setting of this kind on the host, with its current value."""

    @abstractmethod
    def target(self, base: Value, w: Wanted) -> Value:
        """What it should hold, given its baseline and the tuned rt VMs."""

    @abstractmethod
    def write(self, fs: HostFS, value: Value) -> None:
        """Write ``value``; raise a :class:`kvmrt.errors.HostWriteError`
        (or a named refusal) unless it reads back."""

    @classmethod
    def write_batch(cls, fs: HostFS, values: dict["Setting", Value]) -> None:
        """Write several at once, for a kind whose writes depend on each
        other (a ``batch``)."""
        raise NotImplementedError(cls.__name__)


@dataclass(frozen=True)
class Action:
    """One concrete change of ``setting`` from ``old`` to ``new``.
    ``record_only`` actions are journaled but not written (the kernel makes
    that change itself, e.g. cgroup v1 cpusets on offline)."""

    setting: Setting
    old: Value
    new: Value
    record_only: bool = False

    @property
    def key(self) -> str:
        return self.setting.key

    @property
    def label(self) -> str:
        return self.setting.label

    def describe(self) -> str:
        verb = "(kernel) " if self.record_only else ""
        show = self.setting.show
        return f"{verb}{self.label}: {show(self.old)} -> {show(self.new)}"


def summarize(actions: list[Action]) -> str:
    """``threads 143, IRQs 25, CPUs online/offline 16`` (in plan order)."""
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.setting.words] = counts.get(a.setting.words, 0) + 1
    return ", ".join(f"{words} {n}" for words, n in counts.items())
