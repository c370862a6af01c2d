"""The host's ftrace buffer for guest services: ``trace_marker`` records
and ``snapshot`` files.

tracefs is found in ``/proc/self/mounts``; when it is not mounted it is
mounted at ``/sys/kernel/tracing``, as trace-cmd does. Snapshots: writing
``1`` to ``per_cpu/cpuN/snapshot`` swaps that CPU's buffer into the
snapshot buffer (kernels with ``CONFIG_TRACER_SNAPSHOT_PER_CPU_SWAP``);
the top-level ``snapshot`` takes every CPU at once. A kernel without
``CONFIG_TRACER_SNAPSHOT`` has no ``snapshot`` file at all:
:class:`SnapshotUnsupported` says so; a write the kernel refuses (EBUSY
while a latency tracer owns the snapshot buffer, ENOMEM allocating it) is
a :class:`SnapshotError`.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
from pathlib import Path

from kvmrt.sets import format_ids
from kvmrt.errors import KvmrtError
from kvmrt.hostcheck.kernel import parse_mounts

DEFAULT_MOUNTPOINT = Path("/sys/kernel/tracing")


class TracefsError(KvmrtError):
    """tracefs is not there and could not be mounted."""


class SnapshotError(KvmrtError):
    """The kernel refused a snapshot."""


class SnapshotUnsupported(SnapshotError):
    """The kernel cannot take the snapshot asked for."""


def find_tracefs(mounts_file: Path = Path("/proc/self/mounts")) -> Path | None:
    """Where tracefs is mounted in this mount namespace, or None."""
    for m in parse_mounts(mounts_file.read_text()):
        if m.fstype == "tracefs":
            return Path(m.target)
    return None


def mount_tracefs(mountpoint: Path = DEFAULT_MOUNTPOINT) -> Path:
    """tracefs, mounted at ``mountpoint`` if it is not mounted anywhere yet."""
    found = find_tracefs()
    if found is not None:
        return found
    done = subprocess.run(["mount", "-t", "tracefs", "nodev", str(mountpoint)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise TracefsError(f"cannot mount tracefs at {mountpoint}: "
                           f"{done.stderr.strip() or 'mount failed'}")
    return mountpoint


class Tracefs:
    """One tracefs directory: marker writes (thread-safe) and snapshots."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._marker = os.open(self.root / "trace_marker", os.O_WRONLY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self._marker)

    def mark(self, text: str) -> None:
        """One ``trace_marker`` record (the kernel cuts it at its own limit)."""
        with self._lock:
            os.write(self._marker, text.encode())

    def snapshot(self, cpus: frozenset[int] | None) -> str:
        """Take a snapshot of ``cpus`` (None: all); say what was taken."""
        top = self.root / "snapshot"
        if not top.exists():
            raise SnapshotUnsupported("the host kernel has no ftrace snapshot "
                                      "(CONFIG_TRACER_SNAPSHOT is not set)")
        if cpus is None:
            self._take("snapshot")
            return "all CPUs"
        try:
            for cpu in sorted(cpus):
                _write(self.root / f"per_cpu/cpu{cpu}/snapshot")
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise _refused(f"per_cpu/cpu{cpu}/snapshot", exc) from exc
            self._take("snapshot")
            return (f"all CPUs (per-CPU snapshots of {format_ids(cpus)} need "
                    "CONFIG_TRACER_SNAPSHOT_PER_CPU_SWAP)")
        return f"CPUs {format_ids(cpus)}"

    def _take(self, name: str) -> None:
        try:
            _write(self.root / name)
        except OSError as exc:
            raise _refused(name, exc) from exc


def _refused(name: str, exc: OSError) -> SnapshotError:
    return SnapshotError(f"the host kernel refused the snapshot ({name}: {exc.strerror})")


def _write(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, b"1")
    finally:
        os.close(fd)
