"""The dashboard screen: one row per enabled VM, refreshed every 2 s.

The refresh runs in a thread worker (libvirt and /proc reads block) and
updates only the cells that changed, so the table never flickers or loses
the cursor. Actions run in workers too (see :mod:`kvmrt.dashboard.jobs`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import click
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from kvmrt import api
from kvmrt.config.file import DEFAULT_PATH, Config
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.sets import format_ids
from kvmrt.status import VmStatus

REFRESH_SECONDS = 2.0
COLUMNS = (("name", "NAME"), ("state", "STATE"), ("rt", "RT"), ("vcpus", "VCPUS"),
           ("cpuset", "CPUSET"), ("tuning", "TUNING"), ("title", "TITLE"),
           ("problems", "REASONS"))
# Fixed widths: a refresh never makes the columns jump (REASONS takes the rest).
WIDTHS = {"name": 20, "state": 11, "rt": 2, "vcpus": 5, "cpuset": 16, "tuning": 9,
          "title": 36}
# Actions that change the host, libvirt or the config: root only.
# The configuration dialog opens for anybody; its Apply is root's.
CHANGING = {"boot", "shutdown", "shutdown_force", "retune", "boot_all", "shutdown_all",
            "sync", "file_new", "file_clone", "lock"}
# Actions on the open configuration: greyed out after File ▸ Close.
ON_CONFIG = {"menu", "boot", "shutdown", "shutdown_force", "retune", "console", "details",
             "boot_all", "shutdown_all", "edit_config", "sync", "sync_plan", "details_all",
             "file_clone", "file_close", "lock"}


@dataclass(frozen=True)
class Row:
    """What one table row shows; compared cell by cell on refresh."""

    key: str
    cells: tuple

    @classmethod
    def of(cls, s: VmStatus) -> "Row":
        p = s.placement
        vm = s.vm
        title = vm.title + (f" — {vm.description}" if vm.description else "")
        tuning = (Text("disturbed", style="bold yellow") if s.tuning == "disturbed"
                  else Text(s.tuning or "-", style="green" if s.tuning == "ok" else ""))
        return cls(vm.uuid.lower(), (
            vm.name, Text(s.state, style=_STATE_STYLE.get(s.state, "")),
            Text("RT", style="bold magenta") if vm.rt else "",
            str(p.nr_vcpus) if p else "-", (format_ids(p.cpuset) or "-") if p else "-",
            tuning, title.replace("\n", " "),
            Text("; ".join(s.problems), style="yellow") if s.problems else ""))


_STATE_STYLE = {"running": "bold green", "paused": "yellow", "shut off": "dim",
                "undefined": "red"}


class Dashboard(App):
    """kvmrt: watch and control the real-time host."""

    TITLE = "kvmrt"
    CSS = """
    #banner { height: auto; background: $warning-darken-2; color: $text; padding: 0 1; }
    #banner.hidden { display: none; }
    #vms { height: 1fr; }
    #problems { height: auto; max-height: 8; padding: 0 1; color: $warning; }
    """
    BINDINGS = [
        Binding("enter", "menu", "Actions"),
        Binding("b", "boot", "Boot"),
        Binding("s", "shutdown", "Shut down"),
        Binding("r", "retune", "Retune"),
        Binding("c", "console", "Console"),
        Binding("d", "details", "Details"),
        Binding("B", "boot_all", "Boot all"),
        Binding("S", "shutdown_all", "Shutdown all"),
        Binding("e", "edit_config", "Configure"),
        Binding("t", "topology", "Topology"),
        Binding("f10", "main_menu", "Menu"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, session: api.Session, *, read_only: str | None = None) -> None:
        super().__init__()
        self.session = session
        # Why actions are disabled (None: they are not); root gets them.
        self.read_only = read_only
        self.config: Config | None = None
        self.show_disabled = False
        self._config_stamp: tuple | None = None
        self._rows: dict[str, Row] = {}
        self.statuses: dict[str, VmStatus] = {}
        self.refreshes = 0
        self._reading = False
        self.diagnostics: list = []     # the config's errors and warnings
        self.opened = True              # False after File ▸ Close
        self._generation = 0            # +1 when another file is opened or closed

    # -- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(self._banner_text(), id="banner",
                     classes="" if self.read_only else "hidden")
        table = DataTable(id="vms", cursor_type="row", zebra_stripes=True)
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=WIDTHS.get(key))
        yield table
        yield Static("", id="problems")
        yield Footer()

    def _banner_text(self) -> str:
        return f"read-only: {self.read_only}" if self.read_only else ""

    def on_mount(self) -> None:
        self.title = f"kvmrt — {self.session.hostname}"
        self.sub_title = self.session.path
        if not self.session.config_exists():
            from kvmrt.dashboard.welcome import Welcome
            self.push_screen(Welcome())
        self.refresh_vms()
        self.set_interval(REFRESH_SECONDS, self.refresh_vms)

    @property
    def table(self) -> DataTable:
        return self.query_one("#vms", DataTable)

    # -- refresh ----------------------------------------------------------------

    def refresh_vms(self) -> None:
        """Start a refresh unless one is still reading (a slow host never
        piles up readers)."""
        if not self._reading and self.opened:
            self._reading = True
            self._read(self._generation)

    @work(thread=True, group="refresh")
    def _read(self, generation: int) -> None:
        """Read config, libvirt and /proc in a thread; show it on the UI
        thread unless another file was opened meanwhile."""
        try:
            config = self._current_config()
            statuses = api.vm_statuses(self.session, config,
                                       include_disabled=self.show_disabled)
            warnings = api.leftover_warnings(self.session)
        except Exception as exc:      # a broken host tree, libvirt gone: one line
            deliver(self._show_error, error_line(exc))
            return
        finally:
            self._reading = False
        if generation == self._generation:
            deliver(self._show, statuses, warnings)

    def _current_config(self) -> Config:
        """The config, read again only when the file changed."""
        try:
            st = os.stat(self.session.path)
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if self.config is None or stamp != self._config_stamp:
            self.config = self.session.load() if stamp else Config(self.session.path)
            self._config_stamp = stamp
            self.diagnostics = api.diagnose(self.config, self.session.host)
        return self.config

    def _show(self, statuses: list[VmStatus], warnings: list[str]) -> None:
        rows = [Row.of(s) for s in statuses]
        self.statuses = {s.vm.uuid.lower(): s for s in statuses}
        table = self.table
        if [r.key for r in rows] != list(self._rows):
            self._rebuild(table, rows)
        else:
            for row in rows:
                old = self._rows[row.key]
                for (col, _label), new, was in zip(COLUMNS, row.cells, old.cells):
                    if new != was:
                        table.update_cell(row.key, col, new, update_width=col == "problems")
                self._rows[row.key] = row
        notes = [f"{s.vm.name}: {problem}" for s in statuses for problem in s.problems]
        notes += [f"warning: {w}" for w in warnings]
        notes += [d.format() for d in self.diagnostics]
        self.query_one("#problems", Static).update("\n".join(notes))
        self.refreshes += 1

    def _rebuild(self, table: DataTable, rows: list[Row]) -> None:
        """The set of VMs changed (config edited): rows in config order."""
        cursor = self.selected_key()
        table.clear()
        for row in rows:
            table.add_row(*row.cells, key=row.key)
            table.update_cell(row.key, "problems", row.cells[-1], update_width=True)
        self._rows = {r.key: r for r in rows}
        if cursor in self._rows:
            table.move_cursor(row=list(self._rows).index(cursor))

    def _show_error(self, message: str) -> None:
        self.query_one("#problems", Static).update(Text(message, style="bold red"))

    def selected_key(self) -> str | None:
        table = self.table
        if not self._rows or table.cursor_row < 0 or table.cursor_row >= table.row_count:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def selected(self) -> VmStatus | None:
        key = self.selected_key()
        return self.statuses.get(key) if key else None

    # -- actions ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in CHANGING and self.read_only:
            return None     # shown greyed out; the banner says why
        if action in ON_CONFIG and not self.opened:
            return None
        return True

    def _vm_or_say(self) -> VmStatus | None:
        s = self.selected()
        if s is None:
            self.notify("no VM selected", severity="warning")
        return s

    def action_menu(self) -> None:
        from kvmrt.dashboard.dialogs import VmMenu

        s = self._vm_or_say()
        if s is not None:
            self.push_screen(VmMenu(s, read_only=self.read_only),
                             lambda choice: choice and self.run_action(choice))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "vms":
            self.action_menu()

    def action_boot(self) -> None:
        self._vm_job("boot")

    def action_shutdown(self) -> None:
        self._vm_job("shutdown")

    def action_shutdown_force(self) -> None:
        self._vm_job("shutdown --force")

    def action_retune(self) -> None:
        self._vm_job("retune")

    def _vm_job(self, what: str) -> None:
        from kvmrt.dashboard.jobs import JobScreen, VmJob

        s = self._vm_or_say()
        if s is not None and self.config is not None:
            self.push_screen(JobScreen(VmJob(what, [s.vm.name])))

    def action_boot_all(self) -> None:
        from kvmrt.dashboard.jobs import BootAllDialog

        self.push_screen(BootAllDialog())

    def action_shutdown_all(self) -> None:
        from kvmrt.dashboard.jobs import ShutdownAllDialog

        self.push_screen(ShutdownAllDialog())

    def action_details(self) -> None:
        from kvmrt.dashboard.dialogs import DetailsScreen

        s = self._vm_or_say()
        if s is not None:
            self.push_screen(DetailsScreen(s.vm.name))

    def action_details_all(self) -> None:
        from kvmrt.dashboard.dialogs import DetailsScreen

        self.push_screen(DetailsScreen())

    def action_console(self) -> None:
        s = self._vm_or_say()
        if s is None:
            return
        command = ["virsh", "-c", self.session.uri_shown, "console", s.vm.name]
        try:
            with self.suspend():
                click.echo(f"{' '.join(command)}   (leave with Ctrl+])")
                done = subprocess.run(command)
        except Exception as exc:   # SuspendNotSupported, OSError: say it, stay up
            self.notify(f"cannot open the console: {exc}", severity="error")
            return
        if done.returncode:
            self.notify(f"virsh console {s.vm.name} exited with status {done.returncode}",
                        severity="warning")

    def action_edit_config(self) -> None:
        from kvmrt.dashboard.configure import ConfigScreen

        self.push_screen(ConfigScreen())

    def action_main_menu(self) -> None:
        from kvmrt.dashboard.dialogs import MainMenu

        self.push_screen(MainMenu(lambda action: self.check_action(action, ()) is True),
                         lambda choice: choice and self.run_action(choice))

    # -- File ▸ New, Open, Clone, Close; Edit ▸ Lock -------------------------------

    def action_file_new(self) -> None:
        from kvmrt.dashboard.files import NewDialog

        folder = os.path.dirname(os.path.abspath(self.session.path))
        self.push_screen(NewDialog(folder), self._opened_new)

    def _opened_new(self, path: str | None) -> None:
        if path:
            self.switch_config(path)
            self.notify(f"created {path} (empty): e opens the configuration dialog, "
                        "where Import VMs adds libvirt's domains")

    def action_file_open(self) -> None:
        from kvmrt.dashboard.files import OpenDialog

        self.push_screen(OpenDialog(self.session.path),
                         lambda path: path and self.switch_config(path))

    def action_file_clone(self) -> None:
        from kvmrt.dashboard.files import CloneDialog

        self.push_screen(CloneDialog(self.session.path), lambda path: path and self.notify(
            f"cloned {self.session.path} to {path}; File ▸ Open switches to it"))

    def action_file_close(self) -> None:
        from kvmrt.dashboard.files import NoConfig

        self.opened = False
        self._generation += 1
        self.config, self._config_stamp, self.diagnostics = None, None, []
        self._rows, self.statuses = {}, {}
        self.table.clear()
        self.sub_title = "no configuration open"
        self.query_one("#problems", Static).update(
            "No configuration is open: F10 ▸ File ▸ New or Open.")
        self.push_screen(NoConfig(), lambda choice: choice and self.run_action(choice))

    def switch_config(self, path: str) -> None:
        """Show another config file (File ▸ New, Open)."""
        self.session.path = path
        self.opened = True
        self._generation += 1
        self.config, self._config_stamp, self.diagnostics = None, None, []
        self.sub_title = path
        self.query_one("#problems", Static).update("")
        self._reading = False     # a reader of the old file no longer shows its rows
        self.refresh_vms()

    def action_lock(self) -> None:
        from kvmrt.dashboard.files import LockDialog

        self.push_screen(LockDialog(self.session.path))

    def action_sync_plan(self) -> None:
        from kvmrt.dashboard.jobs import Job, JobScreen

        self.push_screen(JobScreen(Job("sync", dry_run=True)))

    def action_sync(self) -> None:
        from kvmrt.dashboard.jobs import Job, JobScreen

        self.push_screen(JobScreen(Job("sync")))

    def action_about(self) -> None:
        from kvmrt.dashboard.dialogs import TextPage, about_text

        self.push_screen(TextPage(about_text()))

    def action_man(self) -> None:
        from kvmrt.dashboard.dialogs import TextPage, man_text

        self.push_screen(TextPage(man_text("kvmrt")))

    def action_topology(self) -> None:
        from kvmrt.dashboard.tools import TopologyScreen

        self.push_screen(TopologyScreen())

    def action_cpu_status(self) -> None:
        from kvmrt.dashboard.tools import CpuStatusScreen

        self.push_screen(CpuStatusScreen())

    def action_interrupts(self) -> None:
        from kvmrt.dashboard.tools import InterruptsScreen

        self.push_screen(InterruptsScreen())

    def action_toggle_disabled(self) -> None:
        self.show_disabled = not self.show_disabled
        self.refresh_vms()


def main_app(path: str | None, uri: str | None) -> Dashboard:
    session = api.Session(path=path or DEFAULT_PATH, uri=uri)
    return Dashboard(session, read_only=api.change_refused())


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "path", default=None, metavar="FILE",
              help=f"Config file (default {DEFAULT_PATH}).")
@click.option("-c", "--connect", "uri", default=None, metavar="URI",
              help="libvirt URI (default: $LIBVIRT_DEFAULT_URI, else qemu:///system).")
@click.version_option(package_name="kvmrt", prog_name="kvmrt", message="%(prog)s %(version)s")
def main(path: str | None, uri: str | None) -> None:
    """The kvmrt dashboard: the VMs of the config with their power state and
    real-time tuning, refreshed every 2 s; boot, shut down, retune, console,
    thread details; the configuration dialog and host views. Without root
    it is read-only.
    """
    app = main_app(path, uri)
    app.run()
    if app.return_code:
        raise SystemExit(app.return_code)
