"""The journal: every old value, recorded durably before kvmrt changes it.

One append-only file of JSON lines, ``journal.jsonl``, in the state
directory: ``$KVMRT_STATE_DIR``, else ``run/kvmrt`` below the host root
(``/run/kvmrt`` on a real host: it does not survive a reboot, and neither
do the changes it records). Lines:

- ``{"op": "vm", "vm": {...}}`` an rt VM is (being) tuned; ``{"op": "vm-gone",
  "uuid": U}`` it no longer is;
- ``{"op": "old", "key": K, "label": L, "value": V}`` the baseline of K, the
  first time kvmrt changes it (later ones for the same key are ignored);
- ``{"op": "settled", "key": K}`` K is back at its baseline;
- ``{"op": "refused", "key": K, "reason": R}`` the kernel refused to change K.

Each batch of lines is written with one ``write`` and fsynced before the
changes it announces are made, so a SIGKILL at any point leaves a journal
from which the next kvmrt command restores the host exactly. When nothing
is tuned any more and every key is settled, the file is removed.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kvmrt.errors import KvmrtError
from kvmrt.host.fs import HostFS
from kvmrt.tuning.model import Action, TunedVm

STATE_ENV = "KVMRT_STATE_DIR"


class JournalError(KvmrtError):
    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        super().__init__(f"journal {path}: {reason}")


@dataclass
class JournalState:
    vms: dict[str, TunedVm] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.vms and not self.baseline


class Journal:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "journal.jsonl"

    @classmethod
    def for_host(cls, fs: HostFS) -> "Journal":
        return cls(Path(os.environ.get(STATE_ENV) or fs.path("run/kvmrt")))

    @contextmanager
    def locked(self, *, dry_run: bool = False) -> Iterator["Journal"]:
        """One kvmrt command that changes the host at a time; a dry run
        only reads, so it takes no lock and creates nothing."""
        if dry_run:
            yield self
            return
        self.ensure_dir()
        try:
            lock = open(self.dir / "lock", "a")
        except OSError as exc:
            raise JournalError(self.dir / "lock", exc.strerror or str(exc)) from exc
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield self

    def load(self) -> JournalState:
        state = JournalState()
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return state
        except OSError as exc:
            raise JournalError(self.path, exc.strerror or str(exc)) from exc
        for number, line in enumerate(lines, 1):
            if line.strip():
                _fold(state, _decode_line(line, self.path, number))
        return state

    def record_vm(self, vm: TunedVm) -> None:
        self._append([{"op": "vm", "vm": vm.as_json()}])

    def forget_vm(self, uuid: str) -> None:
        self._append([{"op": "vm-gone", "uuid": uuid}])

    def record_old(self, actions: list[Action], known: dict[str, Any]) -> None:
        """Durably record the old value of every action's key not yet known."""
        lines = [{"op": "old", "key": a.key, "label": a.label, "value": _encode(a.old)}
                 for a in actions if a.key not in known]
        self._append(lines)

    def settle(self, keys: list[str]) -> None:
        self._append([{"op": "settled", "key": k} for k in keys])

    def refused(self, key: str, reason: str) -> None:
        self._append([{"op": "refused", "key": key, "reason": reason}])

    def compact(self) -> None:
        """Remove the file once nothing is tuned and everything is settled."""
        if self.load().empty:
            self.path.unlink(missing_ok=True)

    def _append(self, records: list[dict]) -> None:
        if not records:
            return
        self.ensure_dir()
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode()
        try:
            # Readable by all (kvmrt-stat as an ordinary user); nothing secret.
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(self.path, exc.strerror or str(exc)) from exc

    def ensure_dir(self) -> None:
        try:
            self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalError(self.path, exc.strerror or str(exc)) from exc


def _fold(state: JournalState, r: dict) -> None:
    op = r.get("op")
    if op == "vm":
        vm = TunedVm.from_json(r["vm"])
        state.vms[vm.uuid] = vm
    elif op == "vm-gone":
        state.vms.pop(r["uuid"], None)
    elif op == "old" and r["key"] not in state.baseline:
        state.baseline[r["key"]] = _decode(r["value"])
        state.labels[r["key"]] = r.get("label", r["key"])
    elif op == "settled":
        state.baseline.pop(r["key"], None)
        state.refused.pop(r["key"], None)
    elif op == "refused":
        state.refused[r["key"]] = r.get("reason", "")


def _encode(value: Any) -> Any:
    if isinstance(value, frozenset):
        return {"cpus": sorted(value)}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "cpus" in value:
        return frozenset(value["cpus"])
    return value


def _decode_line(line: str, path: Path, number: int) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        # A torn last line (killed mid-write before fsync) is harmless: the
        # change it announced was never made.
        return {}
    if not isinstance(record, dict):
        raise JournalError(path, f"line {number} is not a journal record")
    return record
