"""The File menu of the dashboard (new, open, clone, close), Edit ▸ Lock
configuration, and failures that must stay one line on the screen."""

from __future__ import annotations

import asyncio
import grp
import os
import pwd
import threading

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import (CONFIG, NODE, PLAIN_UUID, RT_UUID, click, drive, make_app,
                            screen_text, wait_for)
from kvmrt import api


def test_a_worker_failure_that_is_no_kvmrt_error_is_one_line_not_a_crash(host, cfg):
    # A broken host tree: the journal is a directory. Reading it raises an
    # OSError (no KvmrtError) in the refresh worker.
    (host / "run/kvmrt").mkdir(parents=True, exist_ok=True)
    (host / "run/kvmrt/journal.jsonl").mkdir()
    app = make_app(host, cfg)

    async def run():
        async with app.run_test(size=(180, 45)) as pilot:
            await wait_for(pilot, lambda: "error: unexpected IsADirectoryError" in
                           screen_text(app))
            assert "Traceback" not in screen_text(app)
            assert app.is_running and app.screen is app.screen_stack[0]
            (host / "run/kvmrt/journal.jsonl").rmdir()      # repaired: the rows come
            await wait_for(pilot, lambda: app.refreshes > 0)

    asyncio.run(run())


def test_two_workers_opening_libvirt_and_the_host_at_once_share_one(host, cfg):
    session = api.Session(path=str(cfg), uri=NODE, fs=api.HostFS(host))
    start = threading.Barrier(8)
    got: list = []

    def open_both() -> None:
        start.wait()
        got.append((session.domains, session.host))

    threads = [threading.Thread(target=open_both) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(d) for d, _ in got}) == 1 and len({id(h) for _, h in got}) == 1


ONLY_PLAIN = f"[{PLAIN_UUID}]\nname = RedHawk-8.4\nnr_vcpus = 2\ncpuset = 2-3\n"


async def menu(pilot, action: str) -> None:
    """F10, then the item, as a user picks it (it must be enabled)."""
    app = pilot.app
    await pilot.press("f10")
    await wait_for(pilot, lambda: app.screen.query("OptionList"))
    shown_menu = app.screen
    options = shown_menu.query_one("OptionList")
    item = next(o for o in options._options if o.id == action)
    assert not item.disabled, action
    options.highlighted = options._options.index(item)
    await pilot.pause()
    await pilot.press("enter")
    await wait_for(pilot, lambda: app.screen is not shown_menu)


def shown(app, selector: str) -> str:
    """The text a label of the top screen shows (wrapped on the screen)."""
    found = app.screen.query(selector)
    return str(found.first().content) if found else ""


async def answer(pilot, path) -> None:
    """Type a path into the open path dialog and confirm."""
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.query("#path"))
    screen.query_one("#path").value = str(path)
    ok = screen.query_one("#ok")
    # A button ignores clicks while it shows the last one (0.2 s) or works.
    await wait_for(pilot, lambda: not ok.disabled and not ok.has_class("-active"))
    await pilot.pause()
    await click(pilot, "#ok")


def test_file_new_creates_an_empty_config_and_switches_to_it(host, cfg, tmp_path):
    app = make_app(host, cfg)
    new = tmp_path / "sub-new.cfg"

    async def script(pilot):
        await menu(pilot, "file_new")
        await answer(pilot, new)
        await wait_for(pilot, lambda: app.session.path == str(new))
        assert new.read_text() == ""
        await wait_for(pilot, lambda: not app._rows and str(new) in screen_text(app))
        # New over an existing file: refused, the file untouched, the dialog says so.
        await menu(pilot, "file_new")
        await answer(pilot, cfg)
        await wait_for(pilot, lambda: "exists already; not overwritten" in
                       shown(app, "#path-error"))
        assert cfg.read_text() == CONFIG and app.session.path == str(new)

    drive(app, script)


