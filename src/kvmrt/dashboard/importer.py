"""Which libvirt domains to import: a checklist of the domains a config
does not have yet, read from libvirt in a worker. Welcome shows it (all
checked) before it creates the file; the configuration dialog's Import VMs
shows it (none checked) in :class:`ImportDialog`, and the checked ones are
added to the draft as ``kvmrt-import`` would add them
(:func:`kvmrt.api.import_preview`), to reach the file with Apply."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Label, SelectionList

from kvmrt import api
from kvmrt.config.file import parse_config
from kvmrt.dashboard.failures import deliver, error_line


class DomainChecklist(SelectionList):
    """libvirt's domains that the config ``text`` lacks, all checked at
    first or none; posts :class:`Listed` once libvirt has answered."""

    class Listed(Message):
        """The domains offered, or the error line (libvirt unreachable)."""

        def __init__(self, names: list[str], error: str | None) -> None:
            super().__init__()
            self.names, self.error = names, error

    def __init__(self, text: str, *, checked: bool, id: str) -> None:
        super().__init__(id=id)
        self.text = text
        self.checked = checked

    def on_mount(self) -> None:
        self.list_domains()

    @work(thread=True, exclusive=True, group="domains")
    def list_domains(self) -> None:
        session = self.app.session
        try:
            found = api.importable_domains(session, parse_config(self.text, session.path))
        except Exception as exc:
            deliver(self.listed, [], error_line(exc))
            return
        deliver(self.listed, [d.name for d in found], None)

    def listed(self, names: list[str], error: str | None) -> None:
        self.add_options([(name, name, self.checked) for name in names])
        self.post_message(self.Listed(names, error))


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
            yield DomainChecklist(self.text, checked=False, id="import-domains")
            yield Label("reading libvirt…", id="import-note")
            with Horizontal():
                yield Button("Add to the configuration", id="do-import", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_domain_checklist_listed(self, event: DomainChecklist.Listed) -> None:
        self.query_one("#import-note", Label).update(
            event.error or ("check the domains to add; Apply writes them to the file"
                            if event.names else
                            "every libvirt domain is in the configuration already"))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        chosen = list(self.query_one("#import-domains", SelectionList).selected)
        self.dismiss(chosen if event.button.id == "do-import" else None)
