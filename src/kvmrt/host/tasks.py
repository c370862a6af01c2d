"""Threads of the host and their CPU affinity.

Read from ``/proc/PID/task/TID/stat`` (comm, flags, start time, last CPU)
and the thread's CPU affinity through the HostFS's kernel adapter
(``sched_getaffinity`` on ``/``, ``.../status`` in a tree: see
:mod:`kvmrt.host.fs`). What the kernel does that matters here:

- ``comm`` in ``stat`` is wrapped in parentheses and may itself hold spaces
  and parentheses (``CPU 0/KVM``, ``(sd-pam)``): the fields start after the
  *last* ``)``.
- Thread ids are reused. ``(tid, starttime)`` identifies a thread; a change
  is re-checked before every write.
- Kernel threads carry PF_KTHREAD; those bound to one CPU by the kernel
  (migration/N, ksoftirqd/N, cpuhp/N, kworker/N:M) also carry
  PF_NO_SETAFFINITY, and ``sched_setaffinity`` fails with EINVAL for them.
- The kernel also runs threads of its own *inside* a user process: vhost
  workers (``vhost-PID``) and, since Linux 6.13, KVM's NX huge page
  recovery (``kvm-nx-lpage-re``) are PF_USER_WORKER threads of QEMU,
  io_uring workers (``iou-wrk-TID``) PF_IO_WORKER ones. They are the
  kernel's (``worker``), not the program's. Before Linux 6.4 a vhost worker
  is a kernel thread of its own, ``vhost-PID`` after the QEMU that owns it,
  which libvirt puts in that VM's emulator cgroup (``vhost_of``).
- A threaded IRQ handler ``irq/N-name`` (every handler on PREEMPT_RT) is a
  kernel thread that follows its IRQ's effective CPU (``irq_thread``).
- Threads exit at any time: a directory or file vanishes (ENOENT) or a read
  fails with ESRCH. :func:`read_tasks` skips them; :func:`read_task` raises
  :class:`TaskVanished`.

``sched_setaffinity`` cannot be redirected to a root, so :func:`set_affinity`
goes through the HostFS's kernel adapter (``fs.kernel``).
"""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass
from typing import Callable, Iterable

from kvmrt.sets import format_ids
from kvmrt.errors import HostReadError, HostWriteError, NotMovable, TaskVanished
from kvmrt.host.fs import HostFS

PF_IO_WORKER = 0x00000010
PF_USER_WORKER = 0x00004000
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000

# Fields of /proc/PID/task/TID/stat, numbered as in proc(5) (comm is 2).
STAT_FLAGS = 9
STAT_STARTTIME = 22
STAT_PROCESSOR = 39

_GONE = (FileNotFoundError, ProcessLookupError)
_IRQ_THREAD = re.compile(r"irq/(\d+)-")
_VHOST = re.compile(r"vhost-(\d+)\Z")


@dataclass(frozen=True)
class Task:
    """One thread. ``(tid, starttime)`` is its identity."""

    pid: int
    tid: int
    comm: str
    affinity: frozenset[int]
    last_cpu: int | None
    starttime: int
    kernel: bool
    pinned: bool
    worker: bool = False     # the kernel's thread in a user process (vhost, io_uring)

    @property
    def irq_thread(self) -> int | None:
        """The IRQ a threaded IRQ handler (``irq/N-name``) serves, else None."""
        m = _IRQ_THREAD.match(self.comm) if self.kernel else None
        return int(m.group(1)) if m else None

    @property
    def vhost_of(self) -> int | None:
        """The PID of the QEMU a vhost worker kernel thread (``vhost-PID``,
        before Linux 6.4) serves, else None."""
        m = _VHOST.match(self.comm) if self.kernel else None
        return int(m.group(1)) if m else None


def task_dir(pid: int, tid: int) -> str:
    return f"proc/{pid}/task/{tid}"


