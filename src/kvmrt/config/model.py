"""The VM model of the config file (SPEC 1.2): attributes, defaults, types.

:func:`vm_from_section` turns one INI section into a :class:`VmConfig` and
reports every problem with its line; :func:`vm_to_entries` goes back. The
``auto`` values stay ``AUTO`` here: they are resolved against a host by
:mod:`kvmrt.placement`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from kvmrt import diagnostics as diag
from kvmrt.config.inifile import Section, shorten
from kvmrt.sets import CpuSpec, IdSet, PciSet, parse_decimal
from kvmrt.errors import SetSyntaxError


class _Auto:
    """The value ``auto``: resolved against the host at placement time."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AUTO"

    def __str__(self) -> str:
        return "auto"


AUTO = _Auto()

_TRUE = {"true", "on", "yes", "1"}
_FALSE = {"false", "off", "no", "0"}


def parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SetSyntaxError(text, "not a boolean (true false on off yes no 1 0)")


def _or_auto(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_auto(text: str) -> Any:
        return AUTO if text.strip().lower() == "auto" else parse(text)

    return parse_or_auto


# QEMU's largest max_cpus of any machine type (x86 q35 since QEMU 9.0;
# i440fx stops at 255, older q35 at 288/1024); libvirt passes <vcpu> on.
MAX_VCPUS = 4096

# Characters XML 1.0 cannot hold (libvirt's XML, lxml): C0 controls except
# TAB, LF and CR; surrogates; U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def parse_text(text: str) -> str:
    """Text that goes into libvirt's XML (a description): XML 1.0 characters."""
    bad = _NOT_XML.search(text)
    if bad:
        raise SetSyntaxError(text, f"character U+{ord(bad[0]):04X} at position "
                             f"{bad.start() + 1} cannot be stored in libvirt's XML")
    return text


def parse_line(text: str) -> str:
    """A one-line text (libvirt names and titles cannot hold line breaks)."""
    if "\n" in text or "\r" in text:
        raise SetSyntaxError(text, "must be on one line (an indented line after it "
                             "continues the value)")
    return parse_text(text)


def parse_name(text: str) -> str:
    """A libvirt domain name: libvirt refuses '/' and line breaks; kvmrt
    also refuses names that are path components ('.', '..') or have
    surrounding whitespace, which no domain can be found by reliably."""
    name = parse_line(text)
    if "/" in name:
        raise SetSyntaxError(text, "a libvirt domain name cannot contain '/'")
    if name in (".", ".."):
        raise SetSyntaxError(text, "a libvirt domain name cannot be '.' or '..'")
    if name != name.strip():
        raise SetSyntaxError(text, "a libvirt domain name cannot start or end with "
                             "whitespace")
    return name


def parse_int(text: str) -> int:
    t = text.strip()
    if not re.fullmatch(r"[+-]?[0-9]+", t):
        raise SetSyntaxError(text, "not an integer")
    sign = -1 if t[0] == "-" else 1
    return sign * parse_decimal(t.lstrip("+-"), text)


def parse_vcpus(text: str) -> int:
    """A vCPU count: at most what QEMU accepts (a count below 1 is the
    validator's ``vcpus-below-one``)."""
    count = parse_int(text)
    if count > MAX_VCPUS:
        raise SetSyntaxError(text, f"{count} vCPUs: QEMU accepts at most {MAX_VCPUS} "
                             "(q35 machines; libvirt refuses more)")
    return count


def parse_topology(text: str) -> tuple[int, int, int]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 3 or not all(re.fullmatch(r"[0-9]+", p) for p in parts):
        raise SetSyntaxError(text, "not S,C,T (sockets,cores,threads) or auto")
    s, c, t = (parse_decimal(p, text) for p in parts)
    if max(s, c, t) > MAX_VCPUS:
        raise SetSyntaxError(text, f"each of sockets, cores and threads is at most "
                             f"{MAX_VCPUS} (QEMU's vCPU limit)")
    return s, c, t


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, tuple) and len(value) == 3 and not isinstance(value, PciSet):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass(frozen=True)
class Attribute:
    name: str
    parse: Callable[[str], Any]
    default: Any


ATTRIBUTES: dict[str, Attribute] = {
    a.name: a
    for a in (
        Attribute("name", parse_name, None),
        Attribute("title", parse_line, ""),
        Attribute("description", parse_text, ""),
        Attribute("nr_vcpus", _or_auto(parse_vcpus), 1),
        Attribute("cpu_topology", _or_auto(parse_topology), AUTO),
        Attribute("cpuset", CpuSpec.parse, CpuSpec()),
        Attribute("rt", parse_bool, False),
        Attribute("rt_memory", _or_auto(parse_bool), AUTO),
        Attribute("numatune", _or_auto(IdSet.parse_nodes), AUTO),
        Attribute("hide_kvm", parse_bool, False),
        Attribute("guest_services", parse_bool, False),  # virtio-serial channel, kvmrt-gs(7)
        Attribute("autostart", parse_bool, False),
        Attribute("disabled", parse_bool, False),
        Attribute("pcidevs", PciSet.parse, PciSet()),
        Attribute("comments", str, ""),
    )
}


