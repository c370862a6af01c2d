"""What the dashboard tests share: a host tree, a config, libvirt's test
driver, and a way to drive the app with Textual's pilot and read its screen.

libvirt's test driver keeps its state per connection; the app keeps one
connection (``api.Session``), so a VM booted from the dashboard stays
running for the rest of that test.
"""

from __future__ import annotations

import asyncio
import html
import os
import re
import signal
from pathlib import Path
from typing import Awaitable, Callable

import pytest

from kvmrt import api
from kvmrt.dashboard.app import Dashboard

ROOT = Path(__file__).resolve().parent.parent
NODE = f"test://{ROOT / 'tests/data/node.xml'}"
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"
PLAIN_UUID = "aeec46cc-0638-4949-ac04-146b233194a9"

# RedHawk-8.4-RT runs (in the test driver and on the Threadripper tree);
# RedHawk-8.4 is shut off: enabled here, non-rt, so it can be booted.
CONFIG = f"""\
[{RT_UUID}]
name = RedHawk-8.4-RT
title = Real-Time RedHawk 8.4
description = Configured for real-time
nr_vcpus = auto
cpuset = n1,n2
rt = True
autostart = True
pcidevs = 0000:21:00.0

[{PLAIN_UUID}]
name = RedHawk-8.4
title = Plain RedHawk
nr_vcpus = 2
cpuset = 2-3
"""


def screen_text(app) -> str:
    """The visible screen as plain text (what a user reads)."""
    svg = app.export_screenshot()
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg, flags=re.S)
    return html.unescape("".join(re.sub(r"<[^>]+>", "", t) for t in texts)).replace(
        "\xa0", " ")


async def wait_for(pilot, condition: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app run until ``condition()`` holds (workers are threads); the
    timeout is generous because CI machines can be slow and loaded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def drive(app: Dashboard, script: Callable[..., Awaitable[None]],
          size: tuple[int, int] = (180, 45)) -> None:
    async def run() -> None:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: app.refreshes or not app.session.config_exists()
                           or app.screen is not app.screen_stack[0])
            await script(pilot)

    asyncio.run(run())


def make_app(root: Path, cfg: Path, *, read_only: str | None = None,
             uri: str = NODE) -> Dashboard:
    return Dashboard(api.Session(path=str(cfg), uri=uri, fs=api.HostFS(root)),
                     read_only=read_only)


def stop_watcher(root: Path) -> None:
    """End the IRQ watcher kvmrt-boot starts for an rt VM with devices."""
    pidfile = root / "run/kvmrt/watcher.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture
def host(threadripper, monkeypatch):
    """The Threadripper tree as KVMRT_FSROOT, its journal inside it."""
    monkeypatch.setenv("KVMRT_FSROOT", str(threadripper))
    monkeypatch.delenv("KVMRT_STATE_DIR", raising=False)
    yield threadripper
    stop_watcher(threadripper)


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text(CONFIG)
    return path