def parse_stat(text: str) -> tuple[str, list[str]]:
    """``comm`` and the fields after it; ``fields[n - 3]`` is proc(5) field n."""
    open_paren, close_paren = text.find("("), text.rfind(")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError(f"no (comm) in {text[:40]!r}")
    return text[open_paren + 1:close_paren], text[close_paren + 1:].split()


def read_task(fs: HostFS, pid: int, tid: int) -> Task:
    """Thread ``tid`` of process ``pid``; :class:`TaskVanished` when it is gone."""
    return _read(fs, fs.kernel.affinity_reader(), pid, tid)


def read_affinity(fs: HostFS, task: Task) -> frozenset[int]:
    """The CPUs ``task`` may run on now, without its ``stat`` (a write's read
    back); :class:`TaskVanished` when it is gone."""
    return _affinity(fs, fs.kernel.affinity_reader(), task.pid, task.tid)


Affinity = Callable[[int, int], frozenset[int]]


def _stat_only(pid: int, tid: int) -> frozenset[int]:
    """No affinity: a thread's identity and flags are all :func:`set_affinity` checks."""
    return frozenset()


def _read(fs: HostFS, affinity: Affinity, pid: int, tid: int) -> Task:
    base = task_dir(pid, tid)
    try:
        stat = fs.read_bytes(f"{base}/stat").decode("utf-8", "surrogateescape")
    except _GONE as err:
        raise TaskVanished(tid) from err
    cpus = _affinity(fs, affinity, pid, tid)
    try:
        return _task(pid, tid, stat, cpus)
    except (ValueError, IndexError) as err:
        raise HostReadError(str(fs.path(base)), f"unexpected stat: {err}") from err


def _affinity(fs: HostFS, affinity: Affinity, pid: int, tid: int) -> frozenset[int]:
    try:
        return affinity(pid, tid)
    except _GONE as err:
        raise TaskVanished(tid) from err
    except ValueError as err:
        raise HostReadError(str(fs.path(task_dir(pid, tid))),
                            f"unexpected status: {err}") from err


def _task(pid: int, tid: int, stat: str, affinity: frozenset[int]) -> Task:
    comm, fields = parse_stat(stat)
    flags = int(fields[STAT_FLAGS - 3])
    processor = STAT_PROCESSOR - 3
    return Task(
        pid=pid, tid=tid, comm=comm, affinity=affinity,
        last_cpu=int(fields[processor]) if len(fields) > processor else None,
        starttime=int(fields[STAT_STARTTIME - 3]),
        kernel=bool(flags & PF_KTHREAD), pinned=bool(flags & PF_NO_SETAFFINITY),
        worker=bool(flags & (PF_USER_WORKER | PF_IO_WORKER)),
    )


def read_tasks(fs: HostFS, pids: Iterable[int] | None = None) -> list[Task]:
    """Every thread of every process (or of ``pids``), in pid, tid order.

    Processes and threads that exit while they are read are left out.
    """
    if pids is None:
        pids = [int(name) for name in _proc_entries(fs) if name.isdigit()]
    affinity = fs.kernel.affinity_reader()
    tasks = []
    for pid in sorted(pids):
        try:
            tids = [int(t) for t in fs.listdir(f"proc/{pid}/task", default=[]) if t.isdigit()]
        except ProcessLookupError:
            continue
        for tid in sorted(tids):
            try:
                tasks.append(_read(fs, affinity, pid, tid))
            except TaskVanished:
                continue
    return tasks


def _proc_entries(fs: HostFS) -> list[str]:
    entries = fs.listdir("proc", default=None)
    if entries is None:
        raise HostReadError(str(fs.path("proc")), "no procfs below this root")
    return entries


def set_affinity(fs: HostFS, task: Task, cpus: frozenset[int]) -> None:
    """Bind ``task`` to ``cpus``.

    The kernel may keep fewer CPUs than asked without a word (those outside
    the thread's cgroup v1 cpuset); :func:`read_task` shows what it kept.

    Raises :class:`TaskVanished` when the thread exited or its tid now names
    another thread, :class:`NotMovable` for a thread the kernel binds to its
    CPU (PF_NO_SETAFFINITY: the kernel answers EINVAL, so nothing is tried),
    :class:`HostWriteError` for any other refusal. An empty ``cpus`` is a
    ``ValueError``: no thread can run nowhere.
    """
    if not cpus:
        raise ValueError(f"thread {task.tid}: empty CPU set")
    current = _read(fs, _stat_only, task.pid, task.tid)
    if current.starttime != task.starttime:
        raise TaskVanished(task.tid)
    if current.pinned:
        raise NotMovable(task.tid, current.comm)
    try:
        fs.kernel.sched_setaffinity(task.pid, task.tid, frozenset(cpus))
    except _GONE as err:
        raise TaskVanished(task.tid) from err
    except OSError as err:
        hint = (f" (no CPU of {format_ids(cpus)} is online in the thread's cpuset)"
                if err.errno == errno.EINVAL else "")
        path = str(fs.path(task_dir(task.pid, task.tid)))
        raise HostWriteError(path, f"sched_setaffinity: {err.strerror}{hint}") from err
