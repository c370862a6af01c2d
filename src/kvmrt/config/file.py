"""Load and save the whole config file.

Loading is strict and collects every problem (syntax, duplicates, bad
UUIDs, unknown attributes, malformed values, missing or duplicated names)
as diagnostics with line numbers. Saving writes atomically under the
config's lock.

A config read from text keeps that text (``Config.source``): saving it
changes only the lines of the entries whose values changed and appends new
VMs at the end (:mod:`kvmrt.config.iniedit`); comments, blank lines, order
and spelling elsewhere stay byte for byte. Entries the model does not use
(unknown attributes, malformed values) are kept as written. A config that
did not come from text gets the canonical form.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

from kvmrt import diagnostics as diag
from kvmrt.config import DEFAULT_PATH, iniedit, inifile
from kvmrt.config.model import ATTRIBUTES, VmConfig, vm_from_section, vm_to_entries
from kvmrt.errors import KvmrtError


class UnknownVm(KvmrtError, LookupError):
    def __init__(self, name: str, path: str | None) -> None:
        self.name = name
        super().__init__(f"{path or 'config'}: no VM named {name!r} (by name or UUID)")


@dataclass
class Config:
    path: str | None
    vms: list[VmConfig] = field(default_factory=list)
    problems: list[diag.Diagnostic] = field(default_factory=list)
    source: str | None = None  # the text it was read from, kept for saving

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
    config = Config(path=path, source=text)
    config.problems = [
        diag.error("syntax", p.message, line=p.line, file=path) for p in problems
    ]
    meanings: dict = {}
    for section in sections:
        vm, vm_problems = vm_from_section(section, path, meanings)
        config.vms.append(vm)
        config.problems.extend(vm_problems)
    config.problems.extend(_duplicate_names(config.vms, path))
    config.problems.sort(key=diag.sort_key)
    return config


def load_config(path: str = DEFAULT_PATH) -> Config:
    """Read and parse ``path``; raises ConfigFileError when it cannot be read."""
    return parse_config(inifile.read_config(path), path)


def format_config(vms: list[VmConfig]) -> str:
    """The VMs in canonical form (as a new file would get them)."""
    return inifile.format((vm.uuid, vm_to_entries(vm)) for vm in vms)


def config_text(config: Config) -> str:
    """The text :func:`write_config` writes: the text the config was read
    from with only the changed entries edited, or the canonical form."""
    if config.source is None:
        return format_config(config.vms)
    read = {s.name: s for s in inifile.parse(config.source)[0]}
    return iniedit.rewrite(config.source, (
        (vm.uuid, vm_to_entries(vm) + _unused_entries(vm, read.get(vm.uuid)))
        for vm in config.vms))


def _unused_entries(vm: VmConfig, section: inifile.Section | None) -> list[tuple[str, str]]:
    """Entries of the VM's section the model did not take (unknown keys,
    malformed values): they stay in the file as written."""
    if section is None:
        return []
    return [(e.key, e.value) for e in section.entries
            if e.key not in vm.values and (e.key not in ATTRIBUTES or e.key in vm.invalid)]


def save_config(config: Config, path: str | None = None) -> None:
    """Write the config atomically, under the config's exclusive lock.

    For read-modify-write use :func:`editing` instead, so that nobody can
    change the file between the read and the write.
    """
    target = path or config.path or DEFAULT_PATH
    with inifile.locked(target):
        _write(config, target)


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
    """Write :func:`config_text` atomically; the caller holds the lock (see
    :func:`editing`)."""
    _write(config, config.path or DEFAULT_PATH)


def _write(config: Config, target: str) -> None:
    text = config_text(config)
    inifile.write_atomic(target, text)
    config.source = text


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
