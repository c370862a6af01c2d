"""The host side of guest services: answer each VM's requests and record
them as ``*_HOST`` events (kvmrt-gs(7)).

:class:`GuestServices` handles the requests of one or many VMs. For each
request it records ``COMMAND_HOST`` (``PING_HOST``, ``LOG_MSG_HOST``…) in
the host's ftrace buffer through ``trace_marker`` (when it has a
:class:`~kvmrt.guestsvc.tracefs.Tracefs`), and for ``log_msg`` a line in the
system log (a syslog socket, ``/dev/log`` by default). Every record
carries the VM's name and UUID, the host time and the guest's own time::

    LOG_MSG_HOST vm=NAME uuid=UUID seq=7 host_ns=... guest_ns=... guest_cpu=0 msg=hello

``trace_flush SCOPE`` takes an ftrace snapshot of the CPU the sending vCPU
runs on (0), of the VM's CPUs (1) or of all CPUs (2). Where the VM's
threads are is asked of a :class:`VmCpus` (libvirt's status file and
``/proc`` on a real host).
"""

from __future__ import annotations

import logging
import logging.handlers
import socket
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from kvmrt.errors import KvmrtError
from kvmrt.guestsvc import SYSLOG_SOCKET
from kvmrt.guestsvc import protocol as proto
from kvmrt.guestsvc.tracefs import SnapshotError, SnapshotUnsupported, Tracefs
from kvmrt.host import qemu, tasks
from kvmrt.host.fs import HostFS

READ_SIZE = 65536


@dataclass(frozen=True)
class Vm:
    uuid: str
    name: str


class VmCpus(Protocol):
    def sender_cpu(self, vm: Vm, vcpu: int) -> int | None: ...

    def vm_cpus(self, vm: Vm) -> frozenset[int]: ...


