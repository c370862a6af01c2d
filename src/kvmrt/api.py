"""The core API a front end imports: kvmrt without click and without a UI.

Everything the ``kvmrt`` dashboard does to the host, to libvirt and to
the config file goes through this module, with the same rules and the
same words as the command-line tools. Nothing here prints; failures are
:class:`~kvmrt.errors.KvmrtError` subclasses whose text is the CLI's.

A front end opens one :class:`Session` (config path, libvirt URI, the
host root of ``KVMRT_FSROOT``) and calls:

- :func:`vm_statuses` (``kvmrt-stat``): each VM with power state,
  placement and tuning (``ok`` / ``disturbed`` with reasons), optionally
  its threads; :func:`leftover_warnings` for an interrupted kvmrt;
- :func:`boot` (``kvmrt-boot``; a running VM is retuned, see
  :func:`retune`), :func:`shutdown` (``kvmrt-shutdown``), each with
  ``dry_run`` for the plan and a per-VM ``progress`` callback;
- :func:`diagnose` (``kvmrt-validate-config``), :func:`validate_text` and
  :func:`apply_edit` (``kvmrt-edit-config``), :func:`sync_libvirt`
  (``kvmrt-sync-config [-q]``);
- :func:`importable_domains`, :func:`import_into` (``kvmrt-import``) and
  :func:`create_empty`;
- host views: :func:`host_cpus` (topology with CPUSET numbering and
  owners), :func:`cpu_states`, :func:`pci_devices`,
  :class:`InterruptSampler` (``/proc/interrupts`` deltas);
- :func:`result_lines`, :func:`batch_lines`, :func:`outcome_lines`: the
  lines the tools print for a result, so every front end says the same.

:func:`change_refused` says why this process may not change anything
(``None`` for root).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from kvmrt import diagnostics as diag
from kvmrt import edit
from kvmrt.config import inifile
from kvmrt.config.file import DEFAULT_PATH, Config, load_config, parse_config
from kvmrt.errors import ConfigFileError, KvmrtError
from kvmrt.host import HostFS, irqs, read_host
from kvmrt.sets import format_ids
from kvmrt.host.model import Host
from kvmrt.hostview import owners_of
from kvmrt.libvirt_sync.connection import connect, default_uri
from kvmrt.libvirt_sync.domains import Domain, Domains
from kvmrt.libvirt_sync.sync import Outcome, SyncStatus, sync_to_libvirt
from kvmrt import lifecycle
from kvmrt import validate as validate_
from kvmrt.lifecycle import RUNNING, VmResult
from kvmrt.placement import place
from kvmrt.status import VmStatus, collect, leftovers
from kvmrt.tuning import engine
from kvmrt.tuning.journal import Journal

Progress = Callable[[VmResult], None]
Say = Callable[[str], None]

__all__ = [
    "ApplyReport", "BootReport", "ConfigChangedOnDisk", "ConfigHasErrors", "CpuInfo",
    "CpuState", "InterruptSampler", "PciInfo", "Session", "ShutdownReport", "VmsRunning",
    "apply_edit", "boot", "change_refused", "cpu_states", "batch_lines", "result_lines", "host_cpus", "import_into",
    "importable_domains", "leftover_warnings", "outcome_lines", "pci_devices", "resolved_cpuset",
    "retune", "shutdown", "SyncStatus", "sync_libvirt", "validate_text", "vm_statuses",
]


# -- errors -----------------------------------------------------------------

# The config does not validate (``diagnostics``); nothing was changed.
ConfigHasErrors = validate_.ConfigHasErrors
# A clean boot found VMs of the config running; nothing was started.
VmsRunning = lifecycle.VmsRunning


# The file is not what the editor started from; it was not overwritten.
ConfigChangedOnDisk = edit.ChangedOnDisk


class NotRoot(KvmrtError):
    def __init__(self) -> None:
        super().__init__("this changes the host or libvirt and needs root; run it with sudo")


def change_refused() -> str | None:
    """Why this process may not boot, shut down or write the config; None
    when it may (root, as every kvmrt tool that changes something)."""
    return None if os.geteuid() == 0 else str(NotRoot())


# -- the session --------------------------------------------------------------

@dataclass
class Session:
    """One front end's view: config path, libvirt connection, host root.

    The libvirt connection is opened on first use and kept (libvirt's test
    driver keeps its state per connection). The host's topology and PCI
    devices are read once; :meth:`reread_host` reads them again.
    """

    path: str = DEFAULT_PATH
    uri: str | None = None
    fs: HostFS = field(default_factory=HostFS)
    _host: Host | None = field(default=None, repr=False)
    _domains: Domains | None = field(default=None, repr=False)
    # Workers of a front end may open the host or libvirt at once: one reads.
    _opening: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                     compare=False)

    @property
    def hostname(self) -> str:
        name = self.fs.read("proc/sys/kernel/hostname", default="").strip()
        return name or socket.gethostname()

    @property
    def uri_shown(self) -> str:
        return self.uri or default_uri()

    @property
    def host(self) -> Host:
        if self._host is None:
            with self._opening:
                if self._host is None:
                    self._host = read_host(self.fs)
        return self._host

    def reread_host(self) -> Host:
        self._host = None
        return self.host

    @property
    def domains(self) -> Domains:
        """libvirt's domains; raises LibvirtError when it is unreachable."""
        if self._domains is None:
            with self._opening:
                if self._domains is None:
                    self._domains = Domains(connect(self.uri))
        return self._domains

    def config_exists(self) -> bool:
        return os.path.lexists(self.path)

    def load(self) -> Config:
        """The config as the tools read it (ConfigFileError if unreadable)."""
        return load_config(self.path)

    def read_text(self) -> str:
        return inifile.read_config(self.path) if self.config_exists() else ""


