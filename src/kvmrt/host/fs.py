"""The one gateway from kvmrt to the machine's sysfs and procfs.

Every read and write of host state goes through a :class:`HostFS` created
with a root directory. Callers name files by kernel-relative paths such as
``"sys/devices/system/cpu/online"``; the root decides which tree those paths
land in: ``/`` on a real host, a generated tree in tests, a recorded tree when
debugging someone else's machine (``KVMRT_FSROOT``, like hwloc's
``HWLOC_FSROOT``).

Kernel files normally end in a newline, but not every value does: values
that come from firmware or the device tree end in NUL bytes on some ARM and
x86 machines (``"0-7\\0"``), and some drivers print without a newline or
with stray blanks. Reads take a value as the kernel's own parsers
(``sysfs_streq``, ``kstrto*``) and hwloc do: the text up to its trailing NULs
and whitespace, so one oddly written file never costs the whole host. Some
files are legitimately absent (``cpu0`` has no ``online`` file on most x86
machines, an unbound PCI device has no ``driver`` link), so reads take an
optional ``default`` for "absent".

Two system calls cannot be redirected to a root: ``sched_getaffinity`` and
``sched_setaffinity`` name a thread, not a file. They sit behind one
adapter, :class:`Kernel`, chosen once when the :class:`HostFS` is made
(``fs.kernel``): the system calls on ``/`` (:class:`LiveKernel`), the
thread's ``status`` file on any other root (:class:`TreeKernel`), read and
rewritten as the kernel would show it, so that a generated or captured tree
reads back what was done. Nothing else asks which root it runs on.
"""

from __future__ import annotations

import errno
import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol, TypeVar

from kvmrt.sets import IdSet, format_ids
from kvmrt.errors import HostReadError, SetSyntaxError
from kvmrt.host.masks import format_mask, mask_bits

FSROOT_ENV = "KVMRT_FSROOT"

# What may trail a value: the kernel's newline, blanks, and the NUL padding
# of firmware and device-tree strings, in any order.
_TRAILING = "\0 \t\n\r\v\f"

T = TypeVar("T")


class _Absent:
    """Marker for "no default given": absence is then an error."""

    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def sysfs_value(text: str) -> str:
    """``text`` as a value: leading whitespace and trailing NULs and
    whitespace dropped (``" 0-3\\n\\0\\0"`` -> ``"0-3"``)."""
    return text.rstrip(_TRAILING).lstrip()


@functools.lru_cache(maxsize=4096)
def parse_cpulist(text: str) -> frozenset[int]:
    """Parse a kernel cpulist (``"0-3,8,10-11\\n"``, or empty) into CPU ids.

    The kernel prints these with ``%*pbl``: comma-separated ids and ranges,
    a trailing newline, and an empty line for the empty set. A host has few
    distinct lists among thousands of threads and IRQs, so the parse of each
    text is kept (the result is immutable).
    """
    return frozenset(IdSet.parse(text))


