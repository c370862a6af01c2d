"""The journal: every old value, recorded durably before kvmrt changes it.

One append-only file of JSON lines, ``journal.jsonl``, in the state
directory: ``$KVMRT_STATE_DIR``, else ``run/kvmrt`` below the host root
(``/run/kvmrt`` on a real host: it does not survive a reboot, and neither
do the changes it records). Lines:

- ``{"op": "vm", "vm": {...}, "by": {"pid": P, "start": T}}`` an rt VM is
  (being) tuned by process P (started at T clock ticks after boot), which
  goes on to start it: while P runs, recovery leaves the VM alone even if
  its domain does not run yet; ``{"op": "vm-gone", "uuid": U}`` it no
  longer is tuned;
- ``{"op": "old", "key": K, "label": L, "value": V}`` the baseline of K, the
  first time kvmrt changes it (later ones for the same key are ignored). V
  is true or false (a CPU online) or ``{"cpus": "0-15,32-511"}``, a CPU set
  as its cpulist text (older journals list the numbers, ``{"cpus": [0, 1,
  ...]}``, still read). A thread's record has no label: its key (tid and
  start time) names it, and a host has tens of thousands;
- ``{"op": "settled", "key": K}`` K is back at its baseline;
- ``{"op": "refused", "key": K, "reason": R}`` the kernel refused to change K.

Each batch of lines is written completely (or not at all: a failed write is
cut off again and raises) and fsynced before the changes it announces are
made, so a SIGKILL at any point leaves a journal from which the next kvmrt
command restores the host exactly. Only the last line can be torn (written
in part when kvmrt died): it announced nothing that was done, is skipped
when read and cut off before the next append. Any other line that does not
read as a record stops every command that reads the journal, naming the
line, before anything changes. When nothing is tuned any more and every
key is settled, the file is removed. A command reads the journal again
after its own appends; only the lines added since its last read are
decoded then.

The state directory is created 0755 and the files in it 0644 whatever the
umask (``kvmrt-stat`` reads the journal as any user). kvmrt refuses a state
directory that is a symbolic link, is owned by someone other than root or
the caller, is writable by others, or is immutable (``chattr +i``); and a
journal, lock or pid file that is a symbolic link or not a regular file
(a FIFO would hang every reader). Files are opened without blocking and
without following links.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kvmrt import lockfile
from kvmrt.sets import format_ids
from kvmrt.errors import KvmrtError, SetSyntaxError
from kvmrt.host.fs import HostFS, parse_cpulist
from kvmrt.tuning.model import Action, TunedVm

STATE_ENV = "KVMRT_STATE_DIR"
JOURNAL = "journal.jsonl"
LOCK = "lock"
FILE_MODE = 0o644
DIR_MODE = 0o755
ADVICE = ("kvmrt changes nothing until every record reads: repair that line, or move "
          "the file aside and reboot to get the host's own settings back "
          "(kvmrt(7), RECOVERY)")

_FS_IOC_GETFLAGS = 0x80086601
_FS_IMMUTABLE_FL = 0x10
_FS_APPEND_FL = 0x20


class JournalError(KvmrtError):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"journal {path}: {reason}")


@dataclass
class JournalState:
    vms: dict[str, TunedVm] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    tuners: dict[str, lockfile.Process] = field(default_factory=dict)

    def copy(self) -> "JournalState":
        return JournalState(dict(self.vms), dict(self.baseline), dict(self.labels),
                            dict(self.refused), dict(self.tuners))

    @property
    def empty(self) -> bool:
        return not self.vms and not self.baseline

    def booting(self, uuid: str) -> bool:
        """Another kvmrt process that still runs tuned this VM and goes on
        to start it (its domain may not run yet)."""
        tuner = self.tuners.get(uuid)
        return (tuner is not None and tuner.pid != os.getpid() and tuner.alive())


class Journal:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / JOURNAL

    @classmethod
    def for_host(cls, fs: HostFS) -> "Journal":
        return cls(Path(os.environ.get(STATE_ENV) or fs.path("run/kvmrt")))

    @contextmanager
    def locked(self, *, dry_run: bool = False,
               wait: float | None = None) -> Iterator["Journal"]:
        """One kvmrt command that changes the host at a time; a dry run
        only reads, so it takes no lock and creates nothing. A held lock is
        waited for up to ``wait`` seconds (None: the command's ``--wait``),
        then :class:`kvmrt.lockfile.LockBusy` names its holder."""
        if dry_run:
            yield self
            return
        fd = self.open_file(LOCK, os.O_RDWR | os.O_CREAT)
        try:
            try:
                lockfile.acquire(fd, str(self.dir / LOCK), wait=wait)
            except OSError as exc:
                raise JournalError(self.dir / LOCK, _reason(exc)) from exc
            self._require_changeable()
            yield self
        finally:
            os.close(fd)

    def check(self) -> None:
        """Raise JournalError now if a command could not read the journal
        or record its changes later (a corrupt line, a FIFO, an immutable
        state directory), and LockBusy if another command holds the lock
        past the ``--wait`` (the lock is taken and let go): for a command
        that changes something else first, as kvmrt-shutdown stops its VMs
        before it restores the host. Creates nothing."""
        self.load()
        if os.path.lexists(self.dir):
            self._require_changeable()
            if os.path.lexists(self.dir / LOCK):
                with self.locked():
                    pass

    def load(self) -> JournalState:
        data = self.read_file(JOURNAL)
        if data is None:
            return JournalState()
        return _folded(data, self.path)

    def record_vm(self, vm: TunedVm, tuner: lockfile.Process | None = None) -> None:
        record: dict[str, Any] = {"op": "vm", "vm": vm.as_json()}
        if tuner is not None:
            record["by"] = {"pid": tuner.pid, "start": tuner.start}
        self._append([record])

    def forget_vm(self, uuid: str) -> None:
        self._append([{"op": "vm-gone", "uuid": uuid}])

    def record_old(self, actions: list[Action], known: dict[str, Any]) -> None:
        """Durably record the old value of every action's key not yet known."""
        lines = [_old(a) for a in actions if a.key not in known]
        self._append(lines)

    def settle(self, keys: list[str]) -> None:
        self._append([{"op": "settled", "key": k} for k in keys])

    def refused(self, key: str, reason: str) -> None:
        self._append([{"op": "refused", "key": key, "reason": reason}])

    def compact(self) -> None:
        """Remove the file once nothing is tuned and everything is settled."""
        if not self.load().empty:
            return
        dir_fd = self._open_dir()
        try:
            os.unlink(JOURNAL, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JournalError(self.path, f"cannot remove it: {_reason(exc)}") from exc
        finally:
            os.close(dir_fd)

    # --- files of the state directory ----------------------------------------

    def open_file(self, name: str, flags: int) -> int:
        """Open ``name`` in the state directory (created as needed) without
        following links; it must be a regular file, and is given mode 0644."""
        path = self.dir / name
        dir_fd = self._open_dir(create=True)
        try:
            fd = os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         FILE_MODE, dir_fd=dir_fd)
        except OSError as exc:
            raise JournalError(path, _reason(exc)) from exc
        finally:
            os.close(dir_fd)
        try:
            st = os.fstat(fd)
            _require_regular(path, st.st_mode)
            if stat.S_IMODE(st.st_mode) != FILE_MODE and flags & os.O_CREAT:
                os.fchmod(fd, FILE_MODE)
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise JournalError(path, _reason(exc)) from exc
            raise
        return fd

    def read_file(self, name: str) -> bytes | None:
        """The content of ``name`` in the state directory, None if it (or
        the directory) does not exist. Never blocks, never follows links,
        creates nothing: any user may call it."""
        path = self.dir / name
        dir_fd = self._open_dir(create=False)
        if dir_fd is None:
            return None
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                         dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(path, _reason(exc)) from exc
        finally:
            os.close(dir_fd)
        with os.fdopen(fd, "rb") as f:
            try:
                _require_regular(path, os.fstat(fd).st_mode)
                return f.read()
            except OSError as exc:
                raise JournalError(path, _reason(exc)) from exc

    def remove_file(self, name: str) -> None:
        dir_fd = self._open_dir(create=False)
        if dir_fd is None:
            return
        try:
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise JournalError(self.dir / name, _reason(exc)) from exc
        finally:
            os.close(dir_fd)

    def _open_dir(self, *, create: bool = True) -> int | None:
        """A descriptor of the state directory, after checking that it is
        kvmrt's: not a link, owned by root or the caller, not writable by
        others. Created 0755 if ``create``; None if missing and not."""
        created = create and _make_dir(self.dir)
        try:
            fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if create:
                raise JournalError(self.dir, "the state directory vanished") from None
            return None
        except OSError as exc:
            raise JournalError(self.dir, f"the state directory {_dir_reason(exc)}") from exc
        try:
            if created:
                os.fchmod(fd, DIR_MODE)
            _require_own_dir(self.dir, os.fstat(fd))
        except BaseException as exc:
            os.close(fd)
            if isinstance(exc, OSError):
                raise JournalError(self.dir, _reason(exc)) from exc
            raise
        return fd

    def _require_changeable(self) -> None:
        """Refuse, before anything changes, a state directory or journal in
        which kvmrt could record its changes but not remove them (or not
        record them at all): immutable, append-only, read-only."""
        dir_fd = self._open_dir()
        try:
            if os.fstatvfs(dir_fd).f_flag & os.ST_RDONLY:
                raise JournalError(self.dir, "the state directory is on a read-only "
                                   "file system; kvmrt cannot journal its changes there")
            _require_no_flags(self.dir, dir_fd)
            try:
                fd = os.open(JOURNAL, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                             | os.O_CLOEXEC, dir_fd=dir_fd)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise JournalError(self.path, _reason(exc)) from exc
            try:
                _require_no_flags(self.path, fd)
            finally:
                os.close(fd)
        finally:
            os.close(dir_fd)

    def _append(self, records: list[dict]) -> None:
        """Write ``records`` as lines, all of them or none, and fsync."""
        if not records:
            return
        data = "".join(_ENCODER.encode(r) + "\n" for r in records).encode()
        fd = self.open_file(JOURNAL, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        try:
            end = _fresh_line(fd, self.path)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                _cut(fd, end)
                raise JournalError(self.path, f"cannot record {len(records)} line(s): "
                                   f"{_reason(exc)}; nothing they announce was changed"
                                   ) from exc
            _appended(self.path, end, data, records)
        except OSError as exc:
            raise JournalError(self.path, _reason(exc)) from exc
        finally:
            os.close(fd)


def _make_dir(directory: Path) -> bool:
    """Create the state directory (0755, whatever the umask, set by the
    caller through its descriptor); True if this call created it."""
    try:
        directory.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.mkdir(directory, DIR_MODE)
    except FileExistsError:
        return False
    except OSError as exc:
        raise JournalError(directory, f"cannot create the state directory: "
                           f"{_reason(exc)}") from exc
    return True


def _require_own_dir(directory: Path, st: os.stat_result) -> None:
    if st.st_uid not in (0, os.geteuid()):
        raise JournalError(directory, f"the state directory is owned by uid {st.st_uid}, "
                           "not root: refusing to trust it; remove it or give it to root")
    if st.st_mode & 0o022:
        raise JournalError(directory, f"the state directory is writable by others "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}): refusing to trust it; "
                           f"chmod 0755 {directory}")