# -- status (kvmrt-stat) ------------------------------------------------------

def vm_statuses(session: Session, config: Config, *, include_disabled: bool = False,
                names: list[str] | tuple[str, ...] = (), threads: bool = False
                ) -> list[VmStatus]:
    """What ``kvmrt-stat [-t] [--all] [VM]...`` shows, one per VM in
    config order; libvirt's state is "undefined" for a VM it lacks."""
    selected = config.select(tuple(names), include_disabled=include_disabled)
    states = {vm.uuid.lower(): session.domains.state(vm.uuid) for vm in selected}
    journal = Journal.for_host(session.fs).load()
    return collect(session.fs, selected, states, session.host.topology, journal,
                   threads=threads)


def leftover_warnings(session: Session) -> list[str]:
    """Host changes an interrupted kvmrt left behind (kvmrt-stat's warnings)."""
    journal = Journal.for_host(session.fs).load()
    return leftovers(journal, session.domains.running_uuids())


def resolved_cpuset(vm, host: Host) -> str:
    """The CPUs a VM's cpuset resolves to on this host, as CPU ids, or why not."""
    try:
        return format_ids(place(vm, host.topology).cpuset) or "-"
    except KvmrtError as exc:     # UnknownHostObject: a CPU, core or node it lacks
        return str(exc)


# -- boot and shutdown --------------------------------------------------------

BootReport = lifecycle.BootReport
ShutdownReport = lifecycle.ShutdownReport


def _require_root() -> None:
    if change_refused():
        raise NotRoot()


class _Told(lifecycle.Listener):
    """A front end's callbacks as a :class:`kvmrt.lifecycle.Listener`."""

    def __init__(self, progress: Progress | None = None, say: Say | None = None) -> None:
        self.progress, self.say = progress, say

    def step(self, line: str) -> None:
        if self.say:
            self.say(line)

    def vm(self, result: VmResult) -> None:
        if self.progress:
            self.progress(result)