class HostFS:
    """Reads and writes below one root directory.

    ``HostFS()`` uses ``$KVMRT_FSROOT`` when it is set and not empty, else
    ``/``. A leading ``/`` on a relative path is ignored, so a path can never
    escape the root by accident (hwloc's ``hwloc_openat`` does the same).
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(FSROOT_ENV) or "/"
        self.root = Path(root)
        self._prefix = os.path.join(str(self.root), "")
        self.kernel: Kernel = (LiveKernel(self) if os.path.realpath(self.root) == "/"
                               else TreeKernel(self))

    def __repr__(self) -> str:
        return f"HostFS({str(self.root)!r})"

    def path(self, rel: str) -> Path:
        """The real path of kernel-relative ``rel`` under the root."""
        return self.root / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.path(rel).exists()

    def is_dir(self, rel: str) -> bool:
        return self.path(rel).is_dir()

    def read(self, rel: str, default: T | _Absent = _ABSENT) -> str | T:
        """The file's value: its text without leading whitespace nor trailing
        NUL bytes and whitespace (see the module doc).

        An absent file returns ``default``, or raises ``FileNotFoundError``
        when no default is given. Other ``OSError`` s propagate. Bytes that
        are not UTF-8 (a task's ``comm`` may hold any) survive as surrogates.
        """
        try:
            data = self.read_bytes(rel)
        except FileNotFoundError:
            return self._absent(rel, default)
        return sysfs_value(data.decode("utf-8", "surrogateescape"))

    def read_bytes(self, rel: str) -> bytes:
        """The file's bytes as they are, in plain ``read(2)`` calls until the
        end (procfs and sysfs files have no size to ask for). Errors propagate."""
        fd = os.open(self._prefix + rel.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC)
        try:
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        return b"".join(chunks)

    def read_cpulist(
        self, rel: str, default: T | _Absent = _ABSENT
    ) -> frozenset[int] | T:
        """A cpulist file (``online``, ``node0/cpulist``...) as CPU ids.

        Raises :class:`HostReadError` naming the file when it does not parse.
        """
        text = self.read(rel, default=None)
        if text is None:
            return self._absent(rel, default)
        try:
            return parse_cpulist(text)
        except SetSyntaxError as err:
            raise HostReadError(str(self.path(rel)), f"not a cpulist: {err}") from err

    def read_int(self, rel: str, default: T | _Absent = _ABSENT, *, base: int = 10) -> int | T:
        """A file holding one integer (``numa_node``, ``class`` with base 16).

        Raises :class:`HostReadError` naming the file when it does not parse.
        """
        text = self.read(rel, default=None)
        if text is None:
            return self._absent(rel, default)
        try:
            return int(text, base)
        except ValueError as err:
            raise HostReadError(str(self.path(rel)), f"not an integer: {text!r}") from err

    def listdir(self, rel: str, default: T | _Absent = _ABSENT) -> list[str] | T:
        """Sorted entry names of a directory; ``default`` when it is absent."""
        try:
            return sorted(os.listdir(self._prefix + rel.lstrip("/")))
        except FileNotFoundError:
            return self._absent(rel, default)

    def readlink_name(self, rel: str, default: T | _Absent = _ABSENT) -> str | T:
        """The last component of a symlink's target.

        sysfs expresses relations as links: ``driver -> ../../bus/pci/drivers/igb``
        gives ``"igb"``, ``iommu_group -> ../../kernel/iommu_groups/12`` gives
        ``"12"``. An absent link returns ``default`` or raises
        ``FileNotFoundError``.
        """
        try:
            target = os.readlink(self.path(rel))
        except FileNotFoundError:
            return self._absent(rel, default)
        return os.path.basename(os.path.normpath(target))

    def _absent(self, rel: str, default: T | _Absent) -> T:
        """``default`` for an absent file, or the ``FileNotFoundError`` for it."""
        if isinstance(default, _Absent):
            path = str(self.path(rel))
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return default

    def write(self, rel: str, text: str) -> None:
        """Write ``text`` to an existing kernel file in one ``write(2)``.

        sysfs treats each write call as one store, so the text is not split.
        A newline ends the text, as ``echo`` writes it (the kernel accepts
        both, and a file read back then looks like the kernel's). The file
        is never created: writing a file the kernel does not provide fails
        with ``FileNotFoundError``, as it does on a real host.
        ``OSError`` s (EBUSY, EIO, EPERM...) propagate unchanged so that the
        caller can name the ones it expects.
        """
        fd = os.open(self._prefix + rel.lstrip("/"), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            os.write(fd, (text if text.endswith("\n") else text + "\n").encode())
        finally:
            os.close(fd)


class Kernel(Protocol):
    """The thread calls a root directory cannot redirect (see the module doc).

    Both take the thread as ``pid`` (its process) and ``tid``. Failures are
    the system call's: ``ProcessLookupError`` or ``FileNotFoundError`` for a
    thread that is gone, other ``OSError`` s (EINVAL, EPERM) as they come.
    """

    def affinity_reader(self) -> Callable[[int, int], frozenset[int]]:
        """A function ``(pid, tid) -> CPUs`` the thread may run on, for
        reading many threads at once (it may read host state once)."""

    def sched_setaffinity(self, pid: int, tid: int, cpus: frozenset[int]) -> None:
        """Bind the thread to ``cpus`` (no read back)."""


class LiveKernel:
    """The running kernel: the system calls themselves.

    ``sched_getaffinity`` is one system call where ``status`` makes the
    kernel print some 60 lines, but it answers the thread's CPUs *and the
    active ones*: a CPU that is offline drops out of it while ``status``
    (``Cpus_allowed_list``) still shows it. So it is used only while every
    possible CPU is online; otherwise ``status`` is read, as on a tree.
    """

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs

    def affinity_reader(self) -> Callable[[int, int], frozenset[int]]:
        cpu = "sys/devices/system/cpu"
        if self.fs.read(f"{cpu}/online", None) == self.fs.read(f"{cpu}/possible", ""):
            return _sched_getaffinity
        return functools.partial(status_affinity, self.fs)

    def sched_setaffinity(self, pid: int, tid: int, cpus: frozenset[int]) -> None:
        os.sched_setaffinity(tid, cpus)


@functools.lru_cache(maxsize=4096)
def _interned(cpus: frozenset[int]) -> frozenset[int]:
    """One shared frozenset per distinct affinity (thousands of threads share a few)."""
    return cpus


def _sched_getaffinity(pid: int, tid: int) -> frozenset[int]:
    return _interned(frozenset(os.sched_getaffinity(tid)))


class TreeKernel:
    """A tree below another root: the thread's ``status`` file stands for the
    kernel, read and rewritten as the kernel shows the thread's affinity."""

    def __init__(self, fs: HostFS) -> None:
        self.fs = fs

    def affinity_reader(self) -> Callable[[int, int], frozenset[int]]:
        return functools.partial(status_affinity, self.fs)

    def sched_setaffinity(self, pid: int, tid: int, cpus: frozenset[int]) -> None:
        rel = f"proc/{pid}/task/{tid}/status"
        self.fs.write(rel, rewrite_status(self.fs.read(rel), cpus))


_ALLOWED_LIST = "\nCpus_allowed_list:"
_ALLOWED = "\nCpus_allowed:"


def status_affinity(fs: HostFS, pid: int, tid: int) -> frozenset[int]:
    """``Cpus_allowed_list`` of ``proc/PID/task/TID/status``.

    Raises ``FileNotFoundError`` for a thread that is gone, ``ValueError``
    for a ``status`` without a readable list.
    """
    status = "\n" + fs.read_bytes(f"proc/{pid}/task/{tid}/status").decode("ascii", "replace")
    start, end = _line(status, _ALLOWED_LIST)
    if start < 0:
        raise ValueError("no Cpus_allowed_list in status")
    return parse_cpulist(status[start:end].strip())


def _line(text: str, key: str) -> tuple[int, int]:
    """Where the value of the line starting with ``key`` (``"\\nName:"``) is,
    ``(-1, -1)`` when there is none."""
    at = text.find(key)
    if at < 0:
        return -1, -1
    start = at + len(key)
    end = text.find("\n", start)
    return start, len(text) if end < 0 else end


def rewrite_status(status: str, cpus: frozenset[int]) -> str:
    """``status`` as the kernel shows it once the thread's affinity is ``cpus``:
    ``Cpus_allowed`` (as wide as before) and ``Cpus_allowed_list``."""
    status = "\n" + status
    start, end = _line(status, _ALLOWED)
    if start >= 0:
        mask = format_mask(cpus, mask_bits(status[start:end]))
        status = f"{status[:start]}\t{mask}{status[end:]}"
    start, end = _line(status, _ALLOWED_LIST)
    if start >= 0:
        status = f"{status[:start]}\t{format_ids(cpus)}{status[end:]}"
    return status[1:] + "\n"


@contextmanager
def host_read_errors() -> Iterator[None]:
    """Translate an unexpected ``OSError`` while reading into :class:`HostReadError`.

    Used at the boundary of a snapshot reader, so that callers see one named
    error with the failing path and the original error chained.
    """
    try:
        yield
    except OSError as err:
        path = err.filename if err.filename is not None else "?"
        raise HostReadError(str(path), err.strerror or str(err)) from err
