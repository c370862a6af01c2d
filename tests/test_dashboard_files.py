"""The File menu of the dashboard (new, open, clone, close), Edit ▸ Lock
configuration, and failures that must stay one line on the screen."""

from __future__ import annotations

import asyncio
import threading

from dashboard_util import cfg, host  # noqa: F401  (fixtures)
from dashboard_util import NODE, drive, make_app, screen_text, wait_for
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
