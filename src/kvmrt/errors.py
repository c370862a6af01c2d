"""The one error hierarchy of kvmrt.

Library code raises these with structured fields; only the command layer
turns them into text and exit codes.
"""

from __future__ import annotations


class KvmrtError(Exception):
    """Base of every error kvmrt raises on purpose."""


class SetSyntaxError(KvmrtError, ValueError):
    """A CPUSET, ID-set or PCISET value that does not parse.

    ``element`` is the offending element exactly as written, so that the
    message can point at it.
    """

    def __init__(self, element: str, reason: str) -> None:
        self.element = element
        self.reason = reason
        super().__init__(f"{element!r}: {reason}" if element else reason)


class UnknownHostObject(KvmrtError, LookupError):
    """A CPUSET element names a CPU, core, die, node or package the host lacks."""

    def __init__(self, kind: str, ident: int, available: str) -> None:
        self.kind = kind
        self.ident = ident
        self.available = available
        super().__init__(
            f"{kind} {ident} does not exist (host has {kind}s {available or 'none'})"
        )


class ConfigFileError(KvmrtError):
    """The config file cannot be read or written at all (missing, a directory,
    unreadable, not text). ``path`` names it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class HostReadError(KvmrtError):
    """The host root cannot be read (for example no sysfs below it)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class IniFormatError(KvmrtError, ValueError):
    """A section name, key or value that cannot be written to the config
    file so that it reads back unchanged (a line break in a key, leading
    whitespace, a duplicate key...). ``kind`` says which, ``text`` is the
    offending text exactly as given."""

    def __init__(self, kind: str, text: str, reason: str) -> None:
        self.kind = kind
        self.text = text
        self.reason = reason
        super().__init__(f"cannot write {kind} {text!r}: {reason}")


class DomainXmlError(KvmrtError, ValueError):
    """A libvirt domain XML that kvmrt cannot work on: not well-formed, not a
    ``<domain>``, or an element kvmrt reads holds a value it cannot parse.
    ``reason`` says what is wrong; ``line`` is the line of the XML text where
    it is, when known."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        self.reason = reason
        self.line = line
        where = f"domain XML, line {line}" if line else "domain XML"
        super().__init__(f"{where}: {reason}")


class HostWriteError(KvmrtError):
    """A host file (or a thread's affinity) could not be changed for a reason
    kvmrt did not expect, or the kernel kept another value than the one
    written. ``path`` names the file, ``reason`` says what happened."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class TaskVanished(KvmrtError):
    """Thread ``tid`` exited (or its id now belongs to another thread) before
    kvmrt could change it: an expected outcome on a live host."""

    def __init__(self, tid: int) -> None:
        self.tid = tid
        super().__init__(f"thread {tid} has exited")


class NotMovable(KvmrtError):
    """The kernel binds thread ``tid`` to its CPU (PF_NO_SETAFFINITY:
    migration/N, ksoftirqd/N, kworker/N:M...); it cannot be moved."""

    def __init__(self, tid: int, comm: str) -> None:
        self.tid = tid
        self.comm = comm
        super().__init__(f"thread {tid} ({comm}) is bound to its CPU by the kernel")


class IrqRefused(KvmrtError):
    """The kernel refused to change the affinity of IRQ ``irq`` (a managed
    interrupt, or IRQ 0/2); ``reason`` is the kernel's answer."""

    def __init__(self, irq: int, reason: str) -> None:
        self.irq = irq
        self.reason = reason
        super().__init__(f"IRQ {irq}: the kernel refuses a new affinity ({reason})")


class OfflineRefused(KvmrtError):
    """The kernel cannot or will not take ``cpu`` offline (or bring it back
    online); ``reason`` says why."""

    def __init__(self, cpu: int, reason: str) -> None:
        self.cpu = cpu
        self.reason = reason
        super().__init__(f"CPU {cpu}: {reason}")
