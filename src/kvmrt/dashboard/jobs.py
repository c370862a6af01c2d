"""Boot, shutdown and retune from the dashboard, in a worker thread.

A :class:`Job` says what to do through :mod:`kvmrt.api` and reports lines
as kvmrt-boot and kvmrt-shutdown print them; :class:`JobScreen` runs it
and shows those lines as they come (per-VM progress), and errors with the
CLI's text, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label, Log, RadioButton, RadioSet

from kvmrt import api, lifecycle
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.errors import KvmrtError

Say = Callable[[str], None]


@dataclass
class Job:
    """Boot or shut down VMs (names: the selected ones; none: the config's)."""

    what: str                           # boot, retune, shutdown, sync (libvirt)
    names: list[str] = field(default_factory=list)
    every: bool = False                 # boot: every enabled VM, not only autostart
    clean: bool = False
    force: bool = False
    dry_run: bool = False

    @property
    def title(self) -> str:
        who = ", ".join(self.names) or ("every enabled VM" if self.every or
                                        self.what in ("shutdown", "sync")
                                        else "the autostart VMs")
        flags = [w for w, on in (("clean", self.clean), ("force", self.force)) if on]
        plan = "plan: " if self.dry_run else ""
        return f"{plan}{self.what} {who}" + (f" ({', '.join(flags)})" if flags else "")

    def run(self, session: api.Session, say: Say) -> bool:
        """Do it; True when every VM succeeded."""
        config = session.load()
        if self.what == "sync":
            return self._sync(session, config, say)
        if self.what in ("boot", "retune"):
            return self._boot(session, config, say)
        return self._shutdown(session, config, say)

    def _boot(self, session: api.Session, config, say: Say) -> bool:
        report = api.boot(session, config, self.names, include_disabled=self.every,
                          clean=self.clean, dry_run=self.dry_run,
                          progress=lambda r: [say(line) for line in
                                              api.result_lines(r, verbose=self.dry_run)])
        lines = _batch(lifecycle.RECOVERED, report.recovered)
        lines += [f"warning: {w}" for w in report.warnings]
        lines += _batch(lifecycle.SHIELDED, report.shielded)
        if not report.selected:
            lines.append("no VM to boot (none has autostart = true; name VMs or use "
                         "'every enabled VM')")
        for line in lines:
            say(line)
        return not report.failed

    def _sync(self, session: api.Session, config, say: Say) -> bool:
        outcomes = api.sync_libvirt(session, config, query=self.dry_run)
        for outcome in outcomes:
            for line in api.outcome_lines(outcome):
                say(line)
        return not any(o.status is api.SyncStatus.FAILED for o in outcomes)

    def _shutdown(self, session: api.Session, config, say: Say) -> bool:
        report = api.shutdown(session, config, self.names, force=self.force,
                              dry_run=self.dry_run, sequential=bool(self.names), say=say)
        if self.dry_run:
            say("would shut down: " + (", ".join(report.would_stop) or "nothing"))
            for line in api.action_lines(report.planned, verbose=True):
                say(line)
            return True
        for r in report.results:
            if r.error:
                say(f"{r.name}: failed: {r.error}")
        for line in (_batch(lifecycle.RESTORED, report.restored)
                     + _batch(lifecycle.RECOVERED, report.recovered)):
            say(line)
        if not report.results:
            say("no VM of the config is running" if not self.names
                else f"{', '.join(self.names)}: not running")
        return not report.failed


def _batch(what: str, result) -> list[str]:
    """An engine run's lines as the tools print them, warnings marked."""
    lines, warnings = api.batch_lines(what, result)
    return lines + [f"warning: {w}" for w in warnings]


def VmJob(what: str, names: list[str]) -> Job:
    """A job on the selected VM: boot, retune, shutdown, shutdown --force."""
    verb, _, flag = what.partition(" ")
    return Job(verb, names, force=flag == "--force")


class JobScreen(ModalScreen):
    """Runs a job and shows its lines; Close when it is done."""

    CSS = """
    JobScreen { align: center middle; }
    #job { width: 90%; height: 80%; border: thick $primary; background: $surface; }
    #job Log { height: 1fr; }
    #job-status { padding: 0 1; }
    """
    BINDINGS = [("escape", "close", "Close")]

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job
        self.done = False
        self.ok: bool | None = None
        self.lines: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="job"):
            yield Label(self.job.title, id="job-title")
            yield Log(id="job-log")
            yield Label("working…", id="job-status")
            yield Button("Close", id="close", disabled=True)

    def on_mount(self) -> None:
        self.run_job()

    @work(thread=True, exclusive=True, group="job")
    def run_job(self) -> None:
        say = lambda line: deliver(self._say, line)  # noqa: E731
        try:
            ok = self.job.run(self.app.session, say)
        except KvmrtError as exc:   # a refused config or VM: the validator's lines first
            for d in getattr(exc, "diagnostics", []):
                say(d.format())
            say(f"error: {exc}")
            ok = False
        except Exception as exc:      # the tools' text; never a traceback
            say(error_line(exc))
            ok = False
        deliver(self._finish, ok)

    def _say(self, line: str) -> None:
        self.lines.append(line)
        self.query_one(Log).write_line(line)

    def _finish(self, ok: bool) -> None:
        self.done, self.ok = True, ok
        self.query_one("#job-status", Label).update("done" if ok else "failed (see above)")
        button = self.query_one("#close", Button)
        button.disabled = False
        button.focus()
        self.app.refresh_vms()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "close":
            self.dismiss(self.ok)

    def action_close(self) -> None:
        if self.done:
            self.dismiss(self.ok)


