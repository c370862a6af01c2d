"""The facts the host checks share, each read once and only when needed.

A :class:`Context` holds the :class:`HostFS` root, the process adapter
(:class:`~kvmrt.hostcheck.machine.Machine`), the host snapshot (topology
and PCI devices), the optional config with the placements of its VMs,
and the libvirt session. Files that several checks parse (``/proc/cmdline``,
``/proc/cpuinfo``) are parsed here.
"""

from __future__ import annotations

from functools import cached_property

from kvmrt.config.file import Config
from kvmrt.host.cpuctl import CPU_DIR
from kvmrt.host.fs import HostFS
from kvmrt.host.model import Host
from kvmrt.host.topology import NODE_DIR
from kvmrt.hostcheck.kernel import CpuInfo, KernelCmdline
from kvmrt.hostcheck.machine import KvmAccess, LibvirtSession, Machine, Undetermined
from kvmrt.placement import Placement, place_all


class Context:
    def __init__(self, fs: HostFS, machine: Machine, host: Host, *,
                 config: Config | None = None, libvirt: LibvirtSession) -> None:
        self.fs = fs
        self.machine = machine
        self.host = host
        self.config = config
        self.libvirt = libvirt

    # -- kernel text files ---------------------------------------------------
    @cached_property
    def cmdline(self) -> KernelCmdline:
        """``/proc/cmdline``; empty when the root has none."""
        return KernelCmdline.parse(self.fs.read("proc/cmdline", default=""))

    @cached_property
    def has_cmdline(self) -> bool:
        return self.fs.exists("proc/cmdline")

    @cached_property
    def cpuinfo(self) -> CpuInfo | None:
        text = self.fs.read("proc/cpuinfo", default=None)
        return None if text is None else CpuInfo.parse(text)

    def sysctl(self, name: str) -> str | None:
        """``/proc/sys/<name>`` (``kernel/nmi_watchdog``), None when this
        kernel lacks it; :class:`Undetermined` when the root has no
        ``/proc/sys`` at all."""
        value = self.fs.read(f"proc/sys/{name}", default=None)
        if value is None and not self.fs.is_dir(f"proc/sys/{name.partition('/')[0]}"):
            raise missing(self, f"proc/sys/{name}")
        return value

    def require_cmdline(self) -> KernelCmdline:
        """``/proc/cmdline``, or :class:`Undetermined` when the root lacks it."""
        if not self.has_cmdline:
            raise missing(self, "proc/cmdline")
        return self.cmdline

    def require_dev(self) -> None:
        """:class:`Undetermined` when the root has no ``/dev`` (a capture of
        ``/sys`` and ``/proc`` only), where device checks would find nothing."""
        if not self.fs.is_dir("dev"):
            raise missing(self, "dev")

    @property
    def nr_cpu_ids(self) -> int:
        return max(self.host.topology.all_cpus) + 1

    @property
    def online_cpus(self) -> frozenset[int]:
        return self.host.topology.online_cpus

    # -- the config ----------------------------------------------------------
    @cached_property
    def placements(self) -> list[Placement]:
        """Placements of the config's active VMs that can be placed on this host."""
        if self.config is None:
            return []
        return place_all(self.config.active(), self.host.topology)

    @cached_property
    def rt_placements(self) -> list[Placement]:
        return [p for p in self.placements if p.rt and p.usable_cpus]

    @cached_property
    def rt_usable(self) -> frozenset[int]:
        """The CPUs rt VMs run on (one online thread per core)."""
        return frozenset().union(*(p.usable_cpus for p in self.rt_placements))

    @cached_property
    def rt_owned(self) -> frozenset[int]:
        """The CPUs rt VMs own: their cpusets and the SMT siblings of those cores."""
        return frozenset().union(*(p.owned_cpus for p in self.rt_placements))

    @property
    def config_name(self) -> str:
        return self.config.path if self.config and self.config.path else "the config"

    # -- shared probes -------------------------------------------------------
    @cached_property
    def kvm(self) -> KvmAccess:
        return self.machine.open_kvm()

    def require_cpuinfo(self) -> CpuInfo:
        """``/proc/cpuinfo``, or :class:`Undetermined` when the root lacks it."""
        if self.cpuinfo is None:
            raise missing(self, "proc/cpuinfo")
        return self.cpuinfo

    def read_module_param(self, module: str, param: str) -> str | None:
        return self.fs.read(f"sys/module/{module}/parameters/{param}", default=None)


def shown(rel: str) -> str:
    """A kernel-relative path as an administrator writes it: ``/proc/cmdline``."""
    return "/" + rel.lstrip("/")


def missing(ctx: Context, rel: str) -> Undetermined:
    """The error for a file every Linux host has but this root lacks."""
    return Undetermined(f"{shown(rel)} is missing below {ctx.fs.root}",
                        f"mount procfs and sysfs below {ctx.fs.root}, or capture {shown(rel)} too")


def focus_cpus(ctx: Context) -> tuple[frozenset[int], str]:
    """The CPUs whose tuning matters, described: the online CPUs of rt VMs
    when the config has any, else every online CPU."""
    if ctx.rt_usable:
        return ctx.rt_usable & ctx.online_cpus, "rt CPUs"
    return ctx.online_cpus, "CPUs"
