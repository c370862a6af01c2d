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
from kvmrt.config.file import Config
from kvmrt.errors import KvmrtError


class Welcome(ModalScreen):
    CSS = """
    Welcome { align: center middle; }
    #welcome { width: 90; height: auto; max-height: 90%; border: thick $primary;
               background: $surface; padding: 1; }
    #domains { height: auto; max-height: 16; }
    #welcome-error { color: $error; }
    """
    BINDINGS = [("escape", "dismiss", "Skip")]

    def compose(self) -> ComposeResult:
        session = self.app.session
        with Vertical(id="welcome"):
            yield Label(f"Welcome to kvmrt. The config file {session.path} does not exist.")
            yield Label("Create it here (or type another path):")
            yield Input(session.path, id="path")
            yield Label("", id="welcome-error")
            yield Label("Import these libvirt domains:", id="import-label")
            yield SelectionList(id="domains")
            with Horizontal():
                yield Button("Create and import", id="create", variant="primary",
                             disabled=bool(self.app.read_only))
                yield Button("Skip", id="skip")

    def on_mount(self) -> None:
        if self.app.read_only:
            self.query_one("#welcome-error", Label).update(f"read-only: {self.app.read_only}")
        self.list_domains()

    @work(thread=True, group="welcome")
    def list_domains(self) -> None:
        try:
            found = api.importable_domains(self.app.session, Config(self.app.session.path))
        except KvmrtError as exc:
            self.app.call_from_thread(self.say, f"libvirt: {exc}")
            return
        self.app.call_from_thread(self.show_domains, [d.name for d in found])

    def show_domains(self, names: list[str]) -> None:
        domains = self.query_one("#domains", SelectionList)
        domains.add_options([(name, name, True) for name in names])

    def say(self, text: str) -> None:
        self.query_one("#welcome-error", Label).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.create(self.query_one("#path", Input).value.strip(),
                        list(self.query_one("#domains", SelectionList).selected))
        else:
            self.dismiss()

    @work(thread=True, exclusive=True, group="welcome-create")
    def create(self, path: str, names: list[str]) -> None:
        session = self.app.session
        try:
            session.path = path
            api.create_empty(path)
            added = api.import_into(session, names) if names else []
        except KvmrtError as exc:
            self.app.call_from_thread(self.say, f"error: {exc}")
            return
        self.app.call_from_thread(self.created, added)

    def created(self, added: list[str]) -> None:
        from kvmrt.dashboard.configure import ConfigScreen

        self.app.sub_title = self.app.session.path
        self.app.notify(f"created {self.app.session.path}"
                        + (f"; imported {', '.join(added)}" if added else ""))
        self.dismiss()
        self.app.refresh_vms()
        self.app.push_screen(ConfigScreen())
