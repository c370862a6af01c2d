"""The guest side of guest services in Python (stdlib only; kvmrt-gs(1), (7)).

    from kvmrt.guestsvc.guest import Client
    with Client() as gs:                 # finds the port, fails fast without a host
        reply = gs.ping(b"42")
        gs.log_msg(b"cycle overrun", wait=False)

The port is the virtio-serial port named ``org.kvmrt.gs.0``:
``/sys/class/virtio-ports/vportNpM/name`` → ``/dev/vportNpM``; a unix
socket path may stand in for it (``port=``). Every call records its
``COMMAND_GUEST`` event in the guest's ftrace buffer (``trace_marker``)
when the guest has tracefs mounted. Nothing here blocks longer than
``timeout``: the port is non-blocking, and a host side that is not
connected makes every call raise :class:`NotAvailable` at once. A call
with ``wait=False`` costs the write of one line: a port too full to take
it raises :class:`PortFull` at once (the line is dropped).

Run as ``python3 -m kvmrt.guestsvc.guest COMMAND ARGS...``: the same
commands and exit statuses as the C tool ``kvmrt-gs``.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import sys
import time
from pathlib import Path

from kvmrt.guestsvc import protocol as proto

PORT_NAME = "org.kvmrt.gs.0"
PORTS_DIR = Path("/sys/class/virtio-ports")
TRACE_MARKERS = ("/sys/kernel/tracing/trace_marker", "/sys/kernel/debug/tracing/trace_marker")
DEFAULT_TIMEOUT = 1.0


class GsError(Exception):
    """A guest services call failed."""


class NotAvailable(GsError):
    """No host side listens (or no port)."""


class PortFull(GsError):
    """``wait=False``: the port cannot take the line now (the host side does
    not read); the line was dropped, the call did not wait."""


def find_port(ports_dir: Path = PORTS_DIR) -> str:
    """``/dev/vportNpM`` of the port named :data:`PORT_NAME`."""
    for name_file in sorted(ports_dir.glob("*/name")):
        try:
            if name_file.read_text().strip() == PORT_NAME:
                return f"/dev/{name_file.parent.name}"
        except OSError:
            continue
    raise NotAvailable(f"no virtio-serial port named {PORT_NAME} (guest_services off?)")


def _open_port(path: str) -> int:
    try:
        is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
    except FileNotFoundError:
        raise NotAvailable(f"{path}: no such port") from None
    if not is_socket:
        try:
            return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise NotAvailable(f"{path}: {exc.strerror}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise NotAvailable(f"{path}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock.detach()


def _open_marker(path: str | None) -> int | None:
    for candidate in ([path] if path else [] if path == "" else TRACE_MARKERS):
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
    return None


def _cpu() -> int | None:
    """The CPU this thread runs on (proc(5) stat field 39)."""
    try:
        stat_line = Path("/proc/thread-self/stat").read_text()
        return int(stat_line[stat_line.rindex(")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


class Client:
    """One open port. ``trace_marker``: None finds the guest's tracefs, ""
    records no guest events, a path writes there."""

    def __init__(self, port: str | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 trace_marker: str | None = None) -> None:
        self.timeout = timeout
        self.fd = _open_port(port or find_port())
        self.marker = _open_marker(trace_marker)
        self.seq = 0
        self._buf = proto.LineReader()
        self.last_guest_ns = 0

    def close(self) -> None:
        os.close(self.fd)
        if self.marker is not None:
            os.close(self.marker)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the commands -------------------------------------------------------------
    def available(self, command: str | None = None) -> proto.Reply:
        """The host side answers (for ``command``: and offers it)."""
        return self.request(f"{command}_available" if command else "available")

    def ping(self, cookie: bytes) -> proto.Reply:
        return self.request("ping", cookie)

    def log_msg(self, message: bytes, *, wait: bool = True) -> proto.Reply | int:
        return self.request("log_msg", message, wait=wait)

    def trace_flush(self, scope: int) -> proto.Reply:
        return self.request("trace_flush", str(scope).encode())

    def trace_log_data(self, data: bytes, *, wait: bool = True) -> proto.Reply | int:
        return self.request("trace_log_data", data, wait=wait)

    # -- the wire ---------------------------------------------------------------
    def request(self, command: str, arg: bytes = b"", *, wait: bool = True):
        """Send one request; with ``wait`` the host's reply (:class:`GsError`
        when it says ``err``), else how many bytes of ``arg`` went out."""
        self.seq = self.seq % 0xFFFFFFFF + 1
        seq = self.seq if wait else 0
        guest_ns = time.time_ns()
        cpu = _cpu()
        head = f"{proto.VERSION} {seq} {command} {guest_ns} {'-' if cpu is None else cpu}"
        line, kept = proto.fit_line(head, arg)
        self._mark(command, seq, guest_ns, arg)
        self._send(line, at_once=not wait)
        self.last_guest_ns = guest_ns
        if not wait:
            return kept
        reply = self._receive(seq)
        if reply.status == "err":
            raise GsError(f"{command}: {reply.text}")
        if kept < len(arg) and reply.status == "ok":
            reply = proto.Reply(reply.seq, "cut", reply.host_ns, str(kept).encode())
        return reply

    def _mark(self, command: str, seq: int, guest_ns: int, arg: bytes) -> None:
        if self.marker is None:
            return
        text = f"{command.upper()}_GUEST seq={seq} guest_ns={guest_ns} arg={proto.escape(arg[:256])}\n"
        try:
            os.write(self.marker, text.encode())
        except OSError:
            pass   # a disabled buffer costs the guest record, not the call

    def _poll(self, events: int, timeout: float | None = None) -> None:
        poller = select.poll()
        poller.register(self.fd, events)
        ready = poller.poll((self.timeout if timeout is None else timeout) * 1000)
        if not ready and timeout == 0:
            raise PortFull("the port is full (the host side does not read): line dropped")
        if not ready:
            raise NotAvailable(f"no answer from the host within {self.timeout:g} s")
        revents = ready[0][1]
        if revents & (select.POLLHUP | select.POLLERR) and not revents & events:
            raise NotAvailable("the host side is not connected")

    def _send(self, line: bytes, *, at_once: bool = False) -> None:
        """Write ``line``; ``at_once``: a port that cannot take its first
        byte raises :class:`PortFull` without waiting."""
        deadline = time.monotonic() + self.timeout
        whole = len(line)
        while line:
            try:
                line = line[os.write(self.fd, line):]
            except BlockingIOError:
                if at_once and len(line) == whole:
                    self._poll(select.POLLOUT, timeout=0.0)
                    at_once = False     # writable again: a line like any other
                    continue
                if time.monotonic() > deadline:
                    raise NotAvailable("the host side does not read") from None
                self._poll(select.POLLOUT)
            except OSError as exc:
                if exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise NotAvailable("the host side is not connected") from None
                raise

    def _receive(self, seq: int) -> proto.Reply:
        while True:
            self._poll(select.POLLIN)
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            if not data:
                raise NotAvailable("the host side closed the port")
            for line, _cut in self._buf.feed(data):
                try:
                    reply = proto.parse_reply(line)
                except proto.ProtocolError as exc:
                    raise GsError(str(exc)) from None
                if reply.seq == seq:   # an older, timed-out request's reply is skipped
                    return reply


# -- the command line (mirrors the C tool) -------------------------------------------
USAGE = """usage: kvmrt-gs [--port PATH] [--timeout S] [--trace-marker PATH | --no-trace]
                [COMMAND ARGS]...
