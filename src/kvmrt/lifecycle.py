"""Boot and shut down VMs with their host tuning (SPEC 3 and 5).

Boot, per VM in config order: for an rt VM tune the host (siblings
offline, shielding, vfio IRQs), sync the domain XML, start the domain (a
running one is not an error: its tuning is re-applied, which repairs it),
then check the pinning of its running threads. A VM that fails to start
gets its host changes undone; VMs already started stay up and tuned.

Shutdown: ask every selected running VM to shut down (concurrently, or one
after another), wait up to a timeout, power off with ``force``, then
release their tuning: what no other running rt VM needs goes back exactly.
A paused VM is resumed first: a paused guest cannot see the ACPI request,
and powering it off unasked would lose what it has not written.

A VM *runs* while its QEMU process exists, whatever libvirt's word for it
(:data:`RUNNING`): boot retunes it, shutdown stops it, stat checks it.

Which VMs a front end boots or shuts down (:func:`to_boot`,
:func:`to_shut_down`), which block ``--clean`` (:func:`already_running`)
and the exit status of a run (:func:`exit_status`) are decided here, so
that every front end follows the same rules. :func:`boot` and
:func:`shutdown` are the whole of ``kvmrt-boot`` and ``kvmrt-shutdown``
but for what they print: kvmrt-boot, kvmrt-shutdown and the dashboard
(:mod:`kvmrt.api`) call them, and hear what happens as it happens
through a :class:`Listener`. Every host change they make is told to the
system log (:mod:`kvmrt.hostlog`), whoever calls them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable

from kvmrt import diagnostics as diag
from kvmrt.config.file import Config
from kvmrt.config.model import VmConfig
from kvmrt.sets import format_ids
from kvmrt.errors import KvmrtError
from kvmrt.host import qemu, tasks
from kvmrt.host.fs import HostFS
from kvmrt.host.model import Host, Topology
from kvmrt.host.procs import IRQBALANCE, pids_named
from kvmrt.hostlog import HostLog
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.sync import NotDefined, SyncStatus, sync_to_libvirt
from kvmrt.placement import Placement, place, place_all
from kvmrt.tuning import engine, watcher
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.model import Action, TunedVm, summarize
from kvmrt.validate import require_valid

Say = Callable[[str], None]


def quiet(_line: str) -> None:
    """A progress callback that shows nothing."""


# While a shutdown waits, a line naming the VMs still running, this often (seconds).
WAITING_EVERY = 10.0


class RunStatus(StrEnum):
    """What became of one VM (the word kvmrt-boot and kvmrt-shutdown print)."""

    STARTED = "started"
    RETUNED = "retuned"               # it ran already: its tuning was re-applied
    WOULD_START = "would be started"  # --dry-run
    WOULD_RETUNE = "would be retuned"
    STOPPED = "stopped"
    POWERED_OFF = "powered off"       # --force, after the timeout
    FAILED = "failed"


@dataclass
class VmResult:
    name: str
    status: RunStatus
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


# libvirt's states of an active domain (its QEMU process exists).
RUNNING = ("running", "paused", "idle", "in shutdown", "pmsuspended", "crashed")


class DisabledVmNamed(KvmrtError):
    """A disabled VM was named to boot; refused before anything changed.
    ``diagnostics`` name each with its file and line."""

    def __init__(self, diagnostics: list[diag.Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} disabled VM(s) named; nothing booted")
        self.diagnostics = diagnostics


def to_boot(config: Config, names: tuple[str, ...] | list[str], *,
            every: bool) -> list[VmConfig]:
    """The VMs to boot, in config order: the named ones, else the enabled
    ones with autostart (``every``: regardless of autostart).

    A disabled VM is never booted: naming one raises :class:`DisabledVmNamed`.
    """
    if not names:
        return [vm for vm in config.active() if every or vm.autostart]
    chosen = config.select(names)
    disabled = [diag.error(
        "disabled", "a disabled VM is never booted; set disabled = false with "
        "kvmrt-edit-config to boot it", vms=(vm.label,), attribute="disabled",
        line=vm.line_of("disabled"), file=config.path) for vm in chosen if vm.disabled]
    if disabled:
        raise DisabledVmNamed(disabled)
    return chosen


def to_shut_down(config: Config, names: tuple[str, ...] | list[str], *,
                 include_disabled: bool) -> list[VmConfig]:
    """The VMs to shut down: the named ones (disabled or not), else the
    enabled ones (``include_disabled``: every one)."""
    return config.select(names, include_disabled=include_disabled)


def already_running(config: Config, running: set[str]) -> list[VmConfig]:
    """The enabled VMs of ``config`` whose domain runs (``running``: lower-case
    UUIDs); boot ``--clean`` starts nothing while there are any. A disabled
    VM neither boots nor blocks."""
    return [vm for vm in config.active() if vm.uuid.lower() in running]


def running_of(domains: Domains, vms: list[VmConfig]) -> list[VmConfig]:
    """Those of ``vms`` whose domain runs (:data:`RUNNING`)."""
    return [vm for vm in vms if domains.state(vm.uuid) in RUNNING]


def exit_status(results: list[VmResult]) -> int:
    """1 when any VM failed, else 0."""
    return 1 if any(r.error for r in results) else 0


class VmsRunning(KvmrtError):
    """A clean boot found enabled VMs of the config running; nothing started."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"--clean: nothing started, because VMs of the config already run: "
                         f"{', '.join(names)}; stop them first "
                         f"(kvmrt-shutdown {' '.join(names)})")
        self.names = names


