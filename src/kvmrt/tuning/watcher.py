"""Keep the vfio interrupts of rt VMs on their IRQ CPU while they run.

vfio vectors (``vfio-msix[N](BDF)``, ``vfio-msi[N](BDF)``, ``vfio-intx(BDF)``
in /proc/interrupts) appear only when the guest driver enables them and
come back after a device reset, so a one-time write at boot is not enough.
``kvmrt-boot`` starts this watcher in the background (one per host, guarded
by a lock in the state directory, its PID in ``watcher.pid`` there, mode
0644); every half second, under the journal's lock, it binds any such IRQ
of a device of a VM the journal holds to the VM's IRQ CPU, journaling the
old value first. It exits when no tuned VM with passthrough devices runs
any more. Under systemd it runs as ``kvmrt-vfio-watch.service`` (part of
``kvmrt.service``) when that unit is installed. The IRQs it binds and its
failures go to the system log; a failure is also kept in ``watcher.error``
there, for ``kvmrt-stat``.

Run by hand for debugging: ``python -m kvmrt.tuning.watcher [--once]``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time

from kvmrt.sets import PciAddress
from kvmrt.errors import KvmrtError
from kvmrt.host import irqs, qemu
from kvmrt.host.fs import HostFS
from kvmrt.hostlog import HostLog
from kvmrt.lockfile import LockBusy
from kvmrt.tuning.journal import Journal, JournalState
from kvmrt.tuning.model import Action
from kvmrt.tuning.settings import IrqAffinity

INTERVAL = 0.5
WATCHER_LOCK = "watcher.lock"
PIDFILE = "watcher.pid"
ERRORFILE = "watcher.error"
UNIT = "kvmrt-vfio-watch.service"


def assignments(fs: HostFS, state: JournalState) -> dict[PciAddress, int]:
    """Device -> IRQ CPU for every tuned VM with passthrough devices that
    still runs (libvirt's status file names a live QEMU; for an ordinary
    user, who may not read it, the QEMU started with its ``-uuid``)."""
    return {PciAddress.parse(a): vm.irq_cpu for vm in state.vms.values()
            if vm.irq_cpu is not None
            and qemu.read_qemu_status(fs, vm.name, vm.uuid) is not None
            for a in vm.pcidevs}


def watch_once(fs: HostFS, journal: Journal) -> tuple[int, bool]:
    """Bind stray vfio IRQs; return (how many were moved, whether to go on).

    Decided and done under the journal's lock, against the VMs the journal
    holds then: never for a VM a shutdown has just released. When a kvmrt
    command holds the lock, this round is skipped (the watcher never makes
    a command wait)."""
    try:
        with journal.locked(wait=0):
            state = journal.load()
            wanted = assignments(fs, state)
            if not wanted:
                return 0, False
            todo = _stray(fs, wanted)
            return sum(_bind(fs, journal, state.baseline, irq, cpu) for irq, cpu in todo), True
    except LockBusy:
        return 0, True


def _stray(fs: HostFS, wanted: dict[PciAddress, int]) -> list[tuple[irqs.Irq, int]]:
    stray = [(irq, wanted[device]) for device, numbers in irqs.vfio_irqs(fs).items()
             if device in wanted for irq in numbers]
    current = {i.number: i for i in irqs.read_irqs(fs)} if stray else {}
    return [(current[irq], cpu) for irq, cpu in stray
            if irq in current and current[irq].affinity != {cpu}]


def _bind(fs: HostFS, journal: Journal, baseline: dict, irq: irqs.Irq, cpu: int) -> int:
    setting = IrqAffinity(irq.number, irq.name)
    journal.record_old([Action(setting, irq.affinity, frozenset({cpu}))], baseline)
    try:
        setting.write(fs, frozenset({cpu}))
    except KvmrtError as exc:
        journal.refused(setting.key, str(exc))
        return 0
    return 1


def run(fs: HostFS, *, once: bool = False) -> None:
    journal = Journal.for_host(fs)
    fd = journal.open_file(WATCHER_LOCK, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another watcher runs
        _write_pid(journal)
        journal.remove_file(ERRORFILE)
        try:
            _loop(fs, journal, once=once)
        except Exception as exc:   # any failure: say it where people look, then fail
            _failed(journal, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            journal.remove_file(PIDFILE)
    finally:
        os.close(fd)


def _write_pid(journal: Journal) -> None:
    fd = journal.open_file(PIDFILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _failed(journal: Journal, error: str) -> None:
    HostLog().warning(f"vfio IRQ watcher failed: {error}")
    fd = journal.open_file(ERRORFILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, f"{error}\n".encode())
    finally:
        os.close(fd)


def _loop(fs: HostFS, journal: Journal, *, once: bool) -> None:
    log = HostLog()
    while True:
        moved, go_on = watch_once(fs, journal)
        if moved:
            log.info(f"vfio IRQ watcher: {moved} IRQ(s) bound to their VM's IRQ CPU")
        if once or not go_on:
            return
        time.sleep(INTERVAL)


def running(journal: Journal) -> bool:
    """Whether a watcher runs (it holds its lock while it does)."""
    if journal.read_file(WATCHER_LOCK) is None:
        return False    # no watcher ever ran
    fd = journal.open_file(WATCHER_LOCK, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def problems(fs: HostFS, state: JournalState) -> list[str]:
    """For kvmrt-stat: the watcher is not running while a tuned VM with
    passthrough devices runs (with its last error, if it failed)."""
    journal = Journal.for_host(fs)
    if not assignments(fs, state) or running(journal):
        return []
    error = (journal.read_file(ERRORFILE) or b"").decode(errors="replace").strip()
    return ["the vfio IRQ watcher is not running" + (f" (it failed: {error})" if error else "")
            + f"; kvmrt-boot starts it again (under systemd: systemctl status {UNIT})"]


def _start_unit(fs: HostFS) -> bool:
    """Under systemd, on the real host: start the watcher's unit; False
    when systemd does not run or the unit is not installed."""
    if str(fs.root) != "/" or not os.path.isdir("/run/systemd/system"):
        return False
    return subprocess.run(["systemctl", "start", UNIT], stdin=subprocess.DEVNULL,
                          capture_output=True).returncode == 0


def start_background(fs: HostFS, *, wait: float = 2.0) -> int | None:
    """Start the watcher (its systemd unit, else a detached process; it
    exits at once if one already runs) and return the PID of the watcher
    that runs, once it has said so."""
    if not _start_unit(fs):
        env = {**os.environ, "KVMRT_FSROOT": str(fs.root)}
        subprocess.Popen([sys.executable, "-m", "kvmrt.tuning.watcher"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
    journal = Journal.for_host(fs)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        text = (journal.read_file(PIDFILE) or b"").strip()
        if text.isdigit():
            return int(text)
        time.sleep(0.05)
    return None


if __name__ == "__main__":  # pragma: no cover - exercised through start_background
    run(HostFS(), once="--once" in sys.argv)