def test_file_open_switches_the_dashboard_to_another_file(host, cfg, tmp_path):
    other = tmp_path / "other.cfg"
    other.write_text(ONLY_PLAIN)
    app = make_app(host, cfg)

    async def script(pilot):
        assert list(app._rows) == [RT_UUID, PLAIN_UUID]
        await menu(pilot, "file_open")
        await answer(pilot, tmp_path / "missing.cfg")
        await wait_for(pilot, lambda: "missing.cfg: does not exist" in
                       shown(app, "#path-error"))
        await answer(pilot, other)
        await wait_for(pilot, lambda: list(app._rows) == [PLAIN_UUID])
        assert app.session.path == str(other) and str(other) in screen_text(app)

    drive(app, script)


def test_file_clone_copies_the_config_never_over_a_file(host, cfg, tmp_path):
    cfg.chmod(0o600)
    copy = tmp_path / "clone.cfg"
    app = make_app(host, cfg)

    async def script(pilot):
        await menu(pilot, "file_clone")
        await answer(pilot, copy)
        await wait_for(pilot, lambda: copy.exists() and app.screen is app.screen_stack[0])
        assert copy.read_text() == CONFIG
        assert copy.stat().st_mode & 0o777 == 0o600        # a locked config stays locked
        assert app.session.path == str(cfg)                # the clone is not opened
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".clone.cfg.")
                    and not p.name.endswith(".lock")]      # no copy left behind
        copy.write_text("theirs\n")
        await menu(pilot, "file_clone")
        await answer(pilot, copy)
        await wait_for(pilot, lambda: "exists already; not overwritten" in
                       shown(app, "#path-error"))
        assert copy.read_text() == "theirs\n"

    drive(app, script)


def test_file_close_leaves_no_config_then_open_brings_it_back(host, cfg):
    app = make_app(host, cfg)

    async def script(pilot):
        await menu(pilot, "file_close")
        await wait_for(pilot, lambda: "No configuration is open" in screen_text(app))
        assert app.sub_title == "no configuration open"              # the header
        assert not app._rows and app.table.row_count == 0
        assert app.check_action("boot", ()) is None and app.check_action("edit_config", ()) is None
        await click(pilot, "#file_open")
        await answer(pilot, cfg)
        await wait_for(pilot, lambda: list(app._rows) == [RT_UUID, PLAIN_UUID])
        assert app.screen is app.screen_stack[0]

    drive(app, script)


def test_lock_configuration_says_what_it_changed(host, cfg):
    os.chown(cfg, 65534, 65534)
    cfg.chmod(0o644)
    app = make_app(host, cfg)
    user, group = pwd.getpwuid(65534).pw_name, grp.getgrgid(65534).gr_name

    async def script(pilot):
        await menu(pilot, "lock")
        await wait_for(pilot, lambda: app.screen.query("#lock"))
        assert f"now mode 0644, owner {user}:{group}" in shown(app, "#lock-plan")
        await click(pilot, "#lock")
        await wait_for(pilot, lambda: app.screen.outcome)
        assert app.screen.outcome == (f"{cfg}: mode 0644, owner {user}:{group} → mode 0600, "
                                     "owner root:root; only root may read or write it now")
        st = cfg.stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (0o600, 0, 0)
        assert cfg.read_text() == CONFIG
        await pilot.press("escape")
        await menu(pilot, "lock")
        await wait_for(pilot, lambda: app.screen.query("#lock"))
        await click(pilot, "#lock")
        await wait_for(pilot, lambda: app.screen.outcome)
        assert app.screen.outcome.endswith("already locked (mode 0600, owner root:root); "
                                          "nothing changed")

    drive(app, script)


def test_an_ordinary_user_may_open_files_but_not_create_clone_or_lock(host, cfg):
    app = make_app(host, cfg, read_only="this changes the host or libvirt and needs root")

    async def script(pilot):
        await pilot.press("f10")
        await wait_for(pilot, lambda: app.screen.query("OptionList"))
        options = app.screen.query_one("OptionList")
        disabled = {o.id for o in options._options if o.disabled}
        assert {"file_new", "file_clone", "lock"} <= disabled
        assert not {"file_open", "file_close", "edit_config"} & disabled

    drive(app, script)
