"""What kvmrt-boot and kvmrt-shutdown tell about their work, and to whom.

Progress lines as each step begins (stdout; stderr with ``--json``, whose
stdout is one JSON document), one result per VM, the engine runs of the
whole batch (recovery, restoring), and the same facts as one line each in
the system log (:mod:`kvmrt.hostlog`) for every change made to the host.

The JSON document (``--json``)::

    {"vms": [{"name": "RedHawk", "status": "started", "error": null,
              "notes": ["..."], "host_changes": 184}, ...],
     "host": [{"what": "restored", "host_changes": 190,
               "notes": ["..."], "failed": []}, ...]}
"""

from __future__ import annotations

from typing import Any, Callable

import click

from kvmrt.commands import common
from kvmrt.hostlog import HostLog
from kvmrt.lifecycle import VmResult, exit_status
from kvmrt.tuning import engine


def vm_json(r: VmResult) -> dict[str, Any]:
    return {"name": r.name, "status": r.status, "error": r.error, "notes": list(r.notes),
            "host_changes": len(r.actions)}


def batch_json(what: str, result: engine.Result) -> dict[str, Any]:
    return {"what": what, "host_changes": len(result.actions),
            "notes": result.notes + result.refused, "failed": list(result.failed)}


class Outcome:
    """Collects and shows what a boot or a shutdown did. ``log``: the
    system log, None for a dry run (which changes nothing)."""

    def __init__(self, *, as_json: bool, log: HostLog | None) -> None:
        self.as_json = as_json
        self.log = log
        self.vms: list[VmResult] = []
        self.host: list[dict[str, Any]] = []

    def progress(self, line: str) -> None:
        click.echo(line, err=self.as_json)

    def batch(self, what: str, result: engine.Result, show: Callable[[], None]) -> None:
        """An engine run over the whole batch: ``show`` prints it for people."""
        if self.log:
            self.log.batch(what, result)
        if not (result.actions or result.notes or result.refused or result.failed):
            return
        if self.as_json:
            self.host.append(batch_json(what, result))
        else:
            show()

    def record(self, r: VmResult) -> VmResult:
        """One VM's result, told to the system log at once."""
        self.vms.append(r)
        if self.log:
            self.log.vm(r)
        return r

    def finish(self, show: Callable[[list[VmResult]], None]) -> None:
        """The JSON document, or ``show(results)`` for people."""
        if self.as_json:
            common.print_json({"vms": [vm_json(r) for r in self.vms], "host": self.host})
        else:
            show(self.vms)

    @property
    def exit_code(self) -> int:
        return exit_status(self.vms)
