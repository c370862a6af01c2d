"""The File menu (new, open, clone, close a configuration) and Edit ▸ Lock
configuration.

New and clone write a complete file before it gets its name and never
replace an existing one (:func:`kvmrt.api.create_empty`,
:func:`kvmrt.api.clone_config`); open switches the dashboard to another
file; close leaves the dashboard without a configuration, on a
Welcome-like screen that offers New and Open.
"""

from __future__ import annotations

import grp
import os
import pwd
from typing import Callable

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from kvmrt import api
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.errors import KvmrtError

_DIALOG_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 90; height: auto; border: thick $primary; background: $surface;
                     padding: 1; }}
{name} Label {{ width: 1fr; }}
{name} .error {{ color: $error; }}
"""


class PathDialog(ModalScreen[str | None]):
    """Ask for a path, do ``act(path)`` in a worker; stay open with the
    error line when it fails, dismiss with the path when it succeeds."""

    CSS = _DIALOG_CSS.format(name="PathDialog")
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str, verb: str, initial: str,
                 act: Callable[[str], None]) -> None:
        super().__init__()
        self.heading, self.verb, self.initial, self.act = title, verb, initial, act

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.heading)
            yield Input(self.initial, id="path")
            yield Label("", id="path-error", classes="error")
            with Horizontal():
                yield Button(self.verb, id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    def on_input_submitted(self) -> None:
        self.start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.start()
        else:
            self.dismiss(None)

    def start(self) -> None:
        path = self.query_one("#path", Input).value.strip()
        if not path:
            self.say("error: type a path")
            return
        self.query_one("#ok", Button).disabled = True
        self.run_act(os.path.abspath(path))

    @work(thread=True, exclusive=True, group="path-dialog")
    def run_act(self, path: str) -> None:
        try:
            self.act(path)
        except Exception as exc:
            deliver(self.failed, error_line(exc))
            return
        deliver(self.dismiss, path)

    def failed(self, line: str) -> None:
        self.query_one("#ok", Button).disabled = False
        self.say(line)

    def say(self, line: str) -> None:
        self.query_one("#path-error", Label).update(line)


def NewDialog(folder: str) -> PathDialog:
    return PathDialog("New configuration: create an empty file (never over an existing "
                      "one) and switch to it", "Create", os.path.join(folder, "new.cfg"),
                      api.create_empty)


def OpenDialog(current: str) -> PathDialog:
    return PathDialog("Open configuration: switch the dashboard to this file", "Open",
                      current, _must_load)


def CloneDialog(current: str) -> PathDialog:
    return PathDialog(f"Clone configuration: copy {current} to a new file (never over "
                      "an existing one)", "Clone", current + ".copy",
                      lambda target: api.clone_config(current, target))


def _must_load(path: str) -> None:
    """Open only a file the tools can read (a missing one: New creates it)."""
    if not os.path.lexists(path):
        raise KvmrtError(f"{path}: does not exist; File ▸ New creates it")
    api.Session(path=path).load()


class NoConfig(ModalScreen[str | None]):
    """After File ▸ Close: no configuration open; New, Open or Quit."""

    CSS = _DIALOG_CSS.format(name="NoConfig")
    BINDINGS = [("escape", "dismiss(None)", "Back to the empty dashboard")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("No configuration is open. Create a new one, or open a file.")
            with Horizontal():
                yield Button("New…", id="file_new", variant="primary")
                yield Button("Open…", id="file_open")
                yield Button("Quit", id="quit")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)


def owner_text(mode: int, uid: int, gid: int) -> str:
    """``mode 0644, owner root:root`` (numbers where no name is known)."""
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"mode {mode:04o}, owner {user}:{group}"


def lock_result(report: api.LockReport) -> str:
    """What Edit ▸ Lock configuration changed, old and new."""
    if not report.changed:
        return (f"{report.path}: already locked ({owner_text(*report.after)}); "
                "nothing changed")
    return (f"{report.path}: {owner_text(*report.before)} → {owner_text(*report.after)}; "
            "only root may read or write it now")


class LockDialog(ModalScreen):
    """Edit ▸ Lock configuration: say what will change, do it, say what did."""

    CSS = _DIALOG_CSS.format(name="LockDialog")
    BINDINGS = [("escape", "dismiss", "Close")]

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.outcome = ""

    def compose(self) -> ComposeResult:
        try:
            now = "now " + owner_text(*api.mode_owner(os.path.realpath(self.path)))
        except OSError as exc:
            now = error_line(exc)
        with Vertical():
            yield Label(f"Lock {self.path}: only root may read or write it afterwards "
                        f"({owner_text(*api.LOCKED)}); {now}.", id="lock-plan")
            yield Label("", id="lock-result")
            with Horizontal():
                yield Button("Lock", id="lock", variant="warning")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "lock":
            event.button.disabled = True
            self.lock_config()
        else:
            self.dismiss()

    @work(thread=True, exclusive=True, group="lock")
    def lock_config(self) -> None:
        try:
            line = lock_result(api.lock_config(self.path))
        except Exception as exc:
            line = error_line(exc)
        deliver(self.done, line)

    def done(self, line: str) -> None:
        self.outcome = line
        self.query_one("#lock-result", Label).update(line)
        self.query_one("#cancel", Button).label = "Close"
