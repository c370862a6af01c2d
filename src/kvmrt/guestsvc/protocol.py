"""The guest services wire protocol, version 1 (kvmrt-gs(7)).

Line-based text over the VM's virtio-serial port (a unix socket on the
host). Stdlib only: the guest side imports it too.

Request (guest → host), one line::

    gs1 SEQ COMMAND GUEST_NS CPU [ARG]\\n

Reply (host → guest), one line, for every request whose SEQ is not 0::

    gs1 SEQ STATUS HOST_NS [DETAIL]\\n

``SEQ`` is a decimal number chosen by the guest (0: no reply wanted);
``GUEST_NS``/``HOST_NS`` are CLOCK_REALTIME in nanoseconds; ``CPU`` is the
guest CPU the sender ran on (``-`` unknown); ``STATUS`` is ``ok``, ``cut``
(the argument was longer than the host accepts; ``DETAIL`` is the number of
bytes kept) or ``err`` (``DETAIL`` says why). ``ARG`` and ``DETAIL`` are
escaped: printable ASCII except ``\\`` stands for itself, ``\\`` is ``\\\\``
and every other byte is ``\\xHH``. A line is at most :data:`MAX_LINE` bytes
with its newline; the host cuts longer ones.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

VERSION = "gs1"
MAX_LINE = 4096
COMMANDS = ("available", "ping", "log_msg", "trace_flush", "trace_log_data")
# Every command has its *_available twin (available itself answers for all).
REQUESTS = frozenset(COMMANDS) | {f"{c}_available" for c in COMMANDS[1:]}
STATUSES = ("ok", "cut", "err")
_PRINTABLE = frozenset(range(0x20, 0x7F)) - {ord("\\")}
_TABLE = tuple(chr(b) if b in _PRINTABLE else ("\\\\" if b == 0x5C else f"\\x{b:02x}")
               for b in range(256))
_ESCAPE = re.compile(rb"\\(\\|x[0-9a-fA-F]{2})")


class ProtocolError(ValueError):
    """A line that is not protocol version 1."""


def escape(data: bytes) -> str:
    """``data`` as protocol text (printable ASCII, ``\\\\``, ``\\xHH``)."""
    return "".join(map(_TABLE.__getitem__, data))


def unescape(text: bytes) -> bytes:
    """The bytes of protocol text; a cut escape at the end is dropped."""
    text = re.sub(rb"\\(x[0-9a-fA-F]?)?\Z", b"", text)
    return _ESCAPE.sub(lambda m: b"\\" if m.group(1) == b"\\" else
                       bytes([int(m.group(1)[1:], 16)]), text)


def parse_data(text: str) -> bytes:
    """MESSAGE/DATA as kvmrt-gs takes it: ``hex:0a1b...`` or ``0x0a1b...``
    is hex bytes, anything else the text itself (UTF-8)."""
    for prefix in ("hex:", "0x"):
        if text.startswith(prefix):
            digits = text[len(prefix):].replace(" ", "")
            try:
                return bytes.fromhex(digits)
            except ValueError:
                raise ProtocolError(f"{text!r}: not hex bytes") from None
    return text.encode()


@dataclass(frozen=True)
class Request:
    seq: int
    command: str
    guest_ns: int
    cpu: int | None
    arg: bytes = b""

    def line(self) -> bytes:
        """The request as one wire line, cut to :data:`MAX_LINE`."""
        cpu = "-" if self.cpu is None else str(self.cpu)
        head = f"{VERSION} {self.seq} {self.command} {self.guest_ns} {cpu}"
        return fit_line(head, self.arg)[0]


def fit_line(head: str, arg: bytes) -> tuple[bytes, int]:
    """``head ARG\\n`` cut to :data:`MAX_LINE` at an escape boundary, and
    how many bytes of ``arg`` it holds."""
    room = MAX_LINE - len(head) - 2
    text = escape(arg)
    kept = len(arg)
    if len(text) > room:
        ends = list(itertools.accumulate(len(_TABLE[b]) for b in arg[:room]))
        kept = bisect.bisect_right(ends, room)
        text = text[:ends[kept - 1]] if kept else ""
    body = head + (" " + text if arg else "")
    return body.encode() + b"\n", kept


def parse_request(line: bytes) -> Request:
    """A request line (without its newline); :class:`ProtocolError` if bad."""
    fields = line.rstrip(b"\r").split(b" ", 5)
    if len(fields) < 5:
        raise ProtocolError("expected: gs1 SEQ COMMAND GUEST_NS CPU [ARG]")
    version, seq, command, guest_ns, cpu = (f.decode("ascii", "replace") for f in fields[:5])
    if version != VERSION:
        raise ProtocolError(f"version {version!r}: this host speaks {VERSION}")
    if not (seq.isdigit() and guest_ns.isdigit() and (cpu == "-" or cpu.isdigit())):
        raise ProtocolError("SEQ, GUEST_NS and CPU must be decimal numbers")
    return Request(int(seq), command, int(guest_ns), None if cpu == "-" else int(cpu),
                   unescape(fields[5]) if len(fields) > 5 else b"")


@dataclass(frozen=True)
class Reply:
    seq: int
    status: str
    host_ns: int
    detail: bytes = b""

    def line(self) -> bytes:
        return fit_line(f"{VERSION} {self.seq} {self.status} {self.host_ns}", self.detail)[0]

    @property
    def text(self) -> str:
        return self.detail.decode("utf-8", "replace")


def parse_reply(line: bytes) -> Reply:
    fields = line.rstrip(b"\r\n").split(b" ", 4)
    if len(fields) < 4 or fields[0] != VERSION.encode():
        raise ProtocolError(f"not a {VERSION} reply: {line[:60]!r}")
    seq, status, host_ns = (f.decode("ascii", "replace") for f in fields[1:4])
    if not (seq.isdigit() and host_ns.isdigit()) or status not in STATUSES:
        raise ProtocolError(f"not a {VERSION} reply: {line[:60]!r}")
    return Reply(int(seq), status, int(host_ns), unescape(fields[4]) if len(fields) > 4 else b"")


class LineReader:
    """Lines from a byte stream, each at most ``limit`` bytes: the rest of a
    longer line is dropped, and the line comes back with ``cut=True``."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        """The complete lines (without newline) in ``data`` and what came before."""
        out: list[tuple[bytes, bool]] = []
        self._buf += data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            if self._skipping:
                self._skipping = False
            else:
                out.append((line[:self.limit - 1], len(line) >= self.limit))
        if len(self._buf) >= self.limit:
            if not self._skipping:
                out.append((bytes(self._buf[:self.limit - 1]), True))
            self._skipping = True
            self._buf.clear()
        return out
