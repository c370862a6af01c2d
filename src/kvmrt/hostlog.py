"""The system log: what kvmrt did to this host, and when.

Every host change kvmrt makes or restores is told to the system log under
the ident ``kvmrt`` (so ``journalctl -t kvmrt`` lists them): one line per
VM and per batch, with the counts of host changes, the user who ran the
command (``SUDO_USER``, else the login name, with the uid) and the command
line. Lines go as RFC 3164 datagrams to the syslog socket ``/dev/log``
(journald or a syslog daemon listens there). Where nobody listens (no
``/dev/log``, a full queue) the line is dropped without a word: logging
never fails a command.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import socket
import sys
import syslog
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from kvmrt.tuning.model import Action, summarize

if TYPE_CHECKING:  # pragma: no cover
    from kvmrt.tuning import engine


class Told(Protocol):
    """One VM's result (a :class:`kvmrt.lifecycle.VmResult`; lifecycle
    logs with this module, so it is not imported here)."""

    name: str
    status: str
    actions: list[Action]
    error: str | None

DEV_LOG = "/dev/log"
IDENT = "kvmrt"
FACILITY = syslog.LOG_DAEMON


def who(environ: Mapping[str, str] = os.environ) -> str:
    """``user alice uid 1000``: the person behind sudo, else the login."""
    if environ.get("SUDO_USER"):
        return f"user {environ['SUDO_USER']} uid {environ.get('SUDO_UID', '?')}"
    uid = os.getuid()
    try:
        name = os.getlogin()
    except OSError:   # no controlling terminal (systemd, cron)
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = "?"
    return f"user {name} uid {uid}"


def command_line(argv: Sequence[str] = sys.argv) -> str:
    """The command as typed, with the tool's name instead of its path."""
    return shlex.join([os.path.basename(argv[0]), *argv[1:]]) if argv else "?"


class HostLog:
    """Send lines to the syslog socket at ``address``; each line ends with
    who ran which command."""

    def __init__(self, address: str = DEV_LOG, *, argv: Sequence[str] = sys.argv,
                 environ: Mapping[str, str] = os.environ) -> None:
        self.address = address
        self.suffix = f" [{who(environ)}; command: {command_line(argv)}]"

    def info(self, line: str) -> None:
        self._send(syslog.LOG_INFO, line)

    def warning(self, line: str) -> None:
        self._send(syslog.LOG_WARNING, line)

    def _send(self, priority: int, line: str) -> None:
        message = f"<{FACILITY | priority}>{IDENT}[{os.getpid()}]: {line}{self.suffix}"
        # No syslog socket, nobody listening, a full queue: the line is lost.
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(errors="replace"), self.address)

    def vm(self, result: Told) -> None:
        """``RedHawk: started; 184 host changes (threads 143, ...)``."""
        line = f"{result.name}: {result.status}; {changes(result.actions)}"
        if result.error:
            self.warning(f"{line}; failed: {result.error}")
        else:
            self.info(line)

    def batch(self, what: str, result: "engine.Result") -> None:
        """One line for an engine run (``restored``, ``recovered``), when it
        changed something or failed to."""
        if result.actions:
            self.info(f"{what}: {changes(result.actions)}")
        for line in result.failed:
            self.warning(f"{what}: failed: {line}")


def changes(actions: Sequence[Action]) -> str:
    """``3 host changes (threads 1, IRQs 2)``; ``no host change``."""
    if not actions:
        return "no host change"
    return f"{len(actions)} host change{'s' if len(actions) != 1 else ''} ({summarize(actions)})"