commands: available, ping_available, ping COOKIE, log_msg MESSAGE,
          log_msg_available, trace_flush SCOPE (alias xtrace_flush),
          trace_flush_available, trace_log_data DATA, trace_log_data_available
MESSAGE and DATA: text, or hex bytes as hex:0a1b or 0x0a1b"""
ARGS = {"ping": 1, "log_msg": 1, "trace_flush": 1, "trace_log_data": 1, "available": 0}


class Usage(Exception):
    pass


def _seconds(value: str) -> float:
    """``--timeout S``: 0 to 3600 seconds, as the C tool takes it."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:
        raise Usage(f"--timeout S: seconds, not {value}")
    return seconds


def parse_commands(argv: list[str]) -> tuple[dict, list[tuple[str, str | None]]]:
    opts = {"port": None, "timeout": DEFAULT_TIMEOUT, "trace_marker": None}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        key = argv[i]
        if key == "--no-trace":
            opts["trace_marker"] = ""
            i += 1
            continue
        if key not in ("--port", "--timeout", "--trace-marker") or i + 1 >= len(argv):
            raise Usage(f"unknown option {key}")
        value = argv[i + 1]
        opts[key[2:].replace("-", "_")] = _seconds(value) if key == "--timeout" else value
        i += 2
    commands = []
    while i < len(argv):
        name = "trace_flush" if argv[i] == "xtrace_flush" else argv[i]
        base = name[:-len("_available")] if name.endswith("_available") else name
        if name not in proto.REQUESTS:
            raise Usage(f"unknown command {argv[i]}")
        nargs = 0 if name.endswith("_available") else ARGS[base]
        if nargs and i + 1 >= len(argv):
            raise Usage(f"{name} needs an argument")
        if name == "trace_flush" and argv[i + 1] not in ("0", "1", "2"):
            raise Usage(f"trace_flush SCOPE: 0, 1 or 2, not {argv[i + 1]!r}")
        commands.append((name, argv[i + 1] if nargs else None))
        i += 1 + nargs
    if not commands:
        raise Usage("no command")
    return opts, commands


def run_command(gs: Client, name: str, arg: str | None) -> str:
    """Run one command; the line to print (may be empty)."""
    if name.endswith("_available") or name == "available":
        gs.request(name)
        return ""
    data = proto.parse_data(arg) if name in ("log_msg", "trace_log_data") else arg.encode()
    reply = gs.request(name, data)
    if name == "ping":
        now = time.time_ns()
        offset = reply.host_ns - (gs.last_guest_ns + now) // 2
        return (f"{reply.text} host_ns={reply.host_ns} rtt_ns={now - gs.last_guest_ns} "
                f"offset_ns={offset}")
    if reply.status == "cut":
        print(f"kvmrt-gs: {name}: cut to {reply.text} bytes (the host takes lines of "
              f"{proto.MAX_LINE} bytes)", file=sys.stderr)
    return reply.text if name == "trace_flush" else ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--help"]:
        print(USAGE)
        return 0
    try:
        opts, commands = parse_commands(argv)
        for name, arg in commands:
            if arg is not None and name in ("log_msg", "trace_log_data"):
                proto.parse_data(arg)
    except (Usage, ValueError) as exc:
        print(f"kvmrt-gs: {exc}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        with Client(opts["port"], timeout=opts["timeout"],
                    trace_marker=opts["trace_marker"]) as gs:
            for name, arg in commands:
                out = run_command(gs, name, arg)
                if out:
                    print(out)
    except GsError as exc:
        print(f"kvmrt-gs: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
