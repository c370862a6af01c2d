"""Welcome (no config yet), the Tools views and the menus of the dashboard."""

from __future__ import annotations

from importlib import metadata

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import RT_UUID, click, drive, make_app, screen_text, wait_for
from kvmrt.dashboard.configure import ConfigScreen
from kvmrt.dashboard.tools import CpuStatusScreen, InterruptsScreen, TopologyScreen
from kvmrt.dashboard.welcome import Welcome
from kvmrt.host import HostFS




def row_count(app) -> int:
    """Rows of the tool's table (0 until the screen is composed)."""
    found = app.screen.query("#tool")
    return found.first().row_count if found else 0


def rows(screen) -> dict[str, list[str]]:
    table = screen.query_one("#tool")
    return {k.value: [str(c) for c in table.get_row(k)] for k in table.rows}


def test_welcome_creates_the_config_and_imports_the_checked_domains(host, tmp_path):
    cfg = tmp_path / "new.cfg"
    app = make_app(host, cfg)

    async def script(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, Welcome))
        welcome = app.screen
        domains = welcome.query_one("#domains")
        await wait_for(pilot, lambda: domains.option_count > 0)
        names = [domains.get_option_at_index(i).value for i in range(domains.option_count)]
        assert names == ["RedHawk-8.4", "RedHawk-8.4-RT", "centos7-legacy", "rhel8-gpu"]
        for name in ("RedHawk-8.4", "centos7-legacy", "rhel8-gpu"):
            domains.deselect(name)
        await click(pilot, "#create")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen)
                       and app.screen.draft.vms)       # loaded on mount
        assert app.screen.draft.vms[0].uuid == RT_UUID
        text = cfg.read_text()
        assert text.startswith(f"[{RT_UUID}]\nname = RedHawk-8.4-RT\n") and text.count("[") == 1

    drive(app, script)


def test_welcome_waits_for_create_and_import_before_it_may_be_skipped(host, tmp_path):
    """Esc while Create and import still waits for libvirt does not leave
    the file created behind the user's back: the dialog opens once done."""
    cfg = tmp_path / "new.cfg"
    app = make_app(host, cfg)

    async def script(pilot):
        await wait_for(pilot, lambda: isinstance(app.screen, Welcome))
        domains = app.screen.query_one("#domains")
        await wait_for(pilot, lambda: domains.option_count > 0)
        for name in ("RedHawk-8.4", "centos7-legacy", "rhel8-gpu"):
            domains.deselect(name)
        session = app.session
        with session._opening:         # the next libvirt connection waits for us
            session._domains = None
            await click(pilot, "#create")
            await pilot.press("escape")
            await pilot.pause(0.2)
            assert isinstance(app.screen, Welcome)
            assert app.screen.query_one("#skip").disabled
        await wait_for(pilot, lambda: isinstance(app.screen, ConfigScreen)
                       and app.screen.draft.vms)
        assert [vm.uuid for vm in app.screen.draft.vms] == [RT_UUID]

    drive(app, script)


def test_topology_with_cpuset_numbering_and_owners(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TopologyScreen))
        await wait_for(pilot, lambda: row_count(app) == 64)
        found = rows(app.screen)
        assert found["8"] == ["8", "yes", "p0", "d0", "n1", "c8", "8,40", "RedHawk-8.4-RT"]
        assert found["2"][-1] == "RedHawk-8.4"
        assert found["0"][-1] == "-"

    drive(app, script)


def test_cpu_status_and_interrupt_rates(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await app.run_action("cpu_status")
        await wait_for(pilot, lambda: isinstance(app.screen, CpuStatusScreen))
        await wait_for(pilot, lambda: row_count(app) == 64)
        cpu8 = rows(app.screen)["8"]
        assert cpu8[:4] == ["8", "yes", "-", "RedHawk-8.4-RT"]      # not tuned yet
        assert int(cpu8[4]) > 0 and int(cpu8[5]) > 0   # movable threads and IRQs allowed
        await pilot.press("escape")

        fs = HostFS(host)
        before = fs.read("proc/interrupts")
        await app.run_action("interrupts")
        await wait_for(pilot, lambda: isinstance(app.screen, InterruptsScreen))
        screen = app.screen
        await wait_for(pilot, lambda: row_count(app) > 0)
        first = screen.query_one("#tool")
        # 1000 more interrupts of the first line on CPU 0 before the next sample.
        head, line, *rest = before.splitlines(keepends=True)
        irq, counts = line.split(":", 1)
        n0 = counts.split()[0]
        bumped = counts.replace(n0, str(int(n0) + 1000), 1)
        (host / "proc/interrupts").write_text(head + f"{irq}:{bumped}" + "".join(rest))
        key = irq.strip()
        await wait_for(pilot, lambda: str(first.get_row(key)[1]) not in ("0", ""),
                       timeout=10)
        assert 100 <= int(str(first.get_row(key)[1])) <= 1000    # per second over ~2 s

    drive(app, script)


def test_menus_about_and_help(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("f10")
        await pilot.pause()
        text = screen_text(app)
        for item in ("Edit ▸ Configuration", "View ▸ Show/hide disabled VMs",
                     "Tools ▸ Host topology", "Help ▸ About", "File ▸ Quit"):
            assert item in text
        options = app.screen.query_one("OptionList")
        options.highlighted = [o.id for o in options._options].index("about")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "kvmrt " + metadata.version("kvmrt") in screen_text(app))
        await pilot.press("escape")
        await app.run_action("toggle_disabled")
        await wait_for(pilot, lambda: app.show_disabled)

    drive(app, script)


def test_boot_every_vm_from_the_dashboard_never_boots_a_disabled_one(host, cfg):
    """'Boot all: every enabled VM' uses kvmrt-boot's own selection rule."""
    import pytest
    from dashboard_util import NODE, PLAIN_UUID

    from kvmrt import api
    from kvmrt.config.file import parse_config
    from kvmrt.lifecycle import DisabledVmNamed

    text = cfg.read_text().replace(f"[{PLAIN_UUID}]\n", f"[{PLAIN_UUID}]\ndisabled = true\n")
    config = parse_config(text, str(cfg))
    session = api.Session(path=str(cfg), uri=NODE, fs=api.HostFS(host))
    report = api.boot(session, config, include_disabled=True, dry_run=True)
    assert report.selected == ["RedHawk-8.4-RT"]
    with pytest.raises(DisabledVmNamed):
        api.boot(session, config, ("RedHawk-8.4",), dry_run=True)