def _require_regular(path: Path, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise JournalError(path, "not a regular file; kvmrt writes only regular files "
                           "there: remove it")


def _require_no_flags(path: Path, fd: int) -> None:
    try:
        raw = fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(8))
    except OSError:
        return      # the file system has no such flags
    flags = struct.unpack_from("i", raw)[0]
    if flags & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
        word = "immutable" if flags & _FS_IMMUTABLE_FL else "append-only"
        raise JournalError(path, f"is {word} (lsattr shows it); kvmrt could not record or "
                           f"remove its changes there: chattr -ia {path}")


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "is a symbolic link; kvmrt does not follow links in its state directory"
    return (exc.strerror or str(exc)).lower()


def _dir_reason(exc: OSError) -> str:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return "is a symbolic link or not a directory; remove it"
    return _reason(exc)


def _fresh_line(fd: int, path: Path) -> int:
    """Make the file end with a line break, so that the next record starts
    on a line of its own; return its length. A torn last line (written in
    part by a kvmrt that died) announced nothing that was done: it is cut
    off, unless it is a whole record that only lacks its line break."""
    size = os.fstat(fd).st_size
    if not size or os.pread(fd, 1, size - 1) == b"\n":
        return size
    data = os.pread(fd, size, 0)
    start = data.rfind(b"\n") + 1
    try:
        _decode_line(data[start:], path, data.count(b"\n") + 1)
    except JournalError:
        _cut(fd, start)
        return start
    _write_all(fd, b"\n")
    return size + 1


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut(fd: int, length: int) -> None:
    try:
        os.ftruncate(fd, length)
    except OSError:
        pass    # the write failed already; it is what gets reported