class QemuCpus:
    """Where a running VM's vCPU threads are, from libvirt's status file
    (``run/libvirt/qemu/NAME.xml``) and ``/proc``."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs

    def _vcpu_tasks(self, vm: Vm) -> dict[int, tasks.Task]:
        status = qemu.read_qemu_status(self.fs, vm.name)
        if status is None:
            return {}
        by_tid = {t.tid: t for t in tasks.read_tasks(self.fs, [status.pid])}
        return {n: by_tid[tid] for n, tid in status.vcpus.items() if tid in by_tid}

    def sender_cpu(self, vm: Vm, vcpu: int) -> int | None:
        task = self._vcpu_tasks(vm).get(vcpu)
        return None if task is None else task.last_cpu

    def vm_cpus(self, vm: Vm) -> frozenset[int]:
        return frozenset().union(*(t.affinity for t in self._vcpu_tasks(vm).values()))


def host_ns() -> int:
    return time.time_ns()


class GuestServices:
    """Answers requests and records ``*_HOST`` events."""

    def __init__(self, *, tracer: Tracefs | None, cpus: VmCpus,
                 syslog_socket: str = SYSLOG_SOCKET) -> None:
        self.tracer = tracer
        self.cpus = cpus
        self.syslog_socket = syslog_socket
        self._syslog: logging.Logger | None = None
        self._lock = threading.Lock()
        self.lost_records = 0     # trace_marker writes the kernel refused

    # -- one request ----------------------------------------------------------
    def handle(self, vm: Vm, line: bytes, *, cut: bool = False) -> proto.Reply | None:
        """The reply to one request line (None when SEQ is 0)."""
        now = host_ns()
        try:
            req = proto.parse_request(line)
        except proto.ProtocolError as exc:
            return proto.Reply(_seq_of(line), "err", now, str(exc).encode())
        status, detail = self._dispatch(vm, req, now)
        if cut and status == "ok":
            status, detail = "cut", str(len(req.arg)).encode()
        return None if req.seq == 0 else proto.Reply(req.seq, status, now, detail)

    def _dispatch(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        if req.command not in proto.REQUESTS:
            return "err", f"unknown command {req.command!r}".encode()
        if req.command.endswith("_available"):
            self._record(vm, req, now)
            return "ok", b""
        handler = getattr(self, f"_{req.command}")
        return handler(vm, req, now)

    def _available(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        self._record(vm, req, now)
        return "ok", f"max={proto.MAX_LINE} commands={','.join(proto.COMMANDS)}".encode()

    def _ping(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        self._record(vm, req, now, cookie=proto.escape(req.arg))
        return "ok", req.arg

    def _log_msg(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        text = self._record(vm, req, now, msg=proto.escape(req.arg))
        self._log(text)
        return "ok", b""

    def _trace_log_data(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        self._record(vm, req, now, data=proto.escape(req.arg))
        return "ok", b""

    def _trace_flush(self, vm: Vm, req: proto.Request, now: int) -> tuple[str, bytes]:
        scope = req.arg.decode("ascii", "replace").strip()
        try:
            cpus = self._scope_cpus(vm, scope, req.cpu)
            taken = self._snapshot(cpus)
        except (SnapshotError, _BadScope) as exc:
            self._record(vm, req, now, scope=scope, error=proto.escape(str(exc).encode()))
            return "err", str(exc).encode()
        self._record(vm, req, now, scope=scope, snapshot=taken.replace(" ", "_"))
        return "ok", taken.encode()

    def _scope_cpus(self, vm: Vm, scope: str, vcpu: int | None) -> frozenset[int] | None:
        if scope == "2":
            return None
        if scope == "1":
            cpus = self.cpus.vm_cpus(vm)
        elif scope == "0":
            cpu = None if vcpu is None else self.cpus.sender_cpu(vm, vcpu)
            cpus = frozenset() if cpu is None else frozenset({cpu})
        else:
            raise _BadScope(f"scope {scope!r}: 0 (sender's CPU), 1 (VM's CPUs) or 2 (all)")
        if not cpus:
            raise _BadScope(f"scope {scope}: the host does not know where {vm.name} runs")
        return cpus

    def _snapshot(self, cpus: frozenset[int] | None) -> str:
        if self.tracer is None:
            raise SnapshotUnsupported("no tracefs on the host")
        return self.tracer.snapshot(cpus)

    # -- records ----------------------------------------------------------------
    def _record(self, vm: Vm, req: proto.Request, now: int, **fields: str) -> str:
        cpu = "-" if req.cpu is None else req.cpu
        text = (f"{req.command.upper()}_HOST vm={vm.name} uuid={vm.uuid} seq={req.seq} "
                f"host_ns={now} guest_ns={req.guest_ns} guest_cpu={cpu}")
        text += "".join(f" {k}={v}" for k, v in fields.items())
        if self.tracer is not None:
            try:
                self.tracer.mark(text + "\n")
            except OSError:   # a disabled buffer costs the record, not the guest's reply
                self.lost_records += 1
        return text

    def _log(self, text: str) -> None:
        with self._lock:
            if self._syslog is None:
                self._syslog = _syslog_logger(self.syslog_socket)
            logger = self._syslog
        logger.info(text)

    def close(self) -> None:
        if self._syslog is not None:
            for h in self._syslog.handlers:
                h.close()
        if self.tracer is not None:
            self.tracer.close()

    # -- one connection ----------------------------------------------------------
    def serve(self, vm: Vm, sock: socket.socket) -> None:
        """Answer ``sock``'s requests until it closes (the VM stopped)."""
        reader = proto.LineReader()
        with sock:
            try:
                while data := sock.recv(READ_SIZE):
                    for line, cut in reader.feed(data):
                        reply = self.handle(vm, line, cut=cut)
                        if reply is not None:
                            sock.sendall(reply.line())
            except OSError:
                return     # QEMU closed the channel: the VM stopped


class _BadScope(KvmrtError):
    pass


def _seq_of(line: bytes) -> int:
    fields = line.split(b" ", 2)
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


class _SyslogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"kvmrt-gs: {record.getMessage()}"


def _syslog_logger(address: str) -> logging.Logger:
    """A logger of its own that sends to the syslog socket ``address``
    (facility daemon); a missing socket is retried at every message."""
    logger = logging.Logger(f"kvmrt-gs:{address}")
    handler = logging.handlers.SysLogHandler(
        address=address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    handler.append_nul = False   # a NUL would end up in the logged text of some daemons
    handler.setFormatter(_SyslogFormatter())
    logger.addHandler(handler)
    return logger
