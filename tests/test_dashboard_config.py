"""The configuration dialog of the dashboard: forms, diagnostics that
follow each change, device assignment by IOMMU group, revert, apply (the
file and libvirt), and a config changed on disk meanwhile."""

from __future__ import annotations

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import CONFIG, PLAIN_UUID, click, drive, make_app, screen_text, wait_for
from kvmrt.dashboard.configure import ConfigScreen
from kvmrt.dashboard.draft import Draft




async def open_dialog(pilot) -> ConfigScreen:
    await pilot.press("e")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfigScreen))
    return pilot.app.screen


async def pick(pilot, screen: ConfigScreen, uuid: str) -> None:
    options = screen.query_one("#cfg-vms")
    options.focus()
    options.highlighted = [vm.uuid for vm in screen.draft.vms].index(uuid)
    await wait_for(pilot, lambda: screen.current == uuid)


async def type_into(pilot, screen: ConfigScreen, key: str, text: str) -> None:
    """Clear a field and type, as a user does."""
    field = screen.query_one(f"#f-{key}")
    field.focus()
    await pilot.pause()
    field.action_end()
    await pilot.press(*["backspace"] * len(field.value), *text)
    await pilot.pause()


def labels(screen: ConfigScreen) -> list[str]:
    return [str(o.prompt) for o in screen.query_one("#cfg-vms")._options]


def test_the_form_shows_each_vm(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        assert screen.query_one("#f-name").value == "RedHawk-8.4-RT"
        assert screen.query_one("#f-name").disabled        # it runs: no renaming
        assert screen.query_one("#f-auto").value is True
        assert screen.query_one("#f-nr_vcpus").disabled
        assert screen.query_one("#f-rt").value is True
        assert "→ CPUs 8-23,40-55" in screen_text(app)
        assert "0000:21:00.0" in screen_text(app)
        await pick(pilot, screen, PLAIN_UUID)
        assert screen.query_one("#f-name").value == "RedHawk-8.4"
        assert not screen.query_one("#f-name").disabled    # shut off: may be renamed
        assert screen.query_one("#f-nr_vcpus").value == "2"
        assert "→ CPUs 2-3" in screen_text(app)
        assert labels(screen) == [" W RedHawk-8.4-RT", "   RedHawk-8.4"]   # W: a warning

    drive(app, script)


def test_diagnostics_follow_every_change_and_apply_refuses_errors(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "cpuset", "9-10")
        assert screen.errors()
        text = screen_text(app)
        assert "RedHawk-8.4: cpuset" in text and "error" in text
        assert labels(screen)[1] == "*E RedHawk-8.4"
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert cfg.read_text() == CONFIG                   # refused: nothing written
        await type_into(pilot, screen, "cpuset", "9-1")    # a malformed set
        assert any("cpuset" in d.format() and "bad value" in d.format()
                   for d in screen.errors())
        assert "→ CPUs" not in screen_text(app)
        await pilot.press("ctrl+r")                         # revert
        assert screen.query_one("#f-cpuset").value == "2-3" and not screen.draft.changed()
        assert labels(screen)[1] == "   RedHawk-8.4"

    drive(app, script)


def test_apply_writes_the_file_and_syncs_libvirt(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "cpuset", "4-5")
        await type_into(pilot, screen, "title", "Edited in the dashboard")
        await click(pilot, "#f-autostart")
        assert not screen.errors() and labels(screen)[1] == "*  RedHawk-8.4"
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: not screen.draft.changed() and screen.applied)
        # Only the VM the edit changed is synced, as kvmrt-edit-config does:
        # RedHawk-8.4-RT, out of step with libvirt but untouched, is left alone.
        assert screen.applied == [
            f"{cfg}: saved",
            "RedHawk-8.4-RT: not changed by this edit, out of step with libvirt and left "
            "as it is: 'kvmrt-sync-config -r RedHawk-8.4-RT' takes libvirt's side, "
            "'kvmrt-sync-config RedHawk-8.4-RT' the config's",
            "RedHawk-8.4: updated"]
        text = cfg.read_text()
        assert "cpuset = 4-5\nautostart = true\n" in text
        assert "title = Edited in the dashboard\n" in text
        xml = app.session.domains.by_uuid(PLAIN_UUID).xml
        assert "<title>Edited in the dashboard</title>" in xml
        assert "cpuset='4-5'" in xml or "cpuset=\"4-5\"" in xml
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.table.get_row(PLAIN_UUID)[4] == "4-5")

    drive(app, script)


