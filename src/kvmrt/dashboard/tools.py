"""Tools views: host topology, CPU status, interrupt counts per second.

Each is a screen with one table; the live ones read in a thread worker
every 2 s and update cells in place.
"""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from kvmrt import api
from kvmrt.dashboard.failures import deliver, error_line
from kvmrt.sets import format_ids


def _n(value) -> str:
    return "-" if value is None else str(value)


class _TableScreen(Screen):
    """A header, a note line, one table, the footer; Esc goes back."""

    BINDINGS = [("escape", "app.pop_screen", "Back"), ("q", "app.pop_screen", "Back")]
    COLUMNS: tuple[str, ...] = ()
    TITLE_TEXT = ""
    LIVE = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="note")
        yield DataTable(id="tool", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.prepare()
        self.sub_title = self.TITLE_TEXT
        table = self.query_one("#tool", DataTable)
        for column in self.COLUMNS:
            table.add_column(column, key=column)
        self.load()
        if self.LIVE:
            self.set_interval(2.0, self.load)

    @work(thread=True, exclusive=True, group="tool")
    def load(self) -> None:
        try:
            rows, note = self.read()
        except Exception as exc:
            rows, note = [], error_line(exc)
        deliver(self.show, rows, note)

    def prepare(self) -> None:
        """Before the table gets its columns."""

    def read(self) -> tuple[list[tuple[str, tuple]], str]:
        raise NotImplementedError

    def show(self, rows: list[tuple[str, tuple]], note: str) -> None:
        self.query_one("#note", Static).update(note)
        fill_table(self.query_one("#tool", DataTable), self.COLUMNS, rows)

    def _config(self):
        return self.app.config


class TopologyScreen(_TableScreen):
    """Packages, dies, NUMA nodes, cores and SMT siblings, numbered as
    CPUSET numbers them (p, d, n, c), with the VM owning each CPU."""

    COLUMNS = ("CPU", "ONLINE", "PACKAGE", "DIE", "NODE", "CORE", "SIBLINGS", "VM")
    TITLE_TEXT = "host topology (CPUSET numbering)"

    def read(self):
        cpus = api.host_cpus(self.app.session, self._config())
        rows = [(str(c.cpu), cpu_cells(c)) for c in cpus]
        return rows, f"{len(cpus)} CPUs; 'c3' is the 4th core, 'n1' the 2nd NUMA node"


def cpu_cells(c: api.CpuInfo) -> tuple[str, ...]:
    """A CPU as the topology tables show it (TopologyScreen.COLUMNS)."""
    return (str(c.cpu), "yes" if c.online else "no", f"p{_n(c.package)}", f"d{_n(c.die)}",
            f"n{_n(c.node)}", f"c{_n(c.core)}", format_ids(c.siblings) or "-",
            ", ".join(c.owners) or "-")


def fill_table(table: DataTable, columns, rows: list[tuple[str, tuple]]) -> None:
    """Show ``rows`` (key, cells): rebuilt when the keys change, else only
    the cells that changed are updated (no flicker, the cursor stays)."""
    if [k for k, _ in rows] != [k.value for k in table.rows]:
        cursor = table.cursor_row
        table.clear()
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=min(max(cursor, 0), len(rows) - 1))
        return
    for key, cells in rows:
        for column, value in zip(columns, cells):
            if str(table.get_cell(key, column)) != value:
                table.update_cell(key, column, value)


class CpuStatusScreen(_TableScreen):
    """Per CPU: online, shielded, owner, movable threads and IRQs allowed
    on it, interrupts per second."""

    COLUMNS = ("CPU", "ONLINE", "SHIELDED", "VM", "THREADS", "IRQS", "INTR/S")
    TITLE_TEXT = "CPU status"
    LIVE = True

    def prepare(self) -> None:
        self.sampler = api.InterruptSampler(self.app.session.fs)

    def read(self):
        states = api.cpu_states(self.app.session, self._config())
        rates = self.sampler.sample()
        per_cpu = {cpu: sum(r[i] for r in rates.values() if i < len(r))
                   for i, cpu in enumerate(self.sampler.cpus)}
        rows = [(str(s.cpu), (str(s.cpu), "yes" if s.online else "no",
                              ", ".join(s.shielded_for) or "-", ", ".join(s.owners) or "-",
                              str(s.movable_threads), str(s.irqs),
                              f"{per_cpu.get(s.cpu, 0):.0f}"))
                for s in states]
        return rows, "THREADS, IRQS: movable threads and IRQs allowed on the CPU"


class InterruptsScreen(_TableScreen):
    """/proc/interrupts as rates: per IRQ and CPU, per second."""

    TITLE_TEXT = "interrupts per second (from /proc/interrupts)"
    LIVE = True

    def prepare(self) -> None:
        self.sampler = api.InterruptSampler(self.app.session.fs)
        self.COLUMNS = ("IRQ", *(f"CPU{c}" for c in self.sampler.cpus))

    def read(self):
        rates = self.sampler.sample()
        rows = [(irq, (irq, *(f"{r:.0f}" for r in counts))) for irq, counts in rates.items()]
        return rows, f"{len(rows)} interrupt lines; refreshed every 2 s"