# One line a record, keys sorted, no blanks: 20,000 threads moved make 20,000 lines.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


@dataclass
class _Read:
    """What a journal's whole lines fold to, kept for the next read of it."""

    lines: bytes
    count: int
    state: JournalState


_last_read: dict[Path, _Read] = {}


def _folded(data: bytes, path: Path) -> JournalState:
    """The state ``data`` records. Each command reads the journal again
    after its own appends: when ``data`` begins with the whole lines read
    last time, only the lines after them are decoded and folded."""
    seen = _last_read.get(path)
    if seen is None or not data.startswith(seen.lines):
        seen = _Read(b"", 0, JournalState())
    end = data.rfind(b"\n") + 1
    state = seen.state.copy()
    body = data[len(seen.lines):end]
    for record in _records(body, path, seen.count):
        _fold(state, record)
    _last_read[path] = _Read(data[:end], seen.count + body.count(b"\n"), state)
    last = data[end:]
    if not last.strip():
        return state.copy()
    tail = state.copy()
    try:
        _fold(tail, _decode_line(last, path, seen.count + body.count(b"\n") + 1))
    except JournalError:
        pass    # torn by a kill mid-append: the change it announced was never made
    return tail


def _appended(path: Path, end: int, data: bytes, records: list[dict]) -> None:
    """Fold the records just appended after byte ``end`` into what was
    read last, so that the next read need not decode them again (it still
    checks that the file begins with all of it)."""
    seen = _last_read.get(path)
    if seen is None or len(seen.lines) != end:
        return
    state = seen.state.copy()
    for record in records:
        _fold(state, record)
    _last_read[path] = _Read(seen.lines + data, seen.count + len(records), state)


