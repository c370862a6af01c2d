"""kvmrt-gsd: the host side of guest services for every VM, in one process.

QEMU listens on each VM's channel socket ``STATE_DIR/gs/UUID.sock``
(:mod:`kvmrt.libvirt_sync.domxml_channel`); the daemon looks at that
directory every :data:`SCAN_INTERVAL` seconds, connects to each socket it
is not connected to yet and serves it in a thread of its own
(:meth:`GuestServices.serve`) until QEMU closes it. While a VM is
connected, ``UUID.connected`` exists beside its socket
(:func:`connection_state` reads it, for ``kvmrt-stat``).

One daemon per host: it holds ``gs/gsd.lock`` and writes its PID to
``gs/gsd.pid``. It runs on the host's housekeeping CPUs only (every online
CPU no rt VM of the config shields), set before any thread starts, so that
all its threads inherit it. SIGTERM stops it.

``kvmrt-boot`` starts it (:func:`start_background`) when a VM with
``guest_services`` runs; ``kvmrt-shutdown`` stops it (:func:`stop`) when
none runs any more. Under systemd ``kvmrt-gs.service`` runs it instead.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kvmrt.config.file import load_config
from kvmrt.errors import KvmrtError
from kvmrt.guestsvc.host import GuestServices, QemuCpus, Vm
from kvmrt.guestsvc.tracefs import Tracefs, TracefsError, mount_tracefs
from kvmrt.host import read_host
from kvmrt.host.fs import HostFS
from kvmrt.libvirt_sync.domxml_channel import socket_dir
from kvmrt.placement import place

if TYPE_CHECKING:
    import argparse

SCAN_INTERVAL = 0.5


# -- state files (shared with boot, shutdown and stat) ------------------------------
def daemon_pid(directory: Path | None = None) -> int | None:
    """The PID of the running daemon, or None."""
    directory = directory or socket_dir()
    try:
        pid = int((directory / "gsd.pid").read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def connection_state(uuid: str, directory: Path | None = None) -> str:
    """``connected``, ``listening`` (the VM's socket exists, the host side is
    not connected) or ``off`` (no socket): for ``kvmrt-stat``."""
    directory = directory or socket_dir()
    uuid = uuid.lower()
    if daemon_pid(directory) is not None and (directory / f"{uuid}.connected").exists():
        return "connected"
    return "listening" if (directory / f"{uuid}.sock").exists() else "off"


def start_background(config_path: str | None, *, wait: float = 5.0) -> int | None:
    """Start a detached daemon unless one runs; the PID of the one that runs."""
    directory = socket_dir()
    pid = daemon_pid(directory)
    if pid is not None:
        return pid
    cmd = [sys.executable, "-m", "kvmrt.guestsvc.gsd", "--detach"]
    if config_path:
        cmd += ["-f", str(config_path)]
    # --detach starts the daemon and exits: the daemon is nobody's child to
    # reap (a long-lived caller such as the dashboard would keep a zombie).
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False, timeout=30)
    deadline = time.monotonic() + wait
    while (pid := daemon_pid(directory)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def stop(*, wait: float = 5.0) -> bool:
    """Stop the running daemon; True if one was stopped."""
    directory = socket_dir()
    pid = daemon_pid(directory)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while daemon_pid(directory) == pid and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def remove_sockets(uuids: list[str], directory: Path | None = None) -> list[Path]:
    """Remove the channel sockets of VMs that no longer run."""
    directory = directory or socket_dir()
    removed = []
    for uuid in uuids:
        for suffix in (".sock", ".connected"):
            path = directory / f"{uuid.lower()}{suffix}"
            if path.exists() or path.is_symlink():
                path.unlink()
                removed.append(path)
    return removed


# -- CPUs --------------------------------------------------------------------------
def housekeeping_cpus(config_path: str | None, fs: HostFS) -> frozenset[int]:
    """Online CPUs that no rt VM of the config shields."""
    topology = read_host(fs).topology
    shielded: set[int] = set()
    if config_path and Path(config_path).exists():
        for vm in load_config(config_path).active():
            if vm.rt:
                try:
                    shielded |= place(vm, topology).owned_cpus
                except KvmrtError:
                    continue   # the validator reports it; boot refuses such a VM
    return (topology.online_cpus - shielded) or topology.online_cpus


# -- the daemon --------------------------------------------------------------------
class Daemon:
    def __init__(self, services: GuestServices, directory: Path,
                 config_path: str | None) -> None:
        self.services = services
        self.dir = directory
        self.config_path = config_path
        self.names = _names(config_path)
        self.stopping = threading.Event()
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def scan_once(self) -> None:
        for sock_path in sorted(self.dir.glob("*.sock")):
            uuid = sock_path.name[:-len(".sock")]
            with self._lock:
                if uuid in self._active:
                    continue
            sock = _connect(sock_path)
            if sock is not None:
                with self._lock:
                    self._active.add(uuid)
                if uuid not in self.names:    # a VM added to the config since
                    self.names = _names(self.config_path)
                vm = Vm(uuid, self.names.get(uuid, uuid))
                threading.Thread(target=self._serve, args=(vm, sock), daemon=True,
                                 name=f"gs-{uuid[:8]}").start()

    def _serve(self, vm: Vm, sock: socket.socket) -> None:
        marker = self.dir / f"{vm.uuid}.connected"
        marker.touch()
        try:
            self.services.serve(vm, sock)
        finally:
            marker.unlink(missing_ok=True)
            with self._lock:
                self._active.discard(vm.uuid)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.scan_once()
            self.stopping.wait(SCAN_INTERVAL)
        for marker in self.dir.glob("*.connected"):
            marker.unlink(missing_ok=True)


def _connect(path: Path) -> socket.socket | None:
    """A connection to QEMU's socket; None while it does not accept one
    (QEMU not listening yet, a stale socket, not a socket at all)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(str(path))
    except OSError as exc:
        sock.close()
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            print(f"kvmrt-gsd: {path}: {exc.strerror}", file=sys.stderr)
        return None   # tried again at the next scan
    return sock


def _names(config_path: str | None) -> dict[str, str]:
    """UUID → VM name from the config (records name the VM by both)."""
    if not config_path or not Path(config_path).exists():
        return {}
    try:
        return {vm.uuid.lower(): vm.name for vm in load_config(config_path).vms if vm.name}
    except KvmrtError:
        return {}   # a config being edited: the UUID names the VM meanwhile


def _tracer(no_trace: bool) -> Tracefs | None:
    if no_trace:
        return None
    try:
        return Tracefs(mount_tracefs())
    except (TracefsError, OSError) as exc:
        print(f"kvmrt-gsd: no ftrace records: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM (``args``: :func:`kvmrt.guestsvc.gsd.parse`'s)."""
    fs = HostFS()
    directory = socket_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.sched_setaffinity(0, housekeeping_cpus(args.file, fs))
    with open(directory / "gsd.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0   # another daemon runs
        services = GuestServices(tracer=_tracer(args.no_trace), cpus=QemuCpus(fs),
                                 syslog_socket=args.syslog_socket)
        daemon = Daemon(services, directory, args.file)
        signal.signal(signal.SIGTERM, lambda *_: daemon.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: daemon.stopping.set())
        pidfile = directory / "gsd.pid"
        pidfile.write_text(f"{os.getpid()}\n")
        try:
            daemon.run()
        finally:
            pidfile.unlink(missing_ok=True)
            services.close()
    return 0

