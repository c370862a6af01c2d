"""The dashboard against the real libvirtd (qemu:///system) on this host's
real /sys, with throwaway domains (see test_libvirt_e2e).

test_real_*: boots a disk-less VM pinned to CPU 1 from the dashboard and
shuts it down (force): it changes the host, so it only runs when asked
(``-k real``), like the other real-VM tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard_util import click, drive, wait_for
from kvmrt import api
from kvmrt.dashboard.app import Dashboard
from kvmrt.dashboard.configure import ConfigScreen
from kvmrt.dashboard.jobs import JobScreen
from kvmrt.host import HostFS
from test_dashboard_config import type_into
from test_libvirt_e2e import URI, domain, dumpxml, libvirtd, real_vm  # noqa: F401  (fixtures)


@pytest.fixture
def real_host(monkeypatch, tmp_path):
    monkeypatch.delenv("KVMRT_FSROOT", raising=False)
    monkeypatch.setenv("KVMRT_STATE_DIR", str(tmp_path / "state"))


def dashboard(cfg) -> Dashboard:
    return Dashboard(api.Session(path=str(cfg), uri=URI, fs=HostFS("/")), read_only=None)


async def job_lines(pilot) -> list[str]:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.done, timeout=200)
    await pilot.press("escape")
    return screen.lines


def test_libvirtd_apply_an_edit_from_the_dashboard(real_host, domain, tmp_path):
    name, uid = domain(vcpus=1, title="before")
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {name}\ntitle = before\n")
    app = dashboard(cfg)

    async def script(pilot):
        await wait_for(pilot, lambda: app.table.row_count == 1)
        assert str(app.table.get_row(uid.lower())[1]) == "shut off"
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen))
        screen = app.screen
        title = screen.query_one("#f-title")
        title.focus()
        await pilot.pause()
        title.action_end()
        await pilot.press(*["backspace"] * len(title.value), *"after")
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: screen.applied, timeout=60)
        assert screen.applied == [f"{cfg}: saved", f"{name}: updated"]

    drive(app, script)
    assert cfg.read_text() == f"[{uid}]\nname = {name}\ntitle = after\n"
    assert "<title>after</title>" in dumpxml(name)


def real_pci_device() -> str:
    """A PCI device of this host that is no bridge (class 0x06)."""
    for dev in sorted(Path("/sys/bus/pci/devices").iterdir()):
        if not (dev / "class").read_text().startswith("0x06"):
            return dev.name
    pytest.skip("this host has no PCI device but bridges")


def test_libvirtd_assign_a_device_from_the_dashboard(real_host, domain, tmp_path):
    """Assign one of this host's PCI devices in the configuration dialog:
    the pane shows it with its owner, the file and the domain (defined,
    never started) get it."""
    pci = real_pci_device()
    name, uid = domain(vcpus=1)
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"# assigned from the dashboard\n[{uid}]\nname = {name}\n")
    app = dashboard(cfg)

    async def script(pilot):
        await wait_for(pilot, lambda: app.table.row_count == 1)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen))
        screen = app.screen
        await type_into(pilot, screen, "pcidevs", pci)
        pane = screen.query_one("#pci")
        await wait_for(pilot, lambda: pci in [k.value for k in pane.rows]
                       and str(pane.get_row(pci)[-1]) == name)
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: screen.applied, timeout=60)
        assert screen.applied == [f"{cfg}: saved", f"{name}: updated"], screen.applied

    drive(app, script)
    assert cfg.read_text() == (f"# assigned from the dashboard\n[{uid}]\nname = {name}\n"
                               f"pcidevs = {pci}\n")
    domain_, bus, slot_fn = pci.split(":")
    slot, function = slot_fn.split(".")
    xml = dumpxml(name)
    assert "<hostdev mode='subsystem' type='pci' managed='yes'>" in xml
    assert (f"<address domain='0x{domain_}' bus='0x{bus}' slot='0x{slot}' "
            f"function='0x{function}'/>") in xml


def test_real_boot_and_shutdown_from_the_dashboard(real_host, real_vm):
    name, uid, cfg = real_vm
    app = dashboard(cfg)

    async def script(pilot):
        await wait_for(pilot, lambda: app.table.row_count == 1)
        await pilot.press("b")
        assert (await job_lines(pilot))[0] == f"{name}: started"
        await wait_for(pilot, lambda: str(app.table.get_row(uid.lower())[1]) == "running")
        await pilot.press("d")                       # its threads, pinned to CPU 1
        details = app.screen.query_one("#threads")
        await wait_for(pilot, lambda: details.row_count > 0)
        vcpu = next(details.get_row(k) for k in details.rows
                    if str(details.get_row(k)[3]) == "vCPU 0")
        assert str(vcpu[4]) == "1"
        await pilot.press("escape")
        await app.run_action("shutdown_force")       # a disk-less guest ignores ACPI
        lines = await job_lines(pilot)
        assert f"{name}: did not stop within 120 s; powered off" in lines
        await wait_for(pilot, lambda: str(app.table.get_row(uid.lower())[1]) == "shut off")

    drive(app, script)
