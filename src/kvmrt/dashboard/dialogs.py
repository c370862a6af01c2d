"""Menus and views of the dashboard: the per-VM action menu, the main menu
(File/Edit/View/Tools/Help), runtime details of a VM, text pages."""

from __future__ import annotations

import subprocess
from importlib import metadata

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Label, OptionList, Static
from textual.widgets.option_list import Option

from kvmrt import api
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.sets import format_ids
from kvmrt.status import VmStatus


class _Menu(ModalScreen[str | None]):
    """A list of (action, label); dismisses with the chosen action."""

    CSS = """
    _Menu { align: center middle; }
    _Menu > Vertical { width: 60; height: auto; max-height: 90%; border: thick $primary;
                       background: $surface; }
    _Menu OptionList { height: auto; max-height: 30; }
    """
    BINDINGS = [("escape", "dismiss(None)", "Close")]

    def __init__(self, title: str, items: list[tuple[str, str, bool]]) -> None:
        super().__init__()
        self.menu_title = title
        self.items = items

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.menu_title)
            yield OptionList(*[Option(label, id=action, disabled=not enabled)
                               if action else None   # a separator
                               for action, label, enabled in self.items])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)


def VmMenu(s: VmStatus, *, read_only: str | None) -> _Menu:
    """The actions on one VM; those that change something need root."""
    running = api.is_running(s.state)
    may = read_only is None
    items = [
        ("boot", "Boot", may and not running and s.state != "undefined"),
        ("retune", "Retune real-time (repair its tuning)", may and running and bool(s.vm.rt)),
        ("shutdown", "Shut down", may and running),
        ("shutdown_force", "Shut down, power off if it does not stop (force)", may and running),
        ("console", "Console (virsh console)", running),
        ("details", "Runtime details (threads)", True),
    ]
    title = s.vm.name + (f"   (read-only: {read_only})" if read_only else "")
    return _Menu(title, items)


def MainMenu(allowed) -> _Menu:
    """Every menu item; those ``allowed(action)`` refuses are greyed out."""
    return _Menu("Menu", [(action, label, allowed(action)) for action, label in [
        ("file_new", "File ▸ New configuration…"),
        ("file_open", "File ▸ Open configuration…"),
        ("file_clone", "File ▸ Clone configuration…"),
        ("file_close", "File ▸ Close configuration"),
        ("edit_config", "Edit ▸ Configuration…"),
        ("lock", "Edit ▸ Lock configuration (root only)…"),
        ("sync_plan", "Edit ▸ Differences with libvirt"),
        ("sync", "Edit ▸ Resynchronize libvirt with the config"),
        ("toggle_disabled", "View ▸ Show/hide disabled VMs"),
        ("details_all", "View ▸ Runtime details of all VMs"),
        ("boot_all", "VMs ▸ Boot all…"),
        ("shutdown_all", "VMs ▸ Shutdown all…"),
        ("topology", "Tools ▸ Host topology"),
        ("cpu_status", "Tools ▸ CPU status"),
        ("interrupts", "Tools ▸ Interrupt counts"),
        ("man", "Help ▸ Manual page kvmrt(1)"),
        ("about", "Help ▸ About"),
        ("quit", "File ▸ Quit"),
    ]])


class TextPage(ModalScreen):
    """A scrollable page of text (About, a manual page)."""

    CSS = """
    TextPage { align: center middle; }
    TextPage > VerticalScroll { width: 90%; height: 90%; border: thick $primary;
                                background: $surface; padding: 0 1; }
    """
    BINDINGS = [("escape", "dismiss", "Close"), ("q", "dismiss", "Close")]

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text, markup=False, id="page")


def about_text() -> str:
    try:
        version = metadata.version("kvmrt")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return (f"kvmrt {version}\n\nTurn a stock Linux KVM host into a real-time hypervisor "
            "for libvirt VMs.\nLicense: GPL-2.0-or-later\n\nEsc closes.")


def man_text(page: str = "kvmrt") -> str:
    """A manual page as `man` renders it, or where to find it."""
    try:
        done = subprocess.run(["man", "-P", "cat", page], capture_output=True, text=True,
                              timeout=10, env={"MANWIDTH": "100", "PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run man {page}: {exc}"
    return done.stdout or f"no manual page {page} installed; see man/{page}.1 in the source"


class DetailsScreen(Screen):
    """Threads as ``kvmrt-stat -t`` shows them, refreshed live: of one VM,
    or (no name) of every enabled VM."""

    BINDINGS = [("escape", "app.pop_screen", "Back"), ("q", "app.pop_screen", "Back")]
    CSS = "#summary { padding: 0 1; height: auto; }"
    COLUMNS = ("vm", "tid", "thread", "role", "affinity", "cpu")

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        self.vm_name = name

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        table = DataTable(id="threads", cursor_type="row")
        for key in self.COLUMNS:
            table.add_column(key.upper(), key=key)
        yield table
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"runtime details: {self.vm_name or 'every enabled VM'}"
        self.load()
        self.set_interval(2.0, self.load)

    @work(thread=True, exclusive=True, group="details")
    def load(self) -> None:
        try:
            config = self.app.session.load()
            found = api.vm_statuses(self.app.session, config, threads=True,
                                    names=[self.vm_name] if self.vm_name else ())
        except Exception as exc:
            deliver(self._summary, error_line(exc))
            return
        deliver(self._show, found)

    def _summary(self, text: str) -> None:
        self.query_one("#summary", Static).update(text)

    def _show(self, found: list[VmStatus]) -> None:
        self._summary("\n".join(line for s in found for line in _summary_lines(s)))
        rows = {str(t.tid): (s.vm.name, str(t.tid), t.name, t.role, format_ids(t.affinity),
                             "-" if t.cpu is None else str(t.cpu))
                for s in found for t in s.threads or []}
        table = self.query_one("#threads", DataTable)
        for key in [k.value for k in table.rows if k.value not in rows]:
            table.remove_row(key)
        shown = {k.value for k in table.rows}
        for key, cells in rows.items():
            if key not in shown:
                table.add_row(*cells, key=key)
                continue
            for col, value in zip(self.COLUMNS, cells):
                if str(table.get_cell(key, col)) != value:
                    table.update_cell(key, col, value)


def _summary_lines(s: VmStatus) -> list[str]:
    p = s.placement
    lines = [f"{s.vm.name}: {s.state}, {'rt' if s.vm.rt else 'not rt'}, "
             f"vCPUs {p.nr_vcpus if p else '-'}, cpuset "
             f"{(format_ids(p.cpuset) or '-') if p else '-'}, tuning {s.tuning or '-'}"]
    lines += [f"  {problem}" for problem in s.problems]
    if s.threads is None:
        lines.append("  no threads: not running (or QEMU's status is unreadable)")
    return lines
