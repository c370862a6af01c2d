"""kvmrt installed like a system tool (issue 15): scripts/install-system
puts every command on a PATH, the man pages where man(1) finds them and
bash completion in place, for every user; --uninstall takes it all away.

The install goes to a temporary prefix, so the test never changes the
machine's /usr/local.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
PAGES = sorted(p.name for p in (ROOT / "man").iterdir() if p.suffix[1:].isdigit())


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.path.realpath(sys.executable).startswith("/root/"):
        pytest.skip("this .venv was made with a Python under /root; scripts/setup makes "
                    "it with /usr/bin/python3, which install-system needs")
    top = tmp_path_factory.mktemp("prefix")
    top.chmod(0o755)
    env = {**os.environ, "KVMRT_BASH_COMPLETION_DIR": str(top / "bash-completion"),
           "KVMRT_ZSH_COMPLETION_DIR": str(top / "zsh")}
    (top / "bash-completion").mkdir()
    done = run(str(ROOT / "scripts/install-system"), str(top / "usr"), env=env)
    assert done.returncode == 0, done.stderr
    yield top
    gone = run(str(ROOT / "scripts/install-system"), "--uninstall", str(top / "usr"), env=env)
    assert gone.returncode == 0, gone.stderr


def test_every_command_is_installed_and_tells_its_version(prefix: Path) -> None:
    for tool in TOOLS:
        done = run(str(prefix / "usr/bin" / tool), "--version", cwd="/")
        assert done.returncode == 0, (tool, done.stderr)
        assert done.stdout.strip() == f"{tool} {version('kvmrt')}"


def test_man_finds_every_page(prefix: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("man-db is not installed (scripts/setup installs it)")
    for page in PAGES:
        name, section = page.rsplit(".", 1)
        found = run("man", "-M", str(prefix / "usr/share/man"), "-w", section, name)
        assert found.returncode == 0, (page, found.stderr)
        assert Path(found.stdout.strip()).resolve() == ROOT / "man" / page


def test_an_ordinary_user_runs_the_read_only_tools(prefix: Path, threadripper: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the user nobody")
    closed = [p for p in ROOT.parents if not p.stat().st_mode & 0o001]
    if closed:
        pytest.skip(f"other users cannot enter {closed[0]}, which holds this checkout")
    # pytest's temporary directories are private to root: open the host tree's.
    for path in [threadripper, *threadripper.parents]:
        if path == Path("/tmp"):
            break
        path.chmod(path.stat().st_mode | 0o005)
    cmd = f"cd / && KVMRT_FSROOT={threadripper} {prefix}/usr/bin/kvmrt-show-host"
    done = run("su", "nobody", "-s", "/bin/sh", "-c", cmd)
    assert done.returncode == 0, done.stderr
    assert "node n3" in done.stdout


def test_bash_completes_vm_names_from_the_config(prefix: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text("[fde74e84-0e1b-404e-90e7-72101e79c48a]\nname = alpha\n\n"
                   "[aeec46cc-0638-4949-ac04-146b233194a9]\nname = beta\n")
    script = prefix / "bash-completion" / "kvmrt-boot"
    assert script.is_symlink()
    env = {**os.environ, "COMP_WORDS": f"kvmrt-boot -f {cfg} b", "COMP_CWORD": "3",
           "_KVMRT_BOOT_COMPLETE": "bash_complete"}
    done = run(str(prefix / "usr/bin/kvmrt-boot"), env=env)
    assert done.stdout.split() == ["plain,beta"]
    assert "_kvmrt_boot_completion" in script.read_text()
    # Completion is asked only of click commands: asking the daemon would start it.
    assert not (prefix / "bash-completion" / "kvmrt-gsd").exists()


def test_uninstall_removes_only_what_it_installed(tmp_path: Path) -> None:
    if os.path.realpath(sys.executable).startswith("/root/"):
        pytest.skip("this .venv was made with a Python under /root")
    usr = tmp_path / "usr"
    (usr / "bin").mkdir(parents=True)
    foreign = usr / "bin" / "kvmrt-stat"
    foreign.write_text("#!/bin/sh\necho someone else's\n")
    env = {**os.environ, "KVMRT_BASH_COMPLETION_DIR": str(tmp_path / "bc"),
           "KVMRT_ZSH_COMPLETION_DIR": str(tmp_path / "zsh")}
    installed = run(str(ROOT / "scripts/install-system"), str(usr), env=env)
    assert installed.returncode == 0
    assert "kvmrt-stat exists and is not a link; left alone" in installed.stderr
    assert (usr / "bin" / "kvmrt-boot").is_symlink()
    run(str(ROOT / "scripts/install-system"), "--uninstall", str(usr), env=env)
    assert not (usr / "bin" / "kvmrt-boot").exists()
    assert foreign.read_text() == "#!/bin/sh\necho someone else's\n"
    assert not list((usr / "share/man/man1").iterdir())