def test_a_config_changed_on_disk_is_never_overwritten(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "title", "mine")
        theirs = CONFIG.replace("title = Plain RedHawk", "title = theirs")
        cfg.write_text(theirs)                     # kvmrt-edit-config, meanwhile
        await click(pilot, "#apply")
        await wait_for(pilot, lambda: "changed on disk" in screen_text(app))
        assert cfg.read_text() == theirs
        await click(pilot, "#reload")
        await pilot.pause()
        await pick(pilot, screen, PLAIN_UUID)
        assert screen.query_one("#f-title").value == "theirs"
        assert not screen.draft.changed()

    drive(app, script)


def test_nr_vcpus_auto_switch(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        await click(pilot, "#f-auto")
        assert screen.draft.find(PLAIN_UUID).get("nr_vcpus") == "auto"
        assert screen.query_one("#f-nr_vcpus").disabled

    drive(app, script)


def test_an_ordinary_user_may_look_but_not_apply(host, cfg):
    why = "this changes the host or libvirt and needs root; run it with sudo"
    app = make_app(host, cfg, read_only=why)

    async def script(pilot):
        screen = await open_dialog(pilot)
        assert f"read-only: {why}" in screen_text(app)
        await pick(pilot, screen, PLAIN_UUID)
        await type_into(pilot, screen, "title", "mine")
        assert screen.query_one("#apply").disabled
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert cfg.read_text() == CONFIG

    drive(app, script)


COMMENTED = """\
# lab host, rack 3 (kept by every rewrite)
[fde74e84-0e1b-404e-90e7-72101e79c48a]
name = first
; the old value was cpuset = 1
cpuset  =  2-3
rt = yes

# the second VM
[aeec46cc-0638-4949-ac04-146b233194a9]
name = second
title = Second
"""


def test_the_dialog_changes_only_the_lines_of_what_the_user_changed():
    draft = Draft.of(COMMENTED)
    first, second = draft.vms
    first.set("cpuset", "4-5")
    second.set("title", "")
    assert draft.text() == COMMENTED.replace("cpuset  =  2-3", "cpuset  =  4-5").replace(
        "title = Second\n", "")


def test_reordering_in_the_dialog_moves_each_vm_with_its_comments():
    draft = Draft.of(COMMENTED)
    draft.move("aeec46cc-0638-4949-ac04-146b233194a9", -1)
    assert draft.text() == (
        "# lab host, rack 3 (kept by every rewrite)\n"
        "# the second VM\n[aeec46cc-0638-4949-ac04-146b233194a9]\nname = second\n"
        "title = Second\n\n"
        "[fde74e84-0e1b-404e-90e7-72101e79c48a]\nname = first\n"
        "; the old value was cpuset = 1\ncpuset  =  2-3\nrt = yes\n")


def test_a_keystroke_updates_the_vm_list_in_place(host, cfg):
    """Typing marks the VM at once, without rebuilding the list (a 100-VM
    config stays responsive; the highlight stays on the VM)."""
    app = make_app(host, cfg)

    async def script(pilot):
        screen = await open_dialog(pilot)
        await pick(pilot, screen, PLAIN_UUID)
        before = list(screen.query_one("#cfg-vms").options)
        await type_into(pilot, screen, "title", "Renamed")
        assert labels(screen) == [" W RedHawk-8.4-RT", "*  RedHawk-8.4"]
        after = screen.query_one("#cfg-vms").options
        assert all(a is b for a, b in zip(after, before, strict=True))
        assert screen.query_one("#cfg-vms").highlighted == 1

    drive(app, script)