def boot(session: Session, config: Config, names: list[str] | tuple[str, ...] = (), *,
         include_disabled: bool = False, clean: bool = False, dry_run: bool = False,
         progress: Progress | None = None) -> BootReport:
    """``kvmrt-boot [--all] [--clean] [--dry-run] [VM]...``:
    :func:`kvmrt.lifecycle.boot`, the same code as the tool; ``progress``
    hears each VM's result as it comes, the report holds the warnings
    (irqbalance, guest services). Raises DisabledVmNamed / ConfigHasErrors
    / VmsRunning before any change."""
    if not dry_run:
        _require_root()
    return lifecycle.boot(session.fs, lambda: session.domains, config, session.host, names,
                          every=include_disabled, clean=clean, dry_run=dry_run,
                          listener=_Told(progress=progress))


def retune(session: Session, config: Config, name: str, *,
           dry_run: bool = False) -> BootReport:
    """Repair a running VM's tuning: ``kvmrt-boot VM`` on a running VM."""
    return boot(session, config, (name,), dry_run=dry_run)


def shutdown(session: Session, config: Config, names: list[str] | tuple[str, ...] = (), *,
             include_disabled: bool = False, force: bool = False, timeout: float = 120.0,
             sequential: bool = True, dry_run: bool = False,
             say: Say | None = None) -> ShutdownReport:
    """``kvmrt-shutdown [--force] [--dry-run] [VM]...``:
    :func:`kvmrt.lifecycle.shutdown`, the same code as the tool; ``say``
    hears each step (shutting down, stopped, waiting)."""
    if not dry_run:
        _require_root()
    return lifecycle.shutdown(session.fs, session.domains, config, names,
                              include_disabled=include_disabled, force=force, timeout=timeout,
                              sequential=sequential, dry_run=dry_run, listener=_Told(say=say))


def is_running(state: str) -> bool:
    return state in RUNNING


# The lines kvmrt-boot and kvmrt-shutdown print, for every front end.
result_lines = lifecycle.result_lines
batch_lines = lifecycle.batch_lines
action_lines = lifecycle.action_lines


# -- the config: validate and apply (kvmrt-edit-config) -----------------------

def diagnose(config: Config, host: Host) -> list[diag.Diagnostic]:
    """The load problems and validator findings of the active VMs
    (kvmrt-validate-config)."""
    from kvmrt.validate import validate

    return validate(config, host)


def validate_text(text: str, path: str | None, host: Host) -> tuple[Config, list[diag.Diagnostic]]:
    """Parse and validate a whole config text as kvmrt-edit-config does
    before it saves (disabled VMs too): the config and every diagnostic."""
    from kvmrt.validate import validate

    config = parse_config(text, path)
    return config, validate(config, host, include_disabled=True)


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)   # the changed VMs, synced
    sync_error: str | None = None     # saved, but libvirt was not synced
    lines: list[str] = field(default_factory=list)          # what else kvmrt-edit-config says


def apply_edit(session: Session, original: str, text: str) -> ApplyReport:
    """Save ``text`` as the config when the file still reads ``original``
    (else ConfigChangedOnDisk), atomically under the config's lock, then
    write into libvirt the VMs the edit changed, as ``kvmrt-edit-config``
    does (:mod:`kvmrt.edit`). Refuses a text whose save would be refused
    (ConfigHasErrors) and changes nothing then."""
    _require_root()
    before = parse_config(original, session.path)
    after = parse_config(text, session.path)
    try:
        domains, why = session.domains, None
    except KvmrtError as exc:
        domains, why = None, str(exc)
    check = edit.check_edit(before, after, session.host, domains)
    if check.has_errors:
        raise ConfigHasErrors(session.path, [d for d in check.found if d.is_error])
    edit.save_edit(session.path, original, text)
    report = ApplyReport()
    if domains is None:
        report.sync_error = f"saved, but libvirt was not synced: {why}; run kvmrt-sync-config later"
        return report
    done = edit.sync_edit(before, after, session.host, domains)
    report.outcomes = done.outcomes
    report.lines = done.removed + [line for line in map(edit.unsynced_line, done.unsynced)
                                   if line is not None]
    report.lines += [f"warning: {line}" for line in done.undefined]
    return report