class _AllDialog(ModalScreen):
    """Options, then Show plan (a dry run), go, or Cancel."""

    CSS = """
    _AllDialog { align: center middle; }
    _AllDialog > Vertical { width: 70; height: auto; border: thick $primary;
                            background: $surface; padding: 1; }
    ShutdownAllDialog > Vertical { border: thick $error; }
    """
    BINDINGS = [("escape", "dismiss", "Cancel")]
    GO = ("Go", "primary")                  # the go button: label, variant

    def compose(self) -> ComposeResult:
        with Vertical():
            yield from self.options()
            with Horizontal():
                yield Button("Show plan", id="plan")
                yield Button(self.GO[0], id="go", variant=self.GO[1])
                yield Button("Cancel", id="cancel")

    def options(self) -> ComposeResult:
        raise NotImplementedError

    def job(self, *, dry_run: bool) -> Job:
        raise NotImplementedError

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "plan":
            self.app.push_screen(JobScreen(self.job(dry_run=True)))
        elif event.button.id == "go":
            self.dismiss()
            self.app.push_screen(JobScreen(self.job(dry_run=False)))
        else:
            self.dismiss()


class BootAllDialog(_AllDialog):
    """Boot all: every enabled VM or only the autostart ones; clean or not."""

    GO = ("Boot", "primary")

    def options(self) -> ComposeResult:
        yield Label("Boot all")
        with RadioSet(id="which"):
            yield RadioButton("only the autostart VMs", value=True, id="autostart")
            yield RadioButton("every enabled VM", id="every")
        yield Checkbox("clean: start nothing if a VM of the config runs", id="clean")

    def job(self, *, dry_run: bool) -> Job:
        every = self.query_one("#every", RadioButton).value
        return Job("boot", every=every, clean=self.query_one("#clean", Checkbox).value,
                   dry_run=dry_run)


class ShutdownAllDialog(_AllDialog):
    """Shutdown all: confirm, with the force option."""

    GO = ("Shut down", "error")

    def options(self) -> ComposeResult:
        yield Label("Shut down every running VM of the config and restore the host?")
        yield Checkbox("force: power off a VM that does not stop within 120 s", id="force")

    def job(self, *, dry_run: bool) -> Job:
        return Job("shutdown", force=self.query_one("#force", Checkbox).value,
                   dry_run=dry_run)
