"""The configuration dialog's working copy: the config's sections as the
user edits them, turned back into a config text at every change.

The draft holds each VM's entries as text (what the file says), so a value
the user is still typing (``cpuset = 8-``) is kept as typed and reported by
the parser and validator like any file. Entries are written in the order
the tools write them; a draft nobody changed gives back the file's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.config import iniedit, inifile
from kvmrt.config.model import ATTRIBUTES, parse_bool

ORDER = ["name"] + [k for k in ATTRIBUTES if k != "name"]


@dataclass
class VmDraft:
    uuid: str
    entries: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str:
        return self.entries.get(key, "")

    def flag(self, key: str) -> bool:
        """A boolean attribute as the tools read it (default when unset or bad)."""
        try:
            return parse_bool(self.entries[key])
        except (KeyError, ValueError):
            return bool(ATTRIBUTES[key].default)

    def set(self, key: str, value: str) -> bool:
        """Set (or, when empty, drop) an entry; True when it changed."""
        value = value.strip()
        if value == self.entries.get(key, "") and (value or key not in self.entries):
            return False
        if value:
            self.entries[key] = value
        else:
            self.entries.pop(key, None)
        return True

    def set_flag(self, key: str, on: bool) -> bool:
        if self.flag(key) == on:
            return False
        self.entries[key] = "true" if on else "false"
        return True

    def ordered(self) -> list[tuple[str, str]]:
        known = [(k, self.entries[k]) for k in ORDER if k in self.entries]
        return known + [(k, v) for k, v in self.entries.items() if k not in ATTRIBUTES]


@dataclass
class Draft:
    original: str
    vms: list[VmDraft] = field(default_factory=list)
    base: dict[str, dict[str, str]] = field(default_factory=dict)

    @classmethod
    def of(cls, text: str) -> "Draft":
        sections, _problems = inifile.parse(text)
        vms = [VmDraft(s.name, {e.key: e.value for e in s.entries}) for s in sections]
        return cls(text, vms, {vm.uuid: dict(vm.entries) for vm in vms})

    def text(self) -> str:
        if not self.changed():
            return self.original
        # Only the lines of what changed: the file's comments, blank lines
        # and spelling stay (kvmrt.config.iniedit).
        return iniedit.rewrite(self.original, [(vm.uuid, vm.ordered()) for vm in self.vms])

    def changed(self) -> bool:
        return [vm.uuid for vm in self.vms] != list(self.base) or any(
            self.vm_changed(vm) for vm in self.vms)

    def vm_changed(self, vm: VmDraft) -> bool:
        return self.base.get(vm.uuid) != vm.entries

    def find(self, uuid: str) -> VmDraft | None:
        return next((vm for vm in self.vms if vm.uuid == uuid), None)

    def remove(self, uuid: str) -> None:
        self.vms = [vm for vm in self.vms if vm.uuid != uuid]

    def move(self, uuid: str, step: int) -> None:
        i = next(i for i, vm in enumerate(self.vms) if vm.uuid == uuid)
        j = min(max(i + step, 0), len(self.vms) - 1)
        self.vms.insert(j, self.vms.pop(i))
