"""What a host check finds, and the report that collects the findings.

A check returns :class:`Finding` values (status, message, remedy); the
runner names each with its check id as a :class:`Result`. The
:class:`Report` decides the exit status and gathers the kernel parameters
that the remedies ask for into one command line to paste.

SKIP is a check that was not performed (it needs root, a file the root
lacks, libvirt...): it never passes for one, and its message says why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


# Verdicts that ask for a change: the remedy is printed, the kernel
# parameters gathered.
ACTIONABLE = frozenset({Status.WARN, Status.FAIL})


@dataclass(frozen=True)
class Finding:
    """One verdict. ``remedy`` says what to change (WARN and FAIL), or how
    to have a skipped check performed (SKIP); ``kernel_params`` are the
    kernel command-line parameters it asks for, exactly as they should be
    written (``nohz_full=8-23``)."""

    status: Status
    message: str
    remedy: str | None = None
    kernel_params: tuple[str, ...] = ()


def ok(message: str) -> Finding:
    return Finding(Status.PASS, message)


def warn(message: str, remedy: str, *, params: tuple[str, ...] = ()) -> Finding:
    return Finding(Status.WARN, message, remedy, params)


def fail(message: str, remedy: str, *, params: tuple[str, ...] = ()) -> Finding:
    return Finding(Status.FAIL, message, remedy, params)


def skipped(reason: str, remedy: str | None = None) -> Finding:
    """A check that was not performed: ``reason`` says why, ``remedy`` how
    to have it performed (None when another check reports the cause)."""
    return Finding(Status.SKIP, f"not checked: {reason}", remedy)


@dataclass(frozen=True)
class Result:
    id: str
    finding: Finding

    @property
    def status(self) -> Status:
        return self.finding.status

    def as_json(self) -> dict[str, Any]:
        f = self.finding
        return {"id": self.id, "status": f.status.value, "message": f.message,
                "remedy": f.remedy}


@dataclass(frozen=True)
class Report:
    results: tuple[Result, ...] = field(default_factory=tuple)

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.results)

    @property
    def fails(self) -> int:
        return self.count(Status.FAIL)

    @property
    def warnings(self) -> int:
        return self.count(Status.WARN)

    @property
    def passes(self) -> int:
        return self.count(Status.PASS)

    @property
    def skips(self) -> int:
        return self.count(Status.SKIP)

    @property
    def exit_code(self) -> int:
        return 1 if self.fails else 0

    @property
    def kernel_params(self) -> tuple[str, ...]:
        """Kernel parameters asked for by WARN and FAIL remedies, in check order."""
        params = (p for r in self.results if r.status in ACTIONABLE
                  for p in r.finding.kernel_params)
        return tuple(dict.fromkeys(params))

    def as_json(self) -> dict[str, Any]:
        params = self.kernel_params
        return {"checks": [r.as_json() for r in self.results], "fails": self.fails,
                "warnings": self.warnings, "skips": self.skips, "passes": self.passes,
                "kernel_cmdline": " ".join(params) if params else None}
