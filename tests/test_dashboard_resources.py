"""The configuration dialog's resource pane (host CPUs beside the PCI
devices, filter to one VM, text search), IOMMU groups on assignment, and
Import VMs from libvirt into the draft."""

from __future__ import annotations

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import CONFIG, PLAIN_UUID, RT_UUID, click, drive, make_app, wait_for
from test_dashboard_config import labels, open_dialog, pick, type_into


def keys(screen, table: str) -> list[str]:
    return [k.value for k in screen.query_one(f"#{table}").rows]


def row(screen, table: str, key: str) -> list[str]:
    return [str(c) for c in screen.query_one(f"#{table}").get_row(key)]


def test_the_pane_shows_cpus_and_devices_with_owners(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await wait_for(pilot, lambda: len(keys(screen, "topo")) == 64)
        assert row(screen, "topo", "8") == ["8", "yes", "p0", "d0", "n1", "c8", "8,40",
                                            "RedHawk-8.4-RT"]
        assert row(screen, "topo", "2")[-1] == "RedHawk-8.4"
        assert row(screen, "pci", "0000:21:00.0") == ["0000:21:00.0", "10", "2", "vfio-pci",
                                                      "RedHawk-8.4-RT"]
        # The owners follow the draft at once, before any apply.
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "cpuset", "4-5")
        await wait_for(pilot, lambda: row(screen, "topo", "4")[-1] == "RedHawk-8.4")
        assert row(screen, "topo", "2")[-1] == "-"

    drive(app, script)


def test_filter_to_one_vm_and_search(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await wait_for(pilot, lambda: len(keys(screen, "topo")) == 64)
        screen.query_one("#res-vm").value = "RedHawk-8.4"
        await wait_for(pilot, lambda: keys(screen, "topo") == ["2", "3"])
        assert keys(screen, "pci") == []                     # it passes no device through
        screen.query_one("#res-vm").value = "RedHawk-8.4-RT"
        await wait_for(pilot, lambda: keys(screen, "pci") == ["0000:21:00.0"])
        screen.query_one("#res-vm").clear()
        await wait_for(pilot, lambda: len(keys(screen, "topo")) == 64)
        search = screen.query_one("#res-search")
        search.focus()
        await pilot.press(*"vfio")
        await wait_for(pilot, lambda: keys(screen, "pci") == [
            "0000:21:00.0", "0000:22:00.0", "0000:22:00.1"])
        assert keys(screen, "topo") == []
        await pilot.press(*["backspace"] * 4, *"n3")
        await wait_for(pilot, lambda: keys(screen, "pci") == [])
        assert keys(screen, "topo") and all(row(screen, "topo", k)[4] == "n3"
                                            for k in keys(screen, "topo"))
        assert cfg.read_text() == CONFIG and not screen.draft.changed()

    drive(app, script)


def test_part_of_an_iommu_group_is_warned_and_assign_takes_the_group(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "pcidevs", "0000:22:00.0")   # typed: half the group
        warn = screen.query_one("#res-warn")
        await wait_for(pilot, lambda: "only part of IOMMU group 11" in str(warn.content))
        assert str(warn.content) == (
            "RedHawk-8.4: holds only part of IOMMU group 11: 0000:22:00.1 not assigned "
            "(Ctrl+A on 0000:22:00.0 assigns the whole group); the VM cannot boot so")
        assert any(d.code == "iommu-split" for d in screen.errors())
        table = screen.query_one("#pci")
        table.focus()
        table.move_cursor(row=table.get_row_index("0000:22:00.0"))
        await pilot.pause()
        await pilot.press("ctrl+a")
        await wait_for(pilot, lambda: str(warn.content) == "")
        assert screen.draft.find(PLAIN_UUID).get("pcidevs") == "0000:22:00.0 0000:22:00.1"
        assert screen.query_one("#f-pcidevs").value == "0000:22:00.0 0000:22:00.1"
        assert row(screen, "pci", "0000:22:00.1")[4] == "RedHawk-8.4"     # owner column
        assert not screen.errors()

    drive(app, script)


def test_import_vms_adds_libvirt_domains_to_the_draft(host, cfg):
    from kvmrt.dashboard.importer import ImportDialog

    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await click(pilot, "#import")
        await wait_for(pilot, lambda: isinstance(app.screen, ImportDialog))
        dialog = app.screen
        domains = dialog.query_one("#import-domains")
        await wait_for(pilot, lambda: domains.option_count > 0)
        names = [domains.get_option_at_index(i).value for i in range(domains.option_count)]
        assert names == ["centos7-legacy", "rhel8-gpu"]     # not those of the config
        domains.select("centos7-legacy")
        await pilot.pause()
        await click(pilot, "#do-import")
        await wait_for(pilot, lambda: len(screen.draft.vms) == 3)
        new = screen.draft.vms[2]
        assert new.get("name") == "centos7-legacy"
        assert labels(screen)[2].startswith("*") and "centos7-legacy" in labels(screen)[2]
        assert screen.query_one("#f-name").value == "centos7-legacy"   # shown in the form
        assert cfg.read_text() == CONFIG                              # the draft only
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: not screen.draft.changed())
        assert f"[{new.uuid}]\nname = centos7-legacy\n" in cfg.read_text()

    drive(app, script)


def test_assigning_a_group_leaves_its_pci_bridge_on_the_host(make_host, cfg, monkeypatch):
    import dataclasses

    import hostgen

    spec = hostgen.threadripper_5975wx()
    bridge = hostgen.PciSpec("0000:40:01.0", 0x060400, 3, iommu_group=12, driver="pcieport")
    root = make_host(dataclasses.replace(spec, pci=spec.pci + (bridge,)))
    monkeypatch.setenv("KVMRT_FSROOT", str(root))
    monkeypatch.delenv("KVMRT_STATE_DIR", raising=False)
    app = make_app(root, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        table = screen.query_one("#pci")
        await wait_for(pilot, lambda: "0000:40:01.0" in keys(screen, "pci"))
        table.focus()
        table.move_cursor(row=table.get_row_index("0000:40:00.0"))
        await pilot.pause()
        await pilot.press("ctrl+a")
        await wait_for(pilot, lambda: screen.draft.find(PLAIN_UUID).get("pcidevs"))
        assert screen.draft.find(PLAIN_UUID).get("pcidevs") == "0000:40:00.0"
        assert not screen.errors()

    drive(app, script)


def test_a_listing_that_arrives_after_import_was_cancelled_is_dropped(host, cfg):
    """Esc on Import VMs while libvirt is still being read: the late
    listing must not end the app (the worker → UI race of every dialog)."""
    from kvmrt.dashboard.importer import ImportDialog

    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        session = app.session
        with session._opening:         # the next libvirt connection waits for us
            session._domains = None
            await click(pilot, "#import")
            await wait_for(pilot, lambda: isinstance(app.screen, ImportDialog))
            dialog = app.screen
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is screen)
        await wait_for(pilot, lambda: not [w for w in app.workers
                                           if w.node is dialog and w.is_running])
        await pilot.pause(0.3)
        assert app.is_running and app.return_code is None
        assert app.screen is screen and not screen.draft.changed()

    drive(app, script)