def sync_libvirt(session: Session, config: Config, *, query: bool) -> list[Outcome]:
    """``kvmrt-sync-config [-q]``: write the active VMs into libvirt (with
    ``query``, only say which are out of step, with the diff)."""
    if not query:
        _require_root()
    validate_.require_valid(config, session.host)
    return sync_to_libvirt(config.active(), session.host.topology, session.domains,
                           query=query, path=config.path)


def outcome_lines(outcome: Outcome) -> list[str]:
    """One VM's sync outcome as kvmrt-sync-config prints it."""
    if outcome.status is SyncStatus.FAILED:
        return [f"{outcome.vm}: failed: {'; '.join(outcome.messages)}"]
    return ([f"{outcome.vm}: {outcome.status}"] + outcome.diff.splitlines()
            + [f"warning: {m}" for m in outcome.messages])


# -- import (kvmrt-import) -----------------------------------------------------

def importable_domains(session: Session, config: Config) -> list[Domain]:
    """libvirt's persistent domains the config does not have yet."""
    return [d for d in session.domains.all() if config.find(d.uuid) is None]


def import_into(session: Session, names: list[str]) -> list[str]:
    """``kvmrt-import NAME...`` (creates the file): the names added."""
    from kvmrt.config.file import editing, write_config
    from kvmrt.libvirt_sync.importer import import_domains

    _require_root()
    chosen = [d for d in session.domains.all() if d.name in names]
    with editing(session.path, create=True) as config:
        broken = [p for p in config.problems if p.is_error]
        if broken:
            raise ConfigHasErrors(config.path, broken)
        result = import_domains(config, chosen, session.host, update=False)
        if result.added:
            write_config(config)
    if result.refused:
        raise KvmrtError("; ".join(result.refused)
                         + (f" (imported: {', '.join(result.added)})" if result.added else ""))
    return result.added


def create_empty(path: str) -> None:
    """Create an empty config file (atomically; refuses to overwrite)."""
    _require_root()
    with inifile.locked(path):
        if os.path.lexists(path):
            raise KvmrtError(f"{path}: exists already; not overwritten")
        inifile.write_atomic(path, "")


# -- host views ------------------------------------------------------------------

@dataclass(frozen=True)
class CpuInfo:
    cpu: int
    online: bool
    package: int | None
    die: int | None
    node: int | None
    core: int | None
    siblings: frozenset[int]
    owners: tuple[str, ...]


def host_cpus(session: Session, config: Config | None) -> list[CpuInfo]:
    """Every CPU with the numbers CPUSET uses (core c, die d, node n) and
    the VMs that own it (kvmrt-show-host)."""
    owners = owners_of(config, session.host).cpus if config else {}
    return [CpuInfo(c.cpu, c.online, c.package, c.die, c.node, c.core, c.siblings,
                    tuple(owners.get(c.cpu, [])))
            for c in sorted(session.host.topology.cpus.values(), key=lambda c: c.cpu)]


@dataclass(frozen=True)
class PciInfo:
    address: str
    iommu_group: int | None
    group_members: tuple[str, ...]
    numa_node: int | None
    driver: str | None
    bridge: bool
    owners: tuple[str, ...]


def pci_devices(session: Session, config: Config | None) -> list[PciInfo]:
    """The host's PCI devices with IOMMU group, NUMA node, driver and the
    VMs of the config that pass them through."""
    host = session.host
    owners = owners_of(config, host).devices if config else {}
    return [PciInfo(str(d.address), d.iommu_group,
                    tuple(sorted(str(m) for m in host.group_members(d.address)))
                    if d.iommu_group is not None else (str(d.address),),
                    d.numa_node, d.driver, d.bridge, tuple(owners.get(d.address, [])))
            for d in sorted(host.pci.values(), key=lambda d: d.address)]


@dataclass(frozen=True)
class CpuState:
    cpu: int
    online: bool
    shielded_for: tuple[str, ...]    # the tuned rt VMs that shield it
    owners: tuple[str, ...]
    movable_threads: int             # threads kvmrt could move that may run on it
    irqs: int                        # IRQs whose affinity includes it


