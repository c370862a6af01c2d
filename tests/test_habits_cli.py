"""kvmrt talks like a system tool: progress as it happens, JSON for
scripts, errors that say what to do next (fixture host + libvirt's test
driver, as in test_boot_cli)."""

from __future__ import annotations

import json
import os
import subprocess

from kvmrt.config.file import load_config
from kvmrt.host import HostFS
from kvmrt.libvirt_sync.connection import connect
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.lifecycle import shutdown_vms
from test_boot_cli import BIN, EXAMPLE, NODE, host, kvmrt  # noqa: F401 (fixture)
from test_tuning import changed, tree


def test_boot_prints_each_step_as_it_begins(host):  # noqa: F811
    out = kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT").stdout.splitlines()
    steps = [line for line in out if line.startswith("RedHawk-8.4-RT: ")]
    assert steps == ["RedHawk-8.4-RT: tuning the host",
                     "RedHawk-8.4-RT: syncing the domain XML",
                     "RedHawk-8.4-RT: pinning its running threads",
                     "RedHawk-8.4-RT: checking the pinning of its threads",
                     "RedHawk-8.4-RT: retuned"]


def test_concurrent_shutdown_names_each_vm_as_it_stops(host):  # noqa: F811
    out = kvmrt(host, "kvmrt-shutdown", "--timeout", "5").stdout.splitlines()
    assert out[:2] == ["RedHawk-8.4-RT: shutting down", "RedHawk-8.4-RT: stopped"]
    assert out.count("RedHawk-8.4-RT: stopped") == 1


class DeafGuest(Domains):
    """libvirt's test driver with a guest that ignores the ACPI shutdown
    request (as a guest without ACPI support, or a hung one, does)."""

    def shutdown(self, uuid: str) -> None:
        self.state(uuid)


def test_shutdown_says_what_it_waits_for(threadripper):
    config = load_config(str(EXAMPLE))
    lines = []
    results, _restored = shutdown_vms(
        HostFS(threadripper), DeafGuest(connect(NODE)), config.vms[:1], force=True,
        timeout=0.5, sequential=False, say=lines.append)
    assert lines[0] == "RedHawk-8.4-RT: shutting down"
    assert lines[1].startswith("waiting for RedHawk-8.4-RT to stop (0 of 0.5 s)")
    assert lines[-1] == "RedHawk-8.4-RT: did not stop within 0.5 s; powered off"
    assert results[0].status == "powered off"


def test_boot_and_shutdown_results_as_json(host):  # noqa: F811
    proc = kvmrt(host, "kvmrt-boot", "--json", "RedHawk-8.4-RT")
    data = json.loads(proc.stdout)
    (vm,) = data["vms"]
    assert (vm["name"], vm["status"], vm["error"]) == ("RedHawk-8.4-RT", "retuned", None)
    assert vm["host_changes"] > 16 and isinstance(vm["notes"], list)
    assert "RedHawk-8.4-RT: tuning the host" in proc.stderr     # progress off stdout
    data = json.loads(kvmrt(host, "kvmrt-shutdown", "--json", "--timeout", "5").stdout)
    assert data["vms"] == [{"name": "RedHawk-8.4-RT", "status": "stopped", "error": None,
                            "notes": [], "host_changes": 0}]
    (restored,) = data["host"]
    assert restored["what"] == "restored" and restored["host_changes"] == vm["host_changes"]


def test_dry_run_plans_as_json_list_every_change_the_text_lists(host):  # noqa: F811
    before = tree(host)
    text = kvmrt(host, "kvmrt-boot", "--dry-run", "RedHawk-8.4-RT").stdout
    data = json.loads(kvmrt(host, "kvmrt-boot", "--dry-run", "--json", "RedHawk-8.4-RT").stdout)
    (vm,) = data["vms"]
    assert (vm["name"], vm["status"]) == ("RedHawk-8.4-RT", "would be retuned")
    assert vm["host_changes"] == len(vm["changes"]) > 16
    assert {"setting": "CPU 40", "key": "cpu:40", "from": "online", "to": "offline",
            "kernel": False} in vm["changes"]
    shown = [f"  {c['setting']}: {c['from']} -> {c['to']}" for c in vm["changes"]
             if not c["kernel"]]
    assert shown and all(line in text.splitlines() for line in shown)
    # Shutdown's plan: nothing to put back before a boot, the VM to stop.
    data = json.loads(kvmrt(host, "kvmrt-shutdown", "--dry-run", "--json").stdout)
    assert [v["name"] for v in data["vms"]] == ["RedHawk-8.4-RT"]
    assert data["host"][0]["what"] == "would be restored"
    assert changed(before, tree(host)) == []
    # After the boot, the shutdown's plan puts back what the boot changed.
    booted = json.loads(kvmrt(host, "kvmrt-boot", "--json", "RedHawk-8.4-RT").stdout)
    after_boot = tree(host)
    data = json.loads(kvmrt(host, "kvmrt-shutdown", "--dry-run", "--json").stdout)
    (restore,) = data["host"]
    assert restore["host_changes"] == len(restore["changes"]) == booted["vms"][0]["host_changes"]
    assert {"setting": "CPU 40", "key": "cpu:40", "from": "offline", "to": "online",
            "kernel": False} in restore["changes"]
    assert changed(after_boot, tree(host)) == []


def run(tool: str, *args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "LIBVIRT_DEFAULT_URI": NODE, "EDITOR": "true"}
    return subprocess.run([str(BIN / tool), *args], env=env, capture_output=True,
                          text=True, timeout=60, cwd=cwd)


READERS = ("kvmrt-stat", "kvmrt-show-config", "kvmrt-validate-config", "kvmrt-boot",
           "kvmrt-shutdown")


def test_a_mistyped_config_path_is_reported_as_missing(tmp_path):
    typo = str(tmp_path / "kvmrt.cgf")
    for tool in READERS + ("kvmrt-sync-config",):
        proc = run(tool, "-f", typo)
        assert proc.returncode == 1, tool
        assert f"{typo}: no such file" in proc.stderr, tool
        assert "No changes" not in proc.stdout + proc.stderr
    proc = run("kvmrt-stat", "-f", typo)
    assert f"kvmrt-import -f {typo}" in proc.stderr
    proc = run("kvmrt-edit-config", "-f", typo)
    assert f"{typo} does not exist" in proc.stderr
    assert "no changes" not in proc.stdout and not os.path.exists(typo)


def test_edit_config_leaves_no_copy_behind(tmp_path):
    cfg = tmp_path / "k.cfg"
    cfg.write_text(EXAMPLE.read_text())
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "LIBVIRT_DEFAULT_URI": NODE, "EDITOR": "true", "TMPDIR": str(tmpdir)}
    proc = subprocess.run([str(BIN / "kvmrt-edit-config"), "-f", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == "no changes\n"
    assert list(tmpdir.iterdir()) == []

