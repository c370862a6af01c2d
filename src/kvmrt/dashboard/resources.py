"""The configuration dialog's resource pane: the host topology (CPUs with
the numbering CPUSET uses and their owner VM) beside the PCI devices (IOMMU
group, NUMA node, driver, owner), filtered to one VM and by a text search.

Owners are those of the draft the dialog edits, so an assignment shows at
once. A device is assigned with its whole IOMMU group (bridges excepted,
as the validator counts them); a VM holding only part of a group gets a
warning line here besides the validator's ``iommu-split`` error.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Label, Select, Static

from kvmrt import api
from kvmrt.dashboard.tools import TopologyScreen, cpu_cells, fill_table

PCI_COLUMNS = ("address", "group", "node", "driver", "owner")
ALL = ""        # the filter value: every VM


class ResourcePane(Vertical):
    """Host CPUs and PCI devices; :meth:`show` fills them from a config."""

    DEFAULT_CSS = """
    ResourcePane { width: 72; }
    ResourcePane > Horizontal { height: 3; }
    ResourcePane Select { width: 28; }
    ResourcePane #res-search { width: 1fr; }
    ResourcePane DataTable { height: 1fr; }
    ResourcePane #res-warn { height: auto; color: $warning; }
    """

    def __init__(self) -> None:
        super().__init__(id="cfg-res")
        self.devices: dict[str, api.PciInfo] = {}
        self._names: list[str] = []
        self._shown: tuple = (None, None)
        self._owned_key: tuple | None = None
        self._owned_rows: tuple[list, list] = ([], [])

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Select([], prompt="every VM", id="res-vm", allow_blank=True)
            yield Input(placeholder="search (CPU, node, address, driver, VM…)",
                        id="res-search")
        yield Label("Host CPUs (CPUSET numbering: p package, d die, n node, c core)")
        topo = DataTable(id="topo", cursor_type="row", zebra_stripes=True)
        for column in TopologyScreen.COLUMNS:
            topo.add_column(column, key=column)
        yield topo
        yield Label("PCI devices (Ctrl+A assigns the whole IOMMU group to the VM)")
        pci = DataTable(id="pci", cursor_type="row")
        for key in PCI_COLUMNS:
            pci.add_column(key.upper(), key=key)
        yield pci
        yield Static("", id="res-warn")

    def show(self, session: api.Session, config, vm_names: list[str],
             current: str | None) -> None:
        """Fill both tables from ``config`` (the draft; None: no owners),
        filtered; warn about a split IOMMU group of VM ``current`` (UUID)."""
        self._shown = (session, config, current)
        self._set_names(vm_names)
        cpus, devices = self._owned(session, config)
        self.devices = {d.address: d for d in devices}
        keep = self._keep()
        fill_table(self.query_one("#topo", DataTable), TopologyScreen.COLUMNS,
                   [(str(c.cpu), cells) for c in cpus
                    if keep(c.owners, cells := cpu_cells(c))])
        fill_table(self.query_one("#pci", DataTable), PCI_COLUMNS,
                   [(d.address, cells) for d in devices
                    if keep(d.owners, cells := device_cells(d))])
        self.query_one("#res-warn", Static).update("\n".join(
            split_groups(current, self.devices, config)))

    def _owned(self, session: api.Session, config) -> tuple[list, list]:
        """The host's CPUs and PCI devices with their owners, worked out
        again only when what decides ownership changed (not for a title,
        a search or the filter)."""
        key = (id(session), ownership(config))
        if key != self._owned_key:
            self._owned_key = key
            self._owned_rows = (api.host_cpus(session, config),
                                api.pci_devices(session, config))
        return self._owned_rows

    def _keep(self):
        vm = self.query_one("#res-vm", Select).value
        vm = vm if isinstance(vm, str) else ALL       # Select.NULL: every VM
        words = self.query_one("#res-search", Input).value.strip().lower()

        def keep(owners: tuple[str, ...], cells: tuple[str, ...]) -> bool:
            return ((vm == ALL or vm in owners)
                    and (not words or words in " ".join(cells).lower()))
        return keep

    def _set_names(self, names: list[str]) -> None:
        if names != self._names:
            select = self.query_one("#res-vm", Select)
            value = select.value
            select.set_options([(name, name) for name in names])
            if value in names:
                select.value = value
            self._names = list(names)

    def refilter(self) -> None:
        """The filter or the search changed: show again what was shown."""
        session, config, current = self._shown + (None,) * (3 - len(self._shown))
        if session is not None:
            self.show(session, config, self._names, current)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        self.refilter()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.refilter()

    def highlighted(self) -> api.PciInfo | None:
        table = self.query_one("#pci", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        return self.devices.get(key)


# Entries that never decide which CPU or device a VM owns.
NOT_OWNING = frozenset({"title", "description", "comments", "autostart"})


def ownership(config) -> tuple | None:
    """What decides the owners of CPUs and devices: the entries of the
    active VMs (as typed) but those that cannot matter. Equal values, equal
    owners; None: no config (no owners)."""
    if config is None:
        return None
    return tuple((vm.uuid, tuple(sorted(vm.invalid)),
                  tuple(sorted((k, v) for k, v in vm.raw.items() if k not in NOT_OWNING)))
                 for vm in config.active())


def device_cells(d: api.PciInfo) -> tuple[str, ...]:
    return (d.address, "-" if d.iommu_group is None else str(d.iommu_group),
            "-" if d.numa_node is None else str(d.numa_node), d.driver or "-",
            ", ".join(d.owners) or "-")


def group_of(device: api.PciInfo, devices: dict[str, api.PciInfo]) -> list[str]:
    """What assigning ``device`` assigns: its IOMMU group without bridges."""
    return [a for a in device.group_members
            if a == device.address or not (a in devices and devices[a].bridge)]


def split_groups(uuid: str | None, devices: dict[str, api.PciInfo], config) -> list[str]:
    """One warning per IOMMU group that the VM holds only part of."""
    vm = config.find(uuid) if config is not None and uuid else None
    if vm is None:
        return []
    name = vm.label
    have = {str(a) for a in vm.pcidevs}
    lines, seen = [], set()
    for address in sorted(have & set(devices)):
        device = devices[address]
        missing = [a for a in group_of(device, devices) if a not in have]
        if missing and device.iommu_group not in seen:
            seen.add(device.iommu_group)
            lines.append(f"{name}: holds only part of IOMMU group {device.iommu_group}: "
                         f"{' '.join(missing)} not assigned (Ctrl+A on {address} assigns "
                         "the whole group); the VM cannot boot so")
    return lines
