"""A disabled VM is hidden (SPEC 1.2): never booted, never blocking, shown
only with --all. The tools run as installed commands on the Threadripper
fixture host with libvirt's test driver (tests/data/node.xml: RedHawk-8.4-RT
runs, the disabled RedHawk-8.4 is shut off).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_tuning import changed, tree

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "threadripper-5975wx.cfg").read_text()
NODE = f"test://{ROOT / 'tests/data/node.xml'}"
BIN = Path(sys.executable).parent
# The example's disabled VM, gone stale: rt on CPUs this host does not have.
STALE = EXAMPLE.replace("nr_vcpus = 2\ndisabled = True",
                        "nr_vcpus = 2\nrt = True\ncpuset = 200-203\ndisabled = True")


def run(root: Path, cfg: Path, tool: str, *args: str, check: int = 0):
    env = {**os.environ, "KVMRT_FSROOT": str(root), "LIBVIRT_DEFAULT_URI": NODE}
    env.pop("KVMRT_STATE_DIR", None)
    proc = subprocess.run([str(BIN / tool), "-f", str(cfg), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == check, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


@pytest.fixture
def cfg(tmp_path):
    assert STALE != EXAMPLE
    path = tmp_path / "kvmrt.cfg"
    path.write_text(STALE)
    return path


def booted(out: str) -> list[str]:
    return [line.split(":")[0] for line in out.splitlines() if line.startswith("RedHawk")]


def test_boot_all_boots_every_enabled_vm_and_no_disabled_one(threadripper, cfg):
    before = tree(threadripper)
    out = run(threadripper, cfg, "kvmrt-boot", "--all", "--dry-run")
    assert booted(out.stdout) == ["RedHawk-8.4-RT"]
    assert "CPU 200" not in out.stderr                   # the stale VM blocks nothing
    cfg.write_text(EXAMPLE.replace("autostart = True", "autostart = False"))
    assert booted(run(threadripper, cfg, "kvmrt-boot", "--all", "--dry-run").stdout) == [
        "RedHawk-8.4-RT"]                                # regardless of autostart
    out = run(threadripper, cfg, "kvmrt-boot", "--dry-run")    # autostart VMs only
    assert booted(out.stdout) == [] and "no VM to boot" in out.stdout
    assert changed(before, tree(threadripper)) == []


def test_naming_a_disabled_vm_is_refused_before_anything_changes(threadripper, cfg):
    before = tree(threadripper)
    out = run(threadripper, cfg, "kvmrt-boot", "RedHawk-8.4-RT", "RedHawk-8.4", check=1)
    assert out.stderr.splitlines() == [
        f"{cfg}:22: error: RedHawk-8.4: disabled: a disabled VM is never booted; set "
        "disabled = false with kvmrt-edit-config to boot it",
        "kvmrt-boot: 1 disabled VM(s) named; nothing booted"]
    assert out.stdout == "" and changed(before, tree(threadripper)) == []


def test_clean_names_the_running_vms_and_how_to_stop_them(threadripper, cfg):
    out = run(threadripper, cfg, "kvmrt-boot", "--clean", "--dry-run", check=1)
    assert out.stderr == ("kvmrt-boot: --clean: nothing started, because VMs of the config "
                          "already run: RedHawk-8.4-RT; stop them first "
                          "(kvmrt-shutdown RedHawk-8.4-RT)\n")


def test_only_all_shows_a_disabled_vm(threadripper, cfg):
    def names(tool: str, *args: str, check: int = 0) -> list[str]:
        out = json.loads(run(threadripper, cfg, tool, "--json", *args, check=check).stdout)
        return [d.get("name") or d["vms"][0] for d in out] if isinstance(out, list) else \
            sorted({vm for d in out["diagnostics"] for vm in d["vms"]})

    assert names("kvmrt-stat") == ["RedHawk-8.4-RT"]
    assert names("kvmrt-stat", "--all") == ["RedHawk-8.4-RT", "RedHawk-8.4"]
    assert names("kvmrt-show-config") == ["RedHawk-8.4-RT"]
    assert names("kvmrt-validate-config") == ["RedHawk-8.4-RT"]
    assert "RedHawk-8.4" in names("kvmrt-validate-config", "--all", check=1)
    # Shutdown leaves a disabled VM alone unless it is named.
    out = run(threadripper, cfg, "kvmrt-shutdown", "--dry-run").stdout
    assert out.splitlines()[0] == "would shut down: RedHawk-8.4-RT"