def irqbalance_warning(fs: HostFS, config: Config, topology: Topology) -> str | None:
    """Why a running irqbalance undoes the shielding, and the line that
    bans the CPUs the config's rt VMs own; None when it does not run."""
    if not pids_named(fs, IRQBALANCE):
        return None
    placed = place_all((vm for vm in config.active() if vm.rt), topology)
    banned = format_ids(frozenset().union(*(p.owned_cpus for p in placed)))
    return ("irqbalance is running and will move IRQs back onto shielded CPUs; stop it "
            "(systemctl disable --now irqbalance) or ban the real-time CPUs with this line "
            "in /etc/default/irqbalance (/etc/sysconfig/irqbalance on RHEL), then restart "
            f"it: IRQBALANCE_BANNED_CPULIST={banned}")


# What the engine runs over a whole batch are called (Listener.batch).
RECOVERED, SHIELDED, RESTORED = "recovered", "shielded new threads", "restored"


class Listener:
    """What a :func:`boot` or :func:`shutdown` tells as it goes; this base
    hears nothing, a front end overrides what it shows."""

    def step(self, line: str) -> None:
        """A step of one VM begins or ends (``RedHawk: tuning the host``,
        ``RedHawk: stopped``), or a shutdown waits."""

    def warning(self, line: str) -> None:
        """Something to act on: irqbalance runs, kvmrt-gsd did not start."""

    def vm(self, result: VmResult) -> None:
        """One VM's result, as soon as it is known."""

    def batch(self, what: str, result: engine.Result) -> None:
        """An engine run over the whole batch: :data:`RECOVERED`,
        :data:`SHIELDED` or :data:`RESTORED`."""


def action_lines(actions: list[Action], *, verbose: bool) -> list[str]:
    """Host changes as the tools print them: each (``verbose``), or counted."""
    if verbose:
        return [f"  {a.describe()}" for a in actions]
    return [f"  changed: {summarize(actions)}"] if actions else []


def result_lines(result: VmResult, *, verbose: bool = False) -> list[str]:
    """A VM's result as kvmrt-boot and kvmrt-shutdown print it: one line
    (``RedHawk: started``, ``RedHawk: failed: ...``), its host changes,
    then notes."""
    head = (f"{result.name}: failed: {result.error}" if result.error
            else f"{result.name}: {result.status}")
    return ([head] + action_lines(result.actions, verbose=verbose)
            + [f"  note: {note}" for note in result.notes])


def batch_lines(what: str, result: engine.Result, *,
                verbose: bool = False) -> tuple[list[str], list[str]]:
    """An engine run over the batch as the tools print it: (lines,
    warnings); nothing when it neither changed nor refused anything."""
    problems = result.notes + result.refused + result.failed
    if what == RESTORED:
        head = ["host: restored"] + action_lines(result.actions, verbose=verbose)
        return (head if result.actions else []) + [f"  note: {p}" for p in problems], []
    if not result.actions:
        return [], problems
    if what == SHIELDED:
        return [f"shielded the new VMs' threads: {summarize(result.actions)}"], problems
    return [f"recovered: restored {len(result.actions)} settings left by an interrupted "
            "kvmrt or a VM stopped without kvmrt-shutdown"], problems