def _records(body: bytes, path: Path, before: int) -> Iterator[dict]:
    """The records of whole lines ``body`` (after ``before`` lines)."""
    for number, line in enumerate(body.split(b"\n")[:-1], before + 1):
        if line.strip():
            yield _decode_line(line, path, number)


def _fold(state: JournalState, r: dict) -> None:
    op = r["op"]
    if op == "vm":
        vm = TunedVm.from_json(r["vm"])
        state.vms[vm.uuid] = vm
        state.tuners.pop(vm.uuid, None)
        if "by" in r:
            state.tuners[vm.uuid] = lockfile.Process(r["by"]["pid"], r["by"]["start"])
    elif op == "vm-gone":
        state.vms.pop(r["uuid"], None)
        state.tuners.pop(r["uuid"], None)
    elif op == "old" and r["key"] not in state.baseline:
        state.baseline[r["key"]] = _decode(r["value"])
        state.labels[r["key"]] = r.get("label", r["key"])
    elif op == "settled":
        state.baseline.pop(r["key"], None)
        state.refused.pop(r["key"], None)
    elif op == "refused":
        state.refused[r["key"]] = r.get("reason", "")


def _old(action: Action) -> dict:
    record = {"op": "old", "key": action.key, "value": _encode(action.old)}
    label = action.setting.journal_label
    if label is not None:
        record["label"] = label
    return record


