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

With ``--dry-run`` (a plan; nothing changed) each VM and batch also has
``"changes"``, every host change it would make, in the order it would
make them: ``{"setting": "IRQ 25", "key": "irq:25", "from": "0-63",
"to": "0-7", "kernel": false}`` (``kernel``: the kernel makes the change
itself; kvmrt only journals it).
"""

from __future__ import annotations

from typing import Any, Callable

import click

from kvmrt.commands import common
from kvmrt.lifecycle import Listener, VmResult, exit_status
from kvmrt.tuning import engine
from kvmrt.tuning.model import Action


def vm_json(r: VmResult, *, plan: bool = False) -> dict[str, Any]:
    data = {"name": r.name, "status": r.status, "error": r.error, "notes": list(r.notes),
            "host_changes": len(r.actions)}
    return {**data, "changes": changes_json(r.actions)} if plan else data


def batch_json(what: str, result: engine.Result, *, plan: bool = False) -> dict[str, Any]:
    data = {"what": what, "host_changes": len(result.actions),
            "notes": result.notes + result.refused, "failed": list(result.failed)}
    return {**data, "changes": changes_json(result.actions)} if plan else data


def changes_json(actions: list[Action]) -> list[dict[str, Any]]:
    """Each host change of a plan, as ``--dry-run --json`` gives it."""
    return [{"setting": a.label, "key": a.key, "from": a.setting.show(a.old),
             "to": a.setting.show(a.new), "kernel": a.record_only} for a in actions]


class Outcome(Listener):
    """Shows a boot or a shutdown as it goes; ``verbose``: every host
    change a batch restored, not their count."""

    def __init__(self, *, as_json: bool, verbose: bool = False, plan: bool = False) -> None:
        self.as_json = as_json
        self.plan = plan            # --dry-run: the JSON lists every change
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
            self.host.append(batch_json(what, result, plan=self.plan))
        else:
            common.print_batch(what, result, verbose=self.verbose)

    def finish(self, show: Callable[[list[VmResult]], None]) -> None:
        """The JSON document, or ``show(results)`` for people."""
        if self.as_json:
            common.print_json({"vms": [vm_json(r, plan=self.plan) for r in self.vms],
                               "host": self.host})
        else:
            show(self.vms)

    @property
    def exit_code(self) -> int:
        return exit_status(self.vms)