class _Logged(Listener):
    """A listener that also tells the system log each host change."""

    def __init__(self, listener: Listener, log: HostLog | None) -> None:
        self.listener, self.log = listener, log
        self.step, self.warning = listener.step, listener.warning

    def vm(self, result: VmResult) -> None:
        if self.log:
            self.log.vm(result)
        self.listener.vm(result)

    def batch(self, what: str, result: engine.Result) -> None:
        if self.log:
            self.log.batch(what, result)
        self.listener.batch(what, result)


@dataclass
class BootReport:
    selected: list[str] = field(default_factory=list)       # VM names, config order
    results: list[VmResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    recovered: engine.Result = field(default_factory=engine.Result)
    shielded: engine.Result = field(default_factory=engine.Result)

    @property
    def failed(self) -> bool:
        return exit_status(self.results) != 0


def boot(fs: HostFS, open_domains: Callable[[], Domains], config: Config, host: Host,
         names: tuple[str, ...] | list[str] = (), *, every: bool = False,
         clean: bool = False, dry_run: bool = False, listener: Listener = Listener(),
         log: HostLog | None = None) -> BootReport:
    """``kvmrt-boot [--all] [--clean] [--dry-run] [VM]...``: the VMs of
    :func:`to_boot`, in config order, after recovering what an interrupted
    kvmrt left; then guest services, the shielding of new non-rt threads
    and the vfio IRQ watcher. Raises DisabledVmNamed or ConfigHasErrors
    before libvirt is asked anything (``open_domains`` is called after),
    VmsRunning before any change. ``log``: the system log (default
    :class:`HostLog`; a dry run tells it nothing)."""
    from kvmrt.guestsvc import service as guestsvc   # kvmrt-stat needs none of it

    names = tuple(names)
    selected = to_boot(config, names, every=every)
    require_valid(config, host, names=names)
    domains = open_domains()
    running = domains.running_uuids()
    if clean and (busy := already_running(config, running)):
        raise VmsRunning([vm.label for vm in busy])
    tell = _Logged(listener, None if dry_run else log or HostLog())
    report = BootReport(selected=[vm.name for vm in selected])
    if not dry_run:
        report.recovered = engine.recover(fs, running)
        tell.batch(RECOVERED, report.recovered)
    if any(vm.rt for vm in selected):
        _warn(report, tell, [irqbalance_warning(fs, config, host.topology)])
    if not dry_run:
        guestsvc.prepare(selected)   # the channel sockets' directory, before QEMU starts
    for vm in selected:
        result = boot_vm(fs, domains, vm, host.topology, dry_run=dry_run, path=config.path,
                         progress=quiet if dry_run else tell.step)
        report.results.append(result)
        tell.vm(result)
    if not dry_run:
        _warn(report, tell, guestsvc.start_for(config, config.path, domains.running_uuids()))
        _after_boot(fs, selected, report, tell)
    return report


def _warn(report: BootReport, tell: Listener, lines: list[str | None]) -> None:
    for line in filter(None, lines):
        report.warnings.append(line)
        tell.warning(line)


def _after_boot(fs: HostFS, selected: list[VmConfig], report: BootReport,
                tell: Listener) -> None:
    if any(not vm.rt for vm in selected):
        # A non-rt VM started beside tuned rt VMs runs everywhere at first.
        report.shielded = engine.refresh(fs)
        tell.batch(SHIELDED, report.shielded)
    if any(vm.rt and vm.pcidevs for vm in selected):
        watcher.start_background(fs)


def boot_vm(fs: HostFS, domains: Domains, vm: VmConfig, topology: Topology, *,
            dry_run: bool, progress: Say = quiet, path: str | None = None) -> VmResult:
    """Boot (or retune) one VM; ``progress`` hears each step as it begins;
    ``path``: the config's, for what to do about a VM libvirt lacks."""
    p = place(vm, topology)
    state = domains.state(vm.uuid)
    running = state in RUNNING
    result = VmResult(vm.name, RunStatus.RETUNED if running else RunStatus.STARTED)
    if state == "undefined":   # before any host change
        result.status, result.error = RunStatus.FAILED, str(NotDefined(vm, path))
        return result
    try:
        if vm.rt:
            progress(f"{vm.name}: tuning the host")
            _collect(result, engine.tune(fs, TunedVm.of(p), dry_run=dry_run))
        _sync_and_start(domains, p, topology, running=running, dry_run=dry_run,
                        result=result, progress=progress)
    except KvmrtError as exc:
        result.status, result.error = RunStatus.FAILED, str(exc)
        if vm.rt and not dry_run and not running:   # a running VM keeps its tuning
            _collect(result, engine.release(fs, [p.vm.uuid.lower()]))
        return result
    if dry_run:
        result.status = RunStatus.WOULD_RETUNE if running else RunStatus.WOULD_START
    else:
        if p.cpuset:
            progress(f"{vm.name}: checking the pinning of its threads")
        result.notes += check_pinning(fs, p)
    return result


def _sync_and_start(domains: Domains, p: Placement, topology: Topology, *, running: bool,
                    dry_run: bool, result: VmResult, progress: Say) -> None:
    """Write the domain XML; start the domain, or pin a running one live."""
    progress(f"{p.vm.name}: syncing the domain XML")
    (synced,) = sync_to_libvirt([p.vm], topology, domains, query=dry_run)
    if synced.status is SyncStatus.FAILED:
        raise KvmrtError("; ".join(synced.messages))
    result.notes += synced.messages   # the tuning it removes, what libvirt did not keep
    if dry_run:
        return
    if not running:
        progress(f"{p.vm.name}: starting the domain")
        domains.start(p.vm.uuid)
        return
    progress(f"{p.vm.name}: pinning its running threads")
    try:
        domains.pin_live(p.vm.uuid, p.vcpu_cpus, p.emulator_cpus)
    except KvmrtError as exc:
        result.notes.append(f"{exc}; the pins in its XML apply at its next start")


def check_pinning(fs: HostFS, p: Placement, *, wait: float = 5.0) -> list[str]:
    """Compare the running threads with the placement; [] when all is right."""
    if not p.cpuset:
        return []   # not pinned: nothing to check
    status = _wait_for_status(fs, p.vm.name, wait)
    if status is None:
        return [f"no QEMU status for {p.vm.name} under run/libvirt/qemu; pinning not checked"]
    return pinning_problems(p, status, tasks.read_tasks(fs, [status.pid]))


def pinning_problems(p: Placement, status: qemu.QemuStatus, threads: list) -> list[str]:
    """vCPU threads allowed elsewhere than planned; other QEMU threads
    allowed outside the emulator CPUs (an emulator thread must never share
    an rt vCPU's CPU)."""
    problems = []
    vcpu_of = {tid: n for n, tid in status.vcpus.items()}
    for t in threads:
        if t.tid in vcpu_of:
            n = vcpu_of[t.tid]
            want = p.vcpu_cpus[n] if n < len(p.vcpu_cpus) else frozenset()
            if want and t.affinity != want:
                problems.append(f"vCPU {n} off its CPU: allowed on {format_ids(t.affinity)}, "
                                f"planned {format_ids(want)}")
        elif t.kernel or t.worker:
            continue      # the kernel's threads in QEMU (vhost, kvm-nx-lpage-re)
        elif p.emulator_cpus and not t.affinity <= p.emulator_cpus:
            problems.append(f"emulator thread {t.tid} ({t.comm}) allowed on "
                            f"{format_ids(t.affinity)}, planned {format_ids(p.emulator_cpus)}")
    return problems


def _wait_for_status(fs: HostFS, name: str, wait: float) -> qemu.QemuStatus | None:
    deadline = time.monotonic() + wait
    while True:
        status = qemu.read_qemu_status(fs, name)
        if status is not None or time.monotonic() >= deadline:
            return status
        time.sleep(0.1)


def shutdown_vms(fs: HostFS, domains: Domains, vms: list[VmConfig], *, force: bool,
                 timeout: float, sequential: bool,
                 say: Say) -> tuple[list[VmResult], engine.Result]:
    """Stop the running ones of ``vms``; return their results and what was
    restored on the host."""
    running = running_of(domains, vms)
    results: list[VmResult] = []
    batches = [[vm] for vm in running] if sequential else [running]
    for batch in batches:
        results += _stop(domains, batch, force=force, timeout=timeout, say=say)
    stopped = [vm.uuid.lower() for vm, r in zip(running, results) if r.error is None]
    restored = engine.release(fs, stopped) if stopped else engine.Result()
    return results, restored


def plan_shutdown(fs: HostFS, domains: Domains,
                  vms: list[VmConfig]) -> tuple[list[VmConfig], engine.Result]:
    """What :func:`shutdown_vms` would do, changing nothing: the running
    ones of ``vms`` and the host settings that would be restored."""
    running = running_of(domains, vms)
    return running, engine.release(fs, [vm.uuid.lower() for vm in running], dry_run=True)


@dataclass
class ShutdownReport:
    results: list[VmResult] = field(default_factory=list)
    restored: engine.Result = field(default_factory=engine.Result)
    recovered: engine.Result = field(default_factory=engine.Result)
    would_stop: list[str] = field(default_factory=list)    # dry run: the running VMs
    planned: list[Action] = field(default_factory=list)    # dry run: what would go back

    @property
    def failed(self) -> bool:
        return exit_status(self.results) != 0


def shutdown(fs: HostFS, domains: Domains, config: Config,
             names: tuple[str, ...] | list[str] = (), *, include_disabled: bool = False,
             force: bool = False, timeout: float = 120.0, sequential: bool = False,
             dry_run: bool = False, listener: Listener = Listener(),
             log: HostLog | None = None) -> ShutdownReport:
    """``kvmrt-shutdown [--all] [-v] [--force] [--timeout S] [--dry-run]
    [VM]...``: stop the running VMs of :func:`to_shut_down` (one after
    another with ``sequential``), put back their host settings, stop guest
    services nobody needs, recover what an interrupted kvmrt left. A dry
    run only says which VMs run and what would be put back."""
    from kvmrt.guestsvc import service as guestsvc

    selected = to_shut_down(config, tuple(names), include_disabled=include_disabled)
    if dry_run:
        running, planned = plan_shutdown(fs, domains, selected)
        return ShutdownReport(would_stop=[vm.name for vm in running], planned=planned.actions)
    Journal.for_host(fs).check()    # before a VM stops whose settings could not go back
    tell = _Logged(listener, log or HostLog())
    results, restored = shutdown_vms(fs, domains, selected, force=force, timeout=timeout,
                                     sequential=sequential, say=tell.step)
    for r in results:
        tell.vm(r)
    tell.batch(RESTORED, restored)
    for note in guestsvc.stop_for(config, domains.running_uuids()):
        tell.step(note)
    recovered = engine.recover(fs, domains.running_uuids())
    tell.batch(RECOVERED, recovered)
    return ShutdownReport(results=results, restored=restored, recovered=recovered)


def _stop(domains: Domains, vms: list[VmConfig], *, force: bool, timeout: float,
          say: Say) -> list[VmResult]:
    for vm in vms:
        try:
            if domains.state(vm.uuid) == "paused":
                say(f"{vm.name}: resuming (a paused guest cannot see the shutdown request)")
                domains.resume(vm.uuid)
            say(f"{vm.name}: shutting down")
            domains.shutdown(vm.uuid)
        except KvmrtError as exc:   # a crashed or suspended guest: --force powers it off
            say(f"{vm.name}: {exc}")
    _wait(domains, vms, timeout=timeout, say=say)
    pending = {vm.uuid: VmResult(vm.name, RunStatus.STOPPED) for vm in vms}
    for vm in vms:
        r = pending[vm.uuid]
        if domains.state(vm.uuid) == "shut off":
            continue   # _wait said so
        if force:
            domains.destroy(vm.uuid)
            r.status = RunStatus.POWERED_OFF
            say(f"{vm.name}: did not stop within {timeout:g} s; powered off")
        else:
            r.status = RunStatus.FAILED
            r.error = f"did not stop within {timeout:g} s (use --force to power it off)"
    return [pending[vm.uuid] for vm in vms]


def _wait(domains: Domains, vms: list[VmConfig], *, timeout: float, say: Say) -> None:
    """Wait up to ``timeout`` for ``vms`` to shut off; say each VM as it
    stops, and every :data:`WAITING_EVERY` seconds which ones still run."""
    start = time.monotonic()
    waiting = list(vms)
    next_line = start
    while waiting:
        for vm in [vm for vm in waiting if domains.state(vm.uuid) == "shut off"]:
            waiting.remove(vm)
            say(f"{vm.name}: stopped")
        now = time.monotonic()
        if not waiting or now - start >= timeout:
            return
        if now >= next_line:
            say(f"waiting for {', '.join(vm.name for vm in waiting)} to stop "
                f"({now - start:.0f} of {timeout:g} s)")
            next_line = now + WAITING_EVERY
        time.sleep(0.2)


def _collect(result: VmResult, tuned: engine.Result) -> None:
    result.actions += tuned.actions
    result.notes += tuned.notes + tuned.refused
    if tuned.failed:   # unexpected write failures: the job failed
        result.error = "host tuning incomplete: " + "; ".join(tuned.failed)