def _encode(value: Any) -> Any:
    """A CPU set as its cpulist text (``{"cpus": "0-15,32-511"}``)."""
    if isinstance(value, frozenset):
        return {"cpus": format_ids(value)}
    return value


def _decode(value: Any) -> Any:
    """Also the list of CPU numbers of journals before the cpulist text."""
    if isinstance(value, dict):
        cpus = value["cpus"]
        return parse_cpulist(cpus) if isinstance(cpus, str) else frozenset(cpus)
    return value


def _decode_line(line: bytes, path: Path, number: int) -> dict:
    """One record, checked field by field; JournalError names the line."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        problem = "is not UTF-8 text"
    except ValueError:
        problem = "is not a JSON object"
    else:
        problem = _problem(record)
    if problem:
        raise JournalError(path, f"line {number} {problem}; {ADVICE}")
    return record


_INT_LIST = "a list of CPU numbers"
_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    # op -> field -> (what it must be, "optional" if it may be missing)
    "vm": {"vm": ("vm",), "by": ("process", "optional")},
    "vm-gone": {"uuid": ("text",)},
    "old": {"key": ("text",), "label": ("text", "optional"), "value": ("value",)},
    "settled": {"key": ("text",)},
    "refused": {"key": ("text",), "reason": ("text", "optional")},
}
_VM_FIELDS = {"uuid": ("text",), "name": ("text",), "shielded": ("cpus",),
              "offline": ("cpus",), "irq_cpu": ("cpu or null", "optional"),
              "pcidevs": ("texts", "optional")}


def _problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "is not a JSON object"
    op = record.get("op")
    if op not in _FIELDS:
        return f"has an unknown op {op!r} (not written by this kvmrt)"
    return _field_problem(record, _FIELDS[op], f"a {op!r} record")


def _field_problem(record: dict, fields: dict, what: str) -> str | None:
    for name, (kind, *optional) in fields.items():
        if name not in record:
            if not optional:
                return f"lacks {name!r} ({what})"
        elif not _is(kind, record[name]):
            return f"has {name!r} = {json.dumps(record[name])[:60]}, not {_KINDS[kind]} ({what})"
    if "vm" in fields and isinstance(record.get("vm"), dict):
        return _field_problem(record["vm"], _VM_FIELDS, "the VM of a 'vm' record")
    return None


def _cpu(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _cpus(v: Any) -> bool:
    return isinstance(v, list) and all(_cpu(c) for c in v)


def _cpulist(v: Any) -> bool:
    """A cpulist text, or (journals before it) a list of CPU numbers."""
    if not isinstance(v, str):
        return _cpus(v)
    try:
        parse_cpulist(v)
    except SetSyntaxError:
        return False
    return True


_CHECKS = {
    "text": lambda v: isinstance(v, str),
    "texts": lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
    "cpus": _cpus,
    "cpu or null": lambda v: v is None or _cpu(v),
    "vm": lambda v: isinstance(v, dict),
    "process": lambda v: (isinstance(v, dict) and _cpu(v.get("pid"))
                          and _cpu(v.get("start"))),
    "value": lambda v: isinstance(v, bool) or (isinstance(v, dict) and set(v) == {"cpus"}
                                               and _cpulist(v["cpus"])),
}
_KINDS = {
    "text": "text", "texts": "a list of texts", "cpus": _INT_LIST,
    "cpu or null": "a CPU number or null", "vm": "an object",
    "process": '{"pid": N, "start": N}',
    "value": 'true, false or {"cpus": "CPULIST"}',
}


def _is(kind: str, value: Any) -> bool:
    return _CHECKS[kind](value)
