"""Load and save the whole config file.

Loading is strict and collects every problem (syntax, duplicates, bad
UUIDs, unknown attributes, malformed values, missing or duplicated names)
as diagnostics with line numbers. Saving writes atomically under the
config's lock.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from kvmrt import diagnostics as diag
from kvmrt.config import inifile
from kvmrt.config.model import VmConfig, vm_from_section, vm_to_entries
from kvmrt.errors import KvmrtError

DEFAULT_PATH = "/etc/kvmrt.cfg"


class UnknownVm(KvmrtError, LookupError):
    def __init__(self, name: str, path: str | None) -> None:
        self.name = name
        super().__init__(f"{path or 'config'}: no VM named {name!r} (by name or UUID)")


@dataclass
class Config:
    path: str | None
    vms: list[VmConfig] = field(default_factory=list)
    problems: list[diag.Diagnostic] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(p.is_error for p in self.problems)

    def active(self, *, include_disabled: bool = False) -> list[VmConfig]:
        """The VMs tools look at: disabled ones only with ``--all``."""
        return [vm for vm in self.vms if include_disabled or not vm.disabled]

    def select(self, names: tuple[str, ...] | list[str], *,
               include_disabled: bool = False) -> list[VmConfig]:
        """The named VMs (names or UUIDs) in config order, else the active ones.

        A VM named explicitly is selected even when it is disabled.
        """
        if not names:
            return self.active(include_disabled=include_disabled)
        chosen: list[VmConfig] = []
        for name in names:
            vm = self.find(name)
            if vm is None:
                raise UnknownVm(name, self.path)
            if vm not in chosen:
                chosen.append(vm)
        return [vm for vm in self.vms if vm in chosen]

    def find(self, name: str) -> VmConfig | None:
        for vm in self.vms:
            if vm.name == name or vm.uuid.lower() == name.lower():
                return vm
        return None


def parse_config(text: str, path: str | None = None) -> Config:
    sections, problems = inifile.parse(text)
    config = Config(path=path)
    config.problems = [
        diag.error("syntax", p.message, line=p.line, file=path) for p in problems
    ]
    for section in sections:
        vm, vm_problems = vm_from_section(section, path)
        config.vms.append(vm)
        config.problems.extend(vm_problems)
    config.problems.extend(_duplicate_names(config.vms, path))
    config.problems.sort(key=diag.sort_key)
    return config


def load_config(path: str = DEFAULT_PATH) -> Config:
    """Read and parse ``path``; raises ConfigFileError when it cannot be read."""
    return parse_config(inifile.read_config(path), path)


def format_config(vms: list[VmConfig]) -> str:
    return inifile.format((vm.uuid, vm_to_entries(vm)) for vm in vms)


def save_config(config: Config, path: str | None = None) -> None:
    """Write the config atomically, under the config's exclusive lock.

    For read-modify-write use :func:`editing` instead, so that nobody can
    change the file between the read and the write.
    """
    target = path or config.path or DEFAULT_PATH
    with inifile.locked(target):
        inifile.write_atomic(target, format_config(config.vms))


@contextmanager
def editing(path: str, *, create: bool = False) -> Iterator[Config]:
    """Lock the config, load it (an empty one if missing and ``create``),
    and yield it; call :func:`write_config` inside to save changes."""
    with inifile.locked(path):
        if create and not os.path.lexists(path):
            yield Config(path=path)
        else:
            yield load_config(path)


def write_config(config: Config) -> None:
    """Write atomically; the caller holds the lock (see :func:`editing`)."""
    inifile.write_atomic(config.path or DEFAULT_PATH, format_config(config.vms))


def _duplicate_names(vms: list[VmConfig], path: str | None) -> list[diag.Diagnostic]:
    first: dict[str, VmConfig] = {}
    out = []
    for vm in vms:
        name = vm.values.get("name")
        if not name:
            continue
        if name in first:
            out.append(diag.error(
                "duplicate-name",
                f"name {name!r} is already used by [{first[name].uuid}] "
                f"(line {first[name].line_of('name')})",
                vms=(name,), attribute="name", line=vm.line_of("name"), file=path))
        else:
            first[name] = vm
    return out
