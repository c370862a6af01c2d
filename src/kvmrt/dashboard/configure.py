"""The configuration dialog: one form per VM, diagnostics that follow every
change, a PCI device pane, revert and apply (as kvmrt-edit-config).

Apply refuses while the validator reports errors, writes the file
atomically under its lock only when it still reads what the dialog
loaded (a change on disk is offered for reload, never overwritten), then
syncs libvirt. All of that is :func:`kvmrt.api.apply_edit`.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import (Button, Footer, Header, Input, Label, OptionList,
                             Static, Switch)
from textual.widgets.option_list import Option

from kvmrt import api
from kvmrt.dashboard.draft import Draft, VmDraft
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.dashboard.resources import ResourcePane, group_of
from kvmrt.errors import KvmrtError

TEXT_FIELDS = ("name", "title", "description", "cpuset", "pcidevs")
FLAGS = ("rt", "autostart", "disabled")


class ConfigScreen(Screen):
    """Edit the config; the dashboard keeps running underneath."""

    CSS = """
    #cfg-body { height: 1fr; }
    #cfg-vms { width: 30; }
    #cfg-form { width: 1fr; padding: 0 1; }
    #cfg-form Input { width: 1fr; }
    .field { height: 3; }
    .field > Label { width: 14; padding: 1 0 0 0; }
    #resolved { padding: 1 1 0 1; width: auto; }
    #cfg-diag { height: 8; border: round $primary; padding: 0 1; }
    #cfg-ondisk { background: $warning-darken-2; padding: 0 1; height: auto; }
    #cfg-ondisk.hidden { display: none; }
    #cfg-readonly { background: $warning-darken-2; padding: 0 1; height: auto; }
    #cfg-buttons { height: 3; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "apply", "Apply"),
        Binding("ctrl+r", "revert", "Revert"),
        Binding("ctrl+a", "assign", "Assign device group"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.draft = Draft.of("")
        self.current: str | None = None      # UUID of the VM in the form
        self.found: list = []                 # the diagnostics of the draft
        self.applied: list[str] = []          # lines from the last apply

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        if self.app.read_only:
            yield Static(f"read-only: {self.app.read_only}", id="cfg-readonly")
        yield Static("", id="cfg-ondisk", classes="hidden")
        with Horizontal(id="cfg-body"):
            yield OptionList(id="cfg-vms")
            with VerticalScroll(id="cfg-form"):
                for key in TEXT_FIELDS:
                    with Horizontal(classes="field"):
                        yield Label(key)
                        yield Input(id=f"f-{key}")
                        if key == "cpuset":
                            yield Label("", id="resolved")
                with Horizontal(classes="field"):
                    yield Label("nr_vcpus")
                    yield Switch(id="f-auto")
                    yield Label("auto ", classes="switch-label")
                    yield Input(id="f-nr_vcpus")
                for key in FLAGS:
                    with Horizontal(classes="field"):
                        yield Label(key)
                        yield Switch(id=f"f-{key}")
            yield ResourcePane()
        yield Static("", id="cfg-diag")
        with Horizontal(id="cfg-buttons"):
            yield Button("Apply", id="apply", variant="primary")
            yield Button("Revert", id="revert")
            yield Button("Import VMs", id="import")
            yield Button("Remove VM", id="remove")
            yield Button("Up", id="up")
            yield Button("Down", id="down")
            yield Button("Reload from disk", id="reload")
            yield Button("Close", id="close")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"configuration: {self.app.session.path}"
        self.load()
        self.set_interval(2.0, self.watch_disk)
        if self.app.read_only:
            self.query_one("#apply", Button).disabled = True

    # -- the draft ------------------------------------------------------------

    def load(self) -> None:
        """(Re)start from the file."""
        self.draft = Draft.of(self.app.session.read_text())
        self.query_one("#cfg-ondisk").add_class("hidden")
        self.current = self.draft.vms[0].uuid if self.draft.vms else None
        self.revalidate()
        self.show_form()

    def vm(self) -> VmDraft | None:
        return self.draft.find(self.current) if self.current else None

    def revalidate(self) -> None:
        """Parse and validate the draft's text; mark the VMs; fill the boxes."""
        session = self.app.session
        try:
            self.config, self.found = api.validate_text(self.draft.text(), session.path,
                                                        session.host)
        except KvmrtError as exc:      # a value the file format cannot hold
            self.config, self.found = None, []
            self.query_one("#cfg-diag", Static).update(f"error: {exc}")
            return
        lines = [d.format() for d in self.found] or ["no errors, no warnings"]
        self.query_one("#cfg-diag", Static).update("\n".join(self.applied + lines))
        self.show_vm_list()
        self.show_resolved()
        self.show_devices()

    def errors(self) -> list:
        return [d for d in self.found if d.is_error]

    def show_vm_list(self) -> None:
        """The VM list with its markers; rebuilt only when VMs were added,
        removed or reordered, else only the labels that changed (a keystroke
        in a 100-VM config rebuilds nothing)."""
        options = self.query_one("#cfg-vms", OptionList)
        labels = [(vm.uuid, self._label(vm)) for vm in self.draft.vms]
        ids = [uuid for uuid, _ in labels]
        highlighted = options.highlighted
        if ids != [o.id for o in options.options]:
            options.set_options([Option(label, id=uuid) for uuid, label in labels])
        else:
            for (uuid, label), option in zip(labels, options.options):
                if str(option.prompt) != label:
                    options.replace_option_prompt(uuid, label)
        if ids:
            options.highlighted = ids.index(self.current) if self.current in ids else (
                highlighted or 0)

    def _label(self, vm: VmDraft) -> str:
        name = vm.get("name") or f"[{vm.uuid[:8]}…]"
        marks = ("*" if self.draft.vm_changed(vm) else " ")
        severities = {d.is_error for d in self.found if name in d.vms}
        marks += "E" if True in severities else ("W" if False in severities else " ")
        return f"{marks} {name}" + (" (disabled)" if vm.flag("disabled") else "")

    def show_form(self) -> None:
        vm = self.vm()
        for key in TEXT_FIELDS:
            widget = self.query_one(f"#f-{key}", Input)
            widget.value = vm.get(key) if vm else ""
            widget.disabled = vm is None
        if vm is not None:
            running = api.is_running(self._state(vm.uuid))
            name = self.query_one("#f-name", Input)
            name.disabled = running
            name.tooltip = "shut the VM off to rename it" if running else None
        auto = vm is not None and vm.get("nr_vcpus").lower() == "auto"
        self.query_one("#f-auto", Switch).value = auto
        nr = self.query_one("#f-nr_vcpus", Input)
        nr.value = "" if auto or vm is None else vm.get("nr_vcpus")
        nr.disabled = auto or vm is None
        for key in FLAGS:
            self.query_one(f"#f-{key}", Switch).value = vm.flag(key) if vm else False
        self.show_resolved()

    def _state(self, uuid: str) -> str:
        s = self.app.statuses.get(uuid.lower())
        return s.state if s else "undefined"

    def show_resolved(self) -> None:
        vm = self.vm()
        parsed = self.config.find(vm.uuid) if vm and self.config else None
        text = ""
        if parsed is not None and "cpuset" not in parsed.invalid:
            text = "→ CPUs " + api.resolved_cpuset(parsed, self.app.session.host)
        self.query_one("#resolved", Label).update(text)

    def show_devices(self) -> None:
        names = [vm.get("name") for vm in self.draft.vms if vm.get("name")]
        self.query_one(ResourcePane).show(self.app.session, self.config, names, self.current)

    # -- events ---------------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#cfg-vms")
    def pick_vm(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id != self.current:
            self.current = event.option.id
            self.show_form()

    @on(Input.Changed)
    def edited(self, event: Input.Changed) -> None:
        vm, key = self.vm(), (event.input.id or "")[2:]
        if vm is None or not event.input.has_focus:
            return      # a value the form itself filled in
        if vm.set(key, event.value):
            self.revalidate()

    @on(Switch.Changed)
    def switched(self, event: Switch.Changed) -> None:
        vm, key = self.vm(), (event.switch.id or "")[2:]
        if vm is None or not event.switch.has_focus:
            return
        if key == "auto":
            nr = self.query_one("#f-nr_vcpus", Input)
            nr.disabled = event.value
            changed = vm.set("nr_vcpus", "auto" if event.value else nr.value or "1")
            nr.value = "" if event.value else vm.get("nr_vcpus")
        else:
            changed = vm.set_flag(key, event.value)
        if changed:
            self.revalidate()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        actions = {"apply": self.action_apply, "revert": self.action_revert,
                   "reload": self.load, "close": self.action_close,
                   "remove": self.remove_vm, "import": self.ask_import,
                   "up": lambda: self.move(-1),
                   "down": lambda: self.move(1)}
        actions[event.button.id]()

    def ask_import(self) -> None:
        from kvmrt.dashboard.importer import ImportDialog

        self.app.push_screen(ImportDialog(self.draft.text()),
                             lambda names: names and self.import_vms(self.draft.text(), names))

    @work(thread=True, exclusive=True, group="import")
    def import_vms(self, text: str, names: list[str]) -> None:
        """Take the domains as kvmrt-import would, into the draft only."""
        try:
            sections, lines = api.import_preview(self.app.session, text, names)
        except Exception as exc:
            sections, lines = [], [error_line(exc)]
        deliver(self.imported, sections, lines)

    def imported(self, sections: list, lines: list[str]) -> None:
        for uuid, entries in sections:
            if self.draft.find(uuid) is None:
                self.draft.add(uuid, entries)
        if sections:
            self.current = sections[0][0]
        added = ", ".join(dict(entries).get("name", uuid) for uuid, entries in sections)
        self.applied = ([f"imported into the draft (Apply writes them): {added}"]
                        if added else []) + lines
        self.revalidate()
        self.show_form()

    def remove_vm(self) -> None:
        """From the config only; libvirt keeps the domain."""
        if self.current:
            self.draft.remove(self.current)
            self.current = self.draft.vms[0].uuid if self.draft.vms else None
            self.revalidate()
            self.show_form()

    def move(self, step: int) -> None:
        if self.current:
            self.draft.move(self.current, step)
            self.revalidate()

    def action_assign(self) -> None:
        """Add the highlighted device's whole IOMMU group to the VM's pcidevs
        (see :mod:`kvmrt.dashboard.resources`)."""
        pane = self.query_one(ResourcePane)
        vm, device = self.vm(), pane.highlighted()
        if vm is None or device is None:
            return
        group = group_of(device, pane.devices)
        have = vm.get("pcidevs").split()
        vm.set("pcidevs", " ".join(have + [a for a in group if a not in have]))
        self.query_one("#f-pcidevs", Input).value = vm.get("pcidevs")
        name = vm.get("name")
        others = sorted({o for a in group for o in pane.devices[a].owners if o != name}
                        if all(a in pane.devices for a in group) else set())
        if len(group) > 1:
            self.notify(f"assigned IOMMU group {device.iommu_group}: {', '.join(group)}")
        if others:
            self.notify(f"{', '.join(group)} also passed to {', '.join(others)}: a device "
                        "belongs to one VM (the diagnostics say pci-shared)",
                        severity="warning")
        self.revalidate()

    def action_revert(self) -> None:
        self.applied = []
        self.draft = Draft.of(self.draft.original)
        self.revalidate()
        self.show_form()

    def action_close(self) -> None:
        if self.draft.changed():
            self.notify("unapplied changes: Apply or Revert first", severity="warning")
            return
        self.app.pop_screen()

    # -- apply and the file on disk -------------------------------------------

    def action_apply(self) -> None:
        if self.app.read_only:
            self.notify(f"read-only: {self.app.read_only}", severity="error")
        elif self.errors():
            self.notify(f"{len(self.errors())} error(s): fix them before applying",
                        severity="error")
        elif not self.draft.changed():
            self.notify("no changes")
        else:
            self.query_one("#apply", Button).disabled = True
            self.apply(self.draft.original, self.draft.text())

    @work(thread=True, exclusive=True, group="apply")
    def apply(self, original: str, text: str) -> None:
        try:
            report = api.apply_edit(self.app.session, original, text)
        except api.ConfigChangedOnDisk as exc:
            deliver(self.changed_on_disk, str(exc))
        except Exception as exc:
            deliver(self.applied_lines, text, [error_line(exc)], False)
        else:
            lines = [f"{self.app.session.path}: saved"]
            lines += [report.sync_error] if report.sync_error else []
            lines += report.lines
            for o in report.outcomes:
                failed = o.status is api.SyncStatus.FAILED
                lines.append(f"{o.vm}: failed: {'; '.join(o.messages)}" if failed
                             else f"{o.vm}: {o.status}")
            deliver(self.applied_lines, text, lines, True)

    def applied_lines(self, text: str, lines: list[str], saved: bool) -> None:
        self.query_one("#apply", Button).disabled = False
        if saved:
            self.draft = Draft.of(text)
        self.applied = lines
        self.revalidate()
        self.show_form()
        self.app.refresh_vms()

    def changed_on_disk(self, message: str) -> None:
        self.query_one("#apply", Button).disabled = False
        bar = self.query_one("#cfg-ondisk", Static)
        bar.update(f"{message}. Reload from disk (your edits are dropped) or keep "
                   "editing and apply after reloading.")
        bar.remove_class("hidden")

    def watch_disk(self) -> None:
        """Say so as soon as the file no longer reads what the dialog loaded."""
        try:
            now = self.app.session.read_text()
        except KvmrtError:
            return
        if now != self.draft.original:
            self.changed_on_disk(f"{self.app.session.path} changed on disk")
