"""Exclusive locks that say who holds them, and processes known beyond their PID.

kvmrt has two locks: ``.NAME.lock`` beside the config file (one
read-modify-write of the file at a time) and ``lock`` in the state directory
(one command that changes the host at a time). Both are ``flock(2)`` locks
on a file that holds the PID of the process that last took the lock. A
command that finds a lock held waits for it, as package managers do, up to
a number of seconds (``--wait SECONDS``; :data:`DEFAULT_WAIT`, 0 = do not
wait), says once whom it waits for, and gives up naming the holder: its PID
and command line.

The PIDs here are this machine's processes, never the host root's
(``KVMRT_FSROOT``): they are read from the real ``/proc``.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass
from typing import Callable

from kvmrt.errors import KvmrtError

DEFAULT_WAIT = 60.0
_POLL = 0.05


class LockBusy(KvmrtError):
    """Another process held the lock longer than this one would wait."""

    def __init__(self, path: str, holder: str, waited: float) -> None:
        self.path = path
        self.holder = holder
        self.waited = waited
        gave_up = f"gave up after {waited:g} s" if waited else "not waiting (--wait 0)"
        self.reason = (f"locked by {holder}; {gave_up}; try again when it has finished, "
                       "or wait longer with --wait SECONDS")
        super().__init__(f"{path}: {self.reason}")


@dataclass
class _Waiting:
    seconds: float = DEFAULT_WAIT
    notify: Callable[[str], None] | None = None


_waiting = _Waiting()


def set_wait(seconds: float, notify: Callable[[str], None] | None = None) -> None:
    """How long this process waits for a held lock, and whom it tells that
    it waits (the command layer sets both from ``--wait``)."""
    _waiting.seconds, _waiting.notify = seconds, notify


@dataclass(frozen=True)
class Process:
    """A process of this machine: its PID and start time (clock ticks after
    boot), so that a reused PID is not taken for the process."""

    pid: int
    start: int

    @classmethod
    def current(cls) -> "Process":
        pid = os.getpid()
        start = start_time(pid)
        return cls(pid, start if start is not None else 0)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, or None when no such process runs."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    return pid > 0 and start_time(pid) is not None


def describe(pid: int) -> str:
    """``pid 1234 (kvmrt-boot --all)``, from /proc/PID/cmdline."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return f"pid {pid}"
    if len(argv) > 1 and os.path.basename(argv[0]).startswith("python"):
        argv = argv[1:]      # an entry point script run by the interpreter
    if argv:
        argv[0] = os.path.basename(argv[0])
    command = " ".join(" ".join(argv).split())
    if len(command) > 80:
        command = command[:77] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"


def holder(fd: int) -> str:
    """Who holds the lock on ``fd``: the PID its holder wrote, if that
    process still runs."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    if text.isdigit() and pid_alive(int(text)):
        return describe(int(text))
    return "another process"


def acquire(fd: int, path: str, *, wait: float | None = None) -> None:
    """Take an exclusive ``flock`` on ``fd`` and write this process's PID
    into the file. A held lock is waited for up to ``wait`` seconds (None:
    as :func:`set_wait` said), then :class:`LockBusy` names its holder.
    OSError from the lock file itself propagates."""
    seconds = _waiting.seconds if wait is None else wait
    if not _try(fd):
        if seconds > 0 and _waiting.notify is not None:
            _waiting.notify(f"waiting up to {seconds:g} s for {path}, "
                            f"locked by {holder(fd)}")
        _wait(fd, path, seconds)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _try(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait(fd: int, path: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not _try(fd):
        if time.monotonic() >= deadline:
            raise LockBusy(path, holder(fd), seconds)
        time.sleep(_POLL)
