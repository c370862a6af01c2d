"""What kvmrt-boot and kvmrt-shutdown tell about their work.

Progress lines as each step begins (stdout; stderr with ``--json``, whose
stdout is one JSON document), warnings on stderr, one result per VM, the
engine runs of the whole batch (recovery, restoring). The work itself,
and the system log, are :func:`kvmrt.lifecycle.boot` and
:func:`kvmrt.lifecycle.shutdown`; this is their listener for a terminal.

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
from kvmrt.lifecycle import Listener, VmResult, exit_status
from kvmrt.tuning import engine


def vm_json(r: VmResult) -> dict[str, Any]:
    return {"name": r.name, "status": r.status, "error": r.error, "notes": list(r.notes),
            "host_changes": len(r.actions)}


def batch_json(what: str, result: engine.Result) -> dict[str, Any]:
    return {"what": what, "host_changes": len(result.actions),
            "notes": result.notes + result.refused, "failed": list(result.failed)}


class Outcome(Listener):
    """Shows a boot or a shutdown as it goes; ``verbose``: every host
    change a batch restored, not their count."""

    def __init__(self, *, as_json: bool, verbose: bool = False) -> None:
        self.as_json = as_json
        self.vms: list[VmResult] = []
        self.host: list[dict[str, Any]] = []
        self.verbose = verbose

    def step(self, line: str) -> None:
        click.echo(line, err=self.as_json)

    def warning(self, line: str) -> None:
        click.echo(f"warning: {line}", err=True)

    def vm(self, result: VmResult) -> None:
        self.vms.append(result)

    def batch(self, what: str, result: engine.Result) -> None:
        if not (result.actions or result.notes or result.refused or result.failed):
            return
        if self.as_json:
            self.host.append(batch_json(what, result))
        else:
            common.print_batch(what, result, verbose=self.verbose)

    def finish(self, show: Callable[[list[VmResult]], None]) -> None:
        """The JSON document, or ``show(results)`` for people."""
        if self.as_json:
            common.print_json({"vms": [vm_json(r) for r in self.vms], "host": self.host})
        else:
            show(self.vms)

    @property
    def exit_code(self) -> int:
        return exit_status(self.vms)
