"""The dashboard screen (kvmrt): rows, header, refresh in place, read-only
mode, per-VM actions and Boot/Shutdown all, with Textual's pilot on the
Threadripper host tree and libvirt's test driver."""

from __future__ import annotations

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import (CONFIG, PLAIN_UUID, RT_UUID, click, drive, make_app, screen_text,
                            wait_for)
from kvmrt.dashboard.jobs import JobScreen


def cells(app, key):
    return [str(c) for c in app.table.get_row(key)]


def test_one_row_per_enabled_vm_with_state_and_tuning(host, cfg):
    cfg.write_text(CONFIG + "\n[3f1c7e2a-5b8d-4a6e-9c0f-2d4b6a8e0c13]\nname = rhel8-gpu\n"
                   "disabled = yes\n")
    app = make_app(host, cfg)

    async def script(pilot):
        assert list(app._rows) == [RT_UUID, PLAIN_UUID]      # config order, no disabled
        rt = cells(app, RT_UUID)
        assert rt[:6] == ["RedHawk-8.4-RT", "running", "RT", "15", "8-23,40-55", "disturbed"]
        assert "Real-Time RedHawk 8.4 — Configured for real-time" == rt[6]
        assert "running without kvmrt's tuning" in rt[7]
        assert app.table.get_row(RT_UUID)[5].style == "bold yellow"     # warning colour
        assert cells(app, PLAIN_UUID)[:6] == ["RedHawk-8.4", "shut off", "", "2", "2-3", "-"]
        text = screen_text(app)
        assert "kvmrt — " in text and str(cfg) in text
        assert "read-only" not in text

    drive(app, script)


def test_refresh_updates_cells_in_place(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("down")
        table = app.table
        row_keys = list(table.rows)
        cfg.write_text(CONFIG.replace("title = Plain RedHawk", "title = Renamed on disk"))
        app.refresh_vms()
        await wait_for(pilot, lambda: cells(app, PLAIN_UUID)[6] == "Renamed on disk")
        # The same row objects: cells updated, the table not rebuilt (no flicker).
        assert all(a is b for a, b in zip(table.rows, row_keys, strict=True))
        assert table.cursor_row == 1                 # the cursor stayed on its VM

    drive(app, script)


def test_an_ordinary_user_gets_a_read_only_dashboard(host, cfg):
    why = "this changes the host or libvirt and needs root; run it with sudo"
    app = make_app(host, cfg, read_only=why)

    async def script(pilot):
        assert f"read-only: {why}" in screen_text(app)
        await pilot.press("b")                        # disabled: nothing opens
        await pilot.pause(0.2)
        assert not isinstance(app.screen, JobScreen)
        await pilot.press("enter")                    # the menu says why, greys out boot
        await pilot.pause(0.2)
        assert f"read-only: {why}" in screen_text(app)
        options = app.screen.query_one("OptionList")
        disabled = {o.id for o in options._options if o.disabled}
        assert {"boot", "shutdown", "retune", "shutdown_force"} <= disabled

    drive(app, script)


def test_the_config_is_missing_or_broken(host, tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(f"[{RT_UUID}]\nname = x\ncpuset = 9999\n")
    app = make_app(host, bad)

    async def script(pilot):
        await wait_for(pilot, lambda: "9999" in screen_text(app))

    drive(app, script)


async def finished_job(pilot) -> JobScreen:
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.done, timeout=30)
    return screen


async def close_job(pilot) -> None:
    await pilot.press("escape")
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, JobScreen))