@dataclass(eq=False)
class VmConfig:
    """One VM of the config: typed values plus where each came from."""

    uuid: str
    values: dict[str, Any] = field(default_factory=dict)
    line: int | None = None
    lines: dict[str, int] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)
    invalid: set[str] = field(default_factory=set)

    def __getattr__(self, attr: str) -> Any:
        # Attribute access (vm.cpuset) falls back to the default when unset.
        if attr in ATTRIBUTES:
            return self.values.get(attr, ATTRIBUTES[attr].default)
        raise AttributeError(attr)

    @property
    def label(self) -> str:
        """How diagnostics name the VM: its name, else its section header."""
        return self.values.get("name") or f"[{self.uuid}]"

    def line_of(self, attr: str | None) -> int | None:
        return self.lines.get(attr, self.line) if attr else self.line

    def with_values(self, **changes: Any) -> "VmConfig":
        """A copy with some attributes set (they will be written to the file);
        a text attribute set to "" is dropped instead of written empty."""
        values = {**self.values, **changes}
        for key, value in changes.items():
            if value == "" and ATTRIBUTES[key].default == "":
                del values[key]
        return replace(self, values=values)


# What a value text means, by attribute and text. Every parsed value is
# immutable, so VMs may share one: a config of thousands of VMs spells the
# same few values again and again.
Meanings = dict[tuple[str, str], Any]


def vm_from_section(section: Section, file: str | None, meanings: Meanings | None = None
                    ) -> tuple[VmConfig, list[diag.Diagnostic]]:
    """Build a VM from an INI section, collecting every problem.

    ``meanings`` remembers the values parsed so far (pass the same dict
    for every section of a file).
    """
    meanings = {} if meanings is None else meanings
    vm = VmConfig(uuid=section.name, line=section.line)
    problems: list[diag.Diagnostic] = []
    if not _is_uuid(section.name):
        problems.append(diag.error(
            "bad-uuid", f"section header [{section.name}] is not a UUID "
            "(use the VM's libvirt UUID, e.g. from 'virsh domuuid NAME')",
            line=section.line, file=file))
    for entry in section.entries:
        vm.lines[entry.key] = entry.line
        attr = ATTRIBUTES.get(entry.key)
        if attr is None:
            problems.append(diag.error(
                "unknown-attribute", f"unknown attribute {entry.key!r}{_did_you_mean(entry.key)}",
                vms=(vm.label,), attribute=entry.key, line=entry.line, file=file))
            continue
        try:
            vm.values[entry.key] = _meaning(attr, entry.value, meanings)
            vm.raw[entry.key] = entry.value
        except SetSyntaxError as exc:
            vm.invalid.add(entry.key)
            detail = (exc.reason if exc.element.strip() == entry.value.strip()
                      else f"{shorten(exc.element)}: {exc.reason}")
            problems.append(diag.error(
                "bad-value", f"bad value {shorten(entry.value)}: {detail}",
                attribute=entry.key, line=entry.line, file=file, vms=()))
    if not vm.values.get("name") and "name" not in vm.invalid:
        problems.append(diag.error(
            "missing-name", "no 'name' (the libvirt domain name is required)",
            vms=(vm.label,), attribute="name", line=section.line, file=file))
    # The name may only be known after the loop: name every problem's VM.
    problems = [replace(p, vms=p.vms or (vm.label,)) if p.code == "bad-value" else p
                for p in problems]
    return vm, problems


def _meaning(attr: Attribute, text: str, meanings: Meanings) -> Any:
    """``attr.parse(text)``, parsed once per file (errors are not kept)."""
    try:
        return meanings[attr.name, text]
    except KeyError:
        value = meanings[attr.name, text] = attr.parse(text)
        return value


def vm_to_entries(vm: VmConfig) -> list[tuple[str, str]]:
    """The VM's attributes as INI entries: the ones it sets, name first.

    A value that still equals what the file said keeps the file's spelling.
    """
    keys = ["name"] + [k for k in ATTRIBUTES if k != "name"]
    entries = []
    for key in keys:
        if key not in vm.values:
            continue
        value = vm.values[key]
        raw = vm.raw.get(key)
        if raw is not None and _same(key, raw, value):
            entries.append((key, raw))
        else:
            entries.append((key, _fmt(value) if value is not None else ""))
    return entries


def _same(key: str, raw: str, value: Any) -> bool:
    try:
        return ATTRIBUTES[key].parse(raw) == value
    except SetSyntaxError:
        return False


# What str(uuid.UUID(text)) gives back in another letter case.
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                   re.ASCII | re.IGNORECASE)


def _is_uuid(text: str) -> bool:
    return _UUID.fullmatch(text) is not None


def _did_you_mean(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key.lower(), ATTRIBUTES, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