def cpu_states(session: Session, config: Config | None) -> list[CpuState]:
    """Per CPU: online, shielded (for which tuned VM), owner VMs, and how
    many movable threads and IRQs are allowed on it (reads every thread)."""
    snap = engine.take_snapshot(session.fs)
    tuned = Journal.for_host(session.fs).load().vms.values()
    owners = owners_of(config, session.host).cpus if config else {}
    movable = [t for t in snap.tasks if not t.pinned]
    return [CpuState(cpu, snap.online.get(cpu, False),
                     tuple(vm.name for vm in tuned if cpu in vm.shielded),
                     tuple(owners.get(cpu, [])),
                     sum(1 for t in movable if cpu in t.affinity),
                     sum(1 for irq in snap.irqs if cpu in irq.affinity))
            for cpu in sorted(snap.all_cpus)]


class InterruptSampler:
    """Interrupts per second per line and CPU, between successive samples."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs
        self.cpus, self._last = self._read()
        self._at = time.monotonic()

    def sample(self) -> dict[str, list[float]]:
        cpus, now = self._read()
        at = time.monotonic()
        span = max(at - self._at, 1e-6)
        rates = {irq: [max(n - o, 0) / span for n, o in zip(counts, self._last.get(irq, counts))]
                 for irq, counts in now.items()}
        self.cpus, self._last, self._at = cpus, now, at
        return rates

    def _read(self) -> tuple[list[int], dict[str, list[int]]]:
        return irqs.interrupt_counts(self.fs.read(irqs.INTERRUPTS, default=""))


# -- the config file as a whole (the dashboard's File menu, Edit ▸ Lock) -------

def clone_config(source: str, target: str) -> None:
    """Copy the config at ``source`` to the new file ``target``, with the
    source's mode (a locked config stays root's). The copy is complete
    before it gets its name; an existing ``target`` is never overwritten."""
    _require_root()
    text = inifile.read_config(source)
    mode = os.stat(source).st_mode & 0o7777
    with inifile.locked(target):
        inifile.write_new(target, text, mode)


@dataclass(frozen=True)
class LockReport:
    """Mode and owner (uid, gid) of the config before and after the lock."""

    path: str
    before: tuple[int, int, int]
    after: tuple[int, int, int]

    @property
    def changed(self) -> bool:
        return self.before != self.after


LOCKED = (0o600, 0, 0)      # read and written by root alone


def lock_config(path: str) -> LockReport:
    """Let only root read or write the config: mode 0600, owner root:root
    (a symbolic link's target is locked)."""
    _require_root()
    target = os.path.realpath(path)
    with inifile.locked(path):
        try:
            before = mode_owner(target)
            os.chown(target, 0, 0)
            os.chmod(target, LOCKED[0])      # after chown, which may clear set-id bits
            after = mode_owner(target)
        except OSError as exc:
            raise ConfigFileError(path, exc.strerror or str(exc)) from exc
    return LockReport(target, before, after)


def mode_owner(path: str) -> tuple[int, int, int]:
    """A file's permission bits, uid and gid."""
    st = os.stat(path)
    return st.st_mode & 0o7777, st.st_uid, st.st_gid


def import_preview(session: Session, text: str, names: list[str]
                   ) -> tuple[list[tuple[str, list[tuple[str, str]]]], list[str]]:
    """``kvmrt-import NAME...`` on a config text instead of the file: the
    sections it would append (UUID, entries) and what it refused or could
    not express, as kvmrt-import says it. Nothing is written."""
    from kvmrt.config.model import vm_to_entries
    from kvmrt.libvirt_sync.importer import import_domains

    config = parse_config(text, session.path)
    chosen = [d for d in session.domains.all() if d.name in names]
    result = import_domains(config, chosen, session.host, update=False)
    added = [config.find(d.uuid) for d in chosen if d.name in result.added]
    return [(vm.uuid, vm_to_entries(vm)) for vm in added], result.refused + result.notes