def test_boot_and_shut_down_a_vm_from_its_row(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("down", "b")
        job = await finished_job(pilot)
        assert job.ok and job.lines[0] == "RedHawk-8.4: started"
        assert "RedHawk-8.4: started" in screen_text(app)
        await close_job(pilot)
        await wait_for(pilot, lambda: cells(app, PLAIN_UUID)[1] == "running")

        await pilot.press("s")
        job = await finished_job(pilot)
        assert job.ok
        assert job.lines == ["RedHawk-8.4: shutting down", "RedHawk-8.4: stopped"]
        await close_job(pilot)
        await wait_for(pilot, lambda: cells(app, PLAIN_UUID)[1] == "shut off")

    drive(app, script)


def test_actions_from_the_row_menu(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("enter")                 # the menu of RedHawk-8.4-RT (running)
        options = app.screen.query_one("OptionList")
        enabled = [o.id for o in options._options if not o.disabled]
        assert enabled == ["retune", "shutdown", "shutdown_force", "console", "details"]
        options.highlighted = [o.id for o in options._options].index("retune")
        await pilot.press("enter")
        job = await finished_job(pilot)
        assert job.ok, job.lines
        assert job.lines[0] == "RedHawk-8.4-RT: retuned"
        assert any(line.startswith("  changed: ") for line in job.lines)
        await close_job(pilot)
        # kvmrt now journals the VM: its tuning is no longer "not started by kvmrt".
        await wait_for(pilot, lambda: "without kvmrt's tuning" not in cells(app, RT_UUID)[7])

    drive(app, script)


def test_boot_all_shows_the_plan_then_refuses_a_clean_boot(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("B")
        await click(pilot, "#every")
        await click(pilot, "#plan")
        job = await finished_job(pilot)
        assert job.job.dry_run and job.ok
        assert job.lines[0] == "RedHawk-8.4-RT: would be retuned"
        assert "RedHawk-8.4: would be started" in job.lines
        assert any("offline" in line or "affinity" in line for line in job.lines[1:])
        await close_job(pilot)
        assert (host / "run/kvmrt/journal.jsonl").exists() is False   # the plan changed nothing

        await click(pilot, "#clean")
        await click(pilot, "#go")
        job = await finished_job(pilot)
        assert not job.ok
        assert job.lines == ["error: --clean: nothing started, because VMs of the config "
                             "already run: RedHawk-8.4-RT; stop them first "
                             "(kvmrt-shutdown RedHawk-8.4-RT)"]
        assert "nothing started" in screen_text(app) and "Traceback" not in screen_text(app)

    drive(app, script)


def test_config_errors_stop_a_boot_with_the_validators_lines(host, cfg):
    cfg.write_text(CONFIG.replace("cpuset = 2-3", "cpuset = 9-10"))   # inside the rt VM's CPUs
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("down", "b")
        job = await finished_job(pilot)
        assert not job.ok
        assert job.lines[-1] == f"error: {cfg}: {len(job.lines) - 1} error(s); fix them first " \
                                "(kvmrt-edit-config)"
        assert all(line.startswith(f"{cfg}:") for line in job.lines[:-1])
        assert cells(app, PLAIN_UUID)[1] == "shut off"

    drive(app, script)


def test_shutdown_all_plan_and_force(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("S")
        await click(pilot, "#plan")
        job = await finished_job(pilot)
        assert job.lines == ["would shut down: RedHawk-8.4-RT"]   # nothing journaled yet
        await close_job(pilot)
        await click(pilot, "#force")
        await click(pilot, "#go")
        job = await finished_job(pilot)
        assert job.ok and "RedHawk-8.4-RT: stopped" in job.lines
        await close_job(pilot)
        await wait_for(pilot, lambda: cells(app, RT_UUID)[1] == "shut off")

    drive(app, script)


def test_runtime_details_list_the_threads_live(host, cfg):
    from kvmrt.dashboard.dialogs import DetailsScreen
    app = make_app(host, cfg)

    async def script(pilot):
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen))
        table = app.screen.query_one("#threads")
        await wait_for(pilot, lambda: table.row_count > 0)
        roles = {str(table.get_row(k)[3]) for k in table.rows}
        assert {"emulator", "vCPU 0", "vCPU 3"} <= roles
        assert "RedHawk-8.4-RT: running, rt" in screen_text(app)
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]

        await app.run_action("details_all")          # View > runtime details of all VMs
        await wait_for(pilot, lambda: isinstance(app.screen, DetailsScreen))
        await wait_for(pilot, lambda: "RedHawk-8.4: shut off" in screen_text(app))
        assert "no threads: not running" in screen_text(app)
        table = app.screen.query_one("#threads")
        await wait_for(pilot, lambda: table.row_count > 0)
        assert {str(table.get_row(k)[0]) for k in table.rows} == {"RedHawk-8.4-RT"}

    drive(app, script)


def test_differences_with_libvirt_then_resynchronize(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await app.run_action("sync_plan")
        job = await finished_job(pilot)
        assert job.ok and "RedHawk-8.4: out of step" in job.lines
        assert any(line.startswith("+") and "vcpupin" in line for line in job.lines)
        await close_job(pilot)
        await app.run_action("sync")
        job = await finished_job(pilot)
        assert "RedHawk-8.4: updated" in job.lines
        await close_job(pilot)
        await app.run_action("sync_plan")
        job = await finished_job(pilot)
        assert job.lines == ["RedHawk-8.4-RT: in step", "RedHawk-8.4: in step"]

    drive(app, script)
