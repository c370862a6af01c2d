"""``kvmrt`` as a user runs it: the installed entry point in a real
terminal (tmux), as root and as an ordinary user; and Textual stays out
of the ``kvmrt-*`` tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import hostgen
from dashboard_util import CONFIG, NODE

BIN = Path(sys.executable).parent

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")


def test_textual_is_imported_only_by_kvmrt():
    def imported(module: str) -> str:
        return subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                              capture_output=True, text=True, check=True).stderr

    for tool in ("kvmrt.commands.stat", "kvmrt.commands.boot", "kvmrt.api"):
        assert "textual" not in imported(tool), tool
    assert " textual" in imported("kvmrt.dashboard.app")


def test_help_and_version():
    out = subprocess.run([str(BIN / "kvmrt"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "-f, --file FILE" in out.stdout and "-c, --connect" in out.stdout
    out = subprocess.run([str(BIN / "kvmrt"), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("kvmrt ")  # as every kvmrt tool


class Tmux:
    """One detached tmux session running a command; the screen as text."""

    def __init__(self, command: str, *, width: int = 160, height: int = 40) -> None:
        self.name = f"kvmrt-dash-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width),
                        "-y", str(height), command], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True).stdout

    def wait(self, text: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def resize(self, width: int, height: int) -> None:
        subprocess.run(["tmux", "resize-window", "-t", self.name, "-x", str(width),
                        "-y", str(height)], check=True)

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def shell_command(argv: list[str], env: dict[str, str], status: Path) -> str:
    """argv with env, its exit status written to ``status``, then the pane stays."""
    import shlex

    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    return (f"env {assigns} {' '.join(map(shlex.quote, argv))}; "
            f"echo $? > {shlex.quote(str(status))}; sleep 60")


def wait_file(path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.read_text().strip()


@needs_tmux
def test_kvmrt_in_a_real_terminal(threadripper, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(CONFIG)
    status = tmp_path / "status"
    env = {"KVMRT_FSROOT": str(threadripper), "TERM": "xterm-256color",
           "PATH": os.environ["PATH"]}
    term = Tmux(shell_command([str(BIN / "kvmrt"), "-f", str(cfg), "-c", NODE], env, status))
    try:
        screen = term.wait("RedHawk-8.4-RT")
        assert str(cfg) in screen and "read-only" not in screen
        assert "RedHawk-8.4" in screen and "shut off" in screen
        term.resize(100, 30)                                 # a smaller terminal
        time.sleep(0.5)
        assert len(term.wait("RedHawk-8.4-RT").splitlines()[0]) <= 100
        term.keys("c")                        # console: the UI is suspended, virsh runs
        term.wait("virsh -c test://")
        term.wait("NAME")                     # the test driver has no console: back at once
        term.keys("q")
        assert wait_file(status) == "0"
    finally:
        term.kill()


@needs_tmux
def test_an_ordinary_user_sees_why_it_is_read_only(monkeypatch):
    """As user nobody (setpriv), on a host tree and config nobody may read."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    top = Path(tempfile.mkdtemp(prefix="kvmrt-dash-"))
    try:
        top.chmod(0o755)
        root = hostgen.build_host(top / "host", hostgen.small_4c1t())
        cfg = top / "kvmrt.cfg"
        cfg.write_text(CONFIG.split("\n\n")[1])      # the non-rt VM alone
        for p in [top, *top.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (top / "out").mkdir()
        (top / "out").chmod(0o777)           # nobody's HOME; the shell writes the status
        status = top / "out/status"
        env = {"KVMRT_FSROOT": str(root), "TERM": "xterm-256color", "HOME": str(top / "out"),
               "PATH": os.environ["PATH"]}
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                str(BIN / "kvmrt"), "-f", str(cfg), "-c", NODE]
        term = Tmux(shell_command(argv, env, status))
        try:
            term.wait("read-only:")
            screen = term.wait("RedHawk-8.4")       # the banner may come before the table
            assert "read-only:" in screen and "needs root; run it with sudo" in screen
            term.keys("q")
            assert wait_file(status) == "0"
        finally:
            term.kill()
    finally:
        shutil.rmtree(top, ignore_errors=True)
