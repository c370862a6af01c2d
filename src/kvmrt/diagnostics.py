"""Diagnostics: what the loader and the validator say about a config.

A diagnostic remembers where it came from (file, line, VM, attribute), so
that every message can be printed as
``kvmrt.cfg:42: error: RT-VM: cpuset: CPU 64 does not exist (host has CPUs 0-63)``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    vms: tuple[str, ...] = ()
    attribute: str | None = None
    line: int | None = None
    file: str | None = None

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def format(self) -> str:
        """``FILE:LINE: error|warning: VM: attribute: message``."""
        where = self.file or "<config>"
        if self.line is not None:
            where += f":{self.line}"
        parts = [where, self.severity.value]
        if self.vms:
            parts.append(", ".join(self.vms))
        if self.attribute:
            parts.append(self.attribute)
        parts.append(self.message)
        return ": ".join(parts)

    def as_json(self) -> dict:
        return {
            "severity": self.severity.value,
            "code": self.code,
            "vms": list(self.vms),
            "attribute": self.attribute,
            "line": self.line,
            "message": self.message,
        }


def error(code: str, message: str, **where) -> Diagnostic:
    return Diagnostic(Severity.ERROR, code, message, **where)


def warning(code: str, message: str, **where) -> Diagnostic:
    return Diagnostic(Severity.WARNING, code, message, **where)


def sort_key(d: Diagnostic) -> tuple:
    return (d.line is None, d.line or 0, d.severity is not Severity.ERROR, d.code)
