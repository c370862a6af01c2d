"""Import VMs inside the configuration dialog: a checklist of libvirt's
domains the draft does not have yet; the checked ones are added to the
draft as ``kvmrt-import`` would add them (:func:`kvmrt.api.import_preview`),
and reach the file with Apply."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList

from kvmrt import api
from kvmrt.config.file import parse_config
from kvmrt.dashboard.failures import error_line


class ImportDialog(ModalScreen[list[str] | None]):
    """Dismisses with the checked domain names (None: cancelled)."""

    CSS = """
    ImportDialog { align: center middle; }
    ImportDialog > Vertical { width: 80; height: auto; max-height: 90%;
                              border: thick $primary; background: $surface; padding: 1; }
    ImportDialog SelectionList { height: auto; max-height: 20; }
    ImportDialog #import-note { width: 1fr; }
    """
    BINDINGS = [("escape", "dismiss(None)", "Cancel")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text            # the draft: domains it has are not offered

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Import VMs: libvirt's domains not in the configuration yet")
            yield SelectionList(id="import-domains")
            yield Label("reading libvirt…", id="import-note")
            with Horizontal():
                yield Button("Add to the configuration", id="do-import", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.list_domains()

    @work(thread=True, exclusive=True, group="import-list")
    def list_domains(self) -> None:
        session = self.app.session
        try:
            found = api.importable_domains(session, parse_config(self.text, session.path))
        except Exception as exc:
            self.app.call_from_thread(self.note, error_line(exc))
            return
        self.app.call_from_thread(self.show, [d.name for d in found])

    def show(self, names: list[str]) -> None:
        self.query_one("#import-domains", SelectionList).add_options(
            [(name, name) for name in names])
        self.note("check the domains to add; Apply writes them to the file" if names
                  else "every libvirt domain is in the configuration already")

    def note(self, text: str) -> None:
        self.query_one("#import-note", Label).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        chosen = list(self.query_one("#import-domains", SelectionList).selected)
        self.dismiss(chosen if event.button.id == "do-import" else None)
