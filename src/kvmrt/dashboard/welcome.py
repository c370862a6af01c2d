"""Welcome: the config file does not exist yet. Create it (at the default
path or one the user types), import VMs from libvirt (a checklist of the
domains not in it), then open the configuration dialog on them."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, SelectionList

from kvmrt import api
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.dashboard.importer import DomainChecklist


class Welcome(ModalScreen):
    creating = False
    CSS = """
    Welcome { align: center middle; }
    #welcome { width: 90; height: auto; max-height: 90%; border: thick $primary;
               background: $surface; padding: 1; }
    #domains { height: auto; max-height: 16; }
    #welcome-error { color: $error; }
    """
    BINDINGS = [("escape", "skip", "Skip")]

    def compose(self) -> ComposeResult:
        session = self.app.session
        with Vertical(id="welcome"):
            yield Label(f"Welcome to kvmrt. The config file {session.path} does not exist.")
            yield Label("Create it here (or type another path):")
            yield Input(session.path, id="path")
            yield Label("", id="welcome-error")
            yield Label("Import these libvirt domains:", id="import-label")
            yield DomainChecklist("", checked=True, id="domains")
            with Horizontal():
                yield Button("Create and import", id="create", variant="primary",
                             disabled=bool(self.app.read_only))
                yield Button("Skip", id="skip")

    def on_mount(self) -> None:
        if self.app.read_only:
            self.say(f"read-only: {self.app.read_only}")

    def on_domain_checklist_listed(self, event: DomainChecklist.Listed) -> None:
        if event.error:
            self.say(event.error)

    def say(self, text: str) -> None:
        self.query_one("#welcome-error", Label).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.busy(True)
            self.create(self.query_one("#path", Input).value.strip(),
                        list(self.query_one("#domains", SelectionList).selected))
        else:
            self.action_skip()

    def busy(self, creating: bool) -> None:
        """While the file is created and filled, Skip waits: the dashboard
        must learn which file it shows."""
        self.creating = creating
        for button in self.query(Button):
            button.disabled = creating or (button.id == "create" and bool(self.app.read_only))

    def action_skip(self) -> None:
        if not self.creating:
            self.dismiss()

    @work(thread=True, exclusive=True, group="welcome-create")
    def create(self, path: str, names: list[str]) -> None:
        session = self.app.session
        try:
            session.path = path
            api.create_empty(path)
            added = api.import_into(session, names) if names else []
        except Exception as exc:
            deliver(self.failed, error_line(exc))
            return
        deliver(self.created, added)

    def failed(self, line: str) -> None:
        self.busy(False)
        self.say(line)

    def created(self, added: list[str]) -> None:
        from kvmrt.dashboard.configure import ConfigScreen

        self.app.sub_title = self.app.session.path
        self.app.notify(f"created {self.app.session.path}"
                        + (f"; imported {', '.join(added)}" if added else ""))
        self.dismiss()
        self.app.refresh_vms()
        self.app.push_screen(ConfigScreen())
