"""kvmrt for scripts and monitoring, and beside the rest of the host:
kvmrt-stat --check, sync-config --json, the vfio IRQ watcher's health,
libvirt-guests and libvirt's autostart flag, the irqbalance line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import hostcheck_fixtures as F
from kvmrt.config.file import load_config
from kvmrt.libvirt_sync.connection import connect
from test_boot_cli import BIN, EXAMPLE, NODE, host, kvmrt, pin_like_libvirt  # noqa: F401
from test_validate_host import TR_CFG, checks, host as rt_host  # noqa: F401

CENTOS = ("\n[7b2e9d4c-1a3f-4e5b-8c7d-6f0a1b2c3d4e]\nname = centos7-legacy\n"
          "nr_vcpus = 2\nautostart = True\n")


def run(root, tool: str, cfg, *args: str, code: int):
    env = {**os.environ, "KVMRT_FSROOT": str(root), "LIBVIRT_DEFAULT_URI": NODE}
    env.pop("KVMRT_STATE_DIR", None)
    proc = subprocess.run([str(BIN / tool), "-f", str(cfg), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    return proc


def test_stat_check_speaks_like_a_monitoring_plugin(host, tmp_path):  # noqa: F811
    cfg = tmp_path / "k.cfg"
    cfg.write_text(EXAMPLE.read_text() + CENTOS)
    out = run(host, "kvmrt-stat", cfg, "--check", code=1).stdout.splitlines()
    assert out[0].startswith("CRITICAL: 2 problem(s): RedHawk-8.4-RT: tuning disturbed: ")
    assert len(out) == 3 and out[0].endswith(out[1])
    assert out[1].startswith("RedHawk-8.4-RT: tuning disturbed: running without kvmrt's tuning")
    assert out[2] == "centos7-legacy: autostart VM is shut off"
    data = json.loads(run(host, "kvmrt-stat", cfg, "--check", "--json", code=1).stdout)
    assert data["status"] == "CRITICAL" and data["problems"] == out[1:]

    kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")      # starts the vfio IRQ watcher
    pin_like_libvirt(host)
    out = kvmrt(host, "kvmrt-stat", "--check").stdout
    assert out == "OK: every running rt VM is tuned, every autostart VM runs\n"
    assert json.loads(kvmrt(host, "kvmrt-stat", "--check", "--json").stdout) == {
        "status": "OK", "problems": []}


def _alive(pid: int) -> bool:
    """Not yet exited: present in /proc and not a zombie."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_a_dead_watcher_reaches_kvmrt_stat(host):  # noqa: F811
    kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")
    pin_like_libvirt(host)
    state = host / "run/kvmrt"
    pid = int((state / "watcher.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    # kill(2) returns before the process has exited (and let go of its lock)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    (state / "watcher.error").write_text("OSError: [Errno 5] Input/output error\n")
    out = kvmrt(host, "kvmrt-stat", "--check", check=1).stdout.splitlines()
    assert out[1] == ("the vfio IRQ watcher is not running (it failed: OSError: [Errno 5] "
                      "Input/output error); kvmrt-boot starts it again (under systemd: "
                      "systemctl status kvmrt-vfio-watch.service)")
    kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")      # starts it again
    assert kvmrt(host, "kvmrt-stat", "--check").stdout.startswith("OK: ")


def test_sync_config_query_as_json(host, tmp_path):  # noqa: F811
    cfg = tmp_path / "k.cfg"
    cfg.write_text(EXAMPLE.read_text().replace("nr_vcpus = auto", "nr_vcpus = 4", 1))
    proc = run(host, "kvmrt-sync-config", cfg, "-q", "--json", "RedHawk-8.4-RT", code=1)
    (vm,) = json.loads(proc.stdout)
    assert (vm["vm"], vm["status"]) == ("RedHawk-8.4-RT", "out of step")
    assert any(line.startswith("+  <vcpu ") and line.endswith(">4</vcpu>")
               for line in vm["diff"].splitlines())
    assert "would remove <cputune><vcpupin vcpu='4'>" in vm["messages"][0]


def test_boot_gives_the_irqbalance_line(host):  # noqa: F811
    err = kvmrt(host, "kvmrt-boot", "--dry-run").stderr
    assert "IRQBALANCE_BANNED_CPULIST=8-23,40-55\n" in err


def test_validate_host_gives_the_irqbalance_line(rt_host):  # noqa: F811
    found = checks(rt_host(F.tuned(tasks={1: "systemd", 900: "irqbalance"})))
    assert "IRQBALANCE_BANNED_CPULIST=8-23,40-55 " in found["irqbalance"].finding.remedy


GUESTS_WANTS = "etc/systemd/system/multi-user.target.wants/libvirt-guests.service"


def test_libvirt_guests_that_resumes_and_suspends_is_warned(rt_host):  # noqa: F811
    root = rt_host(F.tuned())
    assert checks(root)["libvirt-guests"].finding.message == \
        "libvirt-guests.service is not enabled"
    (root / GUESTS_WANTS).parent.mkdir(parents=True)
    (root / GUESTS_WANTS).symlink_to("/usr/lib/systemd/system/libvirt-guests.service")
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/libvirt-guests").write_text("# defaults\n#ON_BOOT=ignore\n")
    f = checks(root)["libvirt-guests"].finding
    assert f.status.value == "WARN"
    assert "ON_BOOT=start starts the VMs that ran at the last shutdown" in f.message
    assert "ON_SHUTDOWN=suspend saves running VMs (managedsave)" in f.message
    assert f.remedy.startswith("set ON_BOOT=ignore and ON_SHUTDOWN=shutdown in "
                               "/etc/default/libvirt-guests")
    (root / "etc/default/libvirt-guests").write_text(
        'ON_BOOT=ignore\nON_SHUTDOWN="shutdown"  # kvmrt\n')
    assert checks(root)["libvirt-guests"].finding.status.value == "PASS"
    assert "libvirt-guests" not in checks(root, config=None)


def test_libvirt_autostart_of_a_managed_vm_is_warned(rt_host, tmp_path):  # noqa: F811
    """libvirt's autostart flag cannot be stored in the test driver's node
    file: the check runs in this process on a connection where it is set."""
    from kvmrt.host import HostFS
    from kvmrt.hostcheck.context import Context
    from kvmrt.hostcheck.guests import libvirt_autostart
    from kvmrt.hostcheck.machine import LibvirtSession, Machine
    from kvmrt.host import read_host

    root = rt_host(F.tuned())
    session = LibvirtSession(NODE)
    conn = session.connection()
    fs = HostFS(root)
    ctx = Context(fs, Machine(fs), read_host(fs), config=load_config(str(TR_CFG)),
                  libvirt=session)
    assert libvirt_autostart(ctx).status.value == "PASS"
    conn.lookupByName("RedHawk-8.4-RT").setAutostart(1)
    f = libvirt_autostart(ctx)
    assert f.status.value == "WARN" and "libvirtd starts RedHawk-8.4-RT by itself" in f.message
    assert f.remedy.startswith("virsh autostart --disable RedHawk-8.4-RT")
    conn.lookupByName("RedHawk-8.4").setAutostart(1)    # disabled in the config: not managed
    assert libvirt_autostart(ctx).message.startswith("libvirtd starts RedHawk-8.4-RT by")
    session.close()
    assert connect  # the same opener the commands use


def test_install_service_writes_the_watcher_unit(tmp_path):
    from test_service import ROOT
    subprocess.run([str(ROOT / "scripts/install-service"), str(BIN), str(tmp_path)],
                   capture_output=True, check=True)
    unit = (tmp_path / "kvmrt-vfio-watch.service").read_text()
    python = (BIN / "kvmrt-boot").resolve().read_text().splitlines()[0][2:]
    assert f"ExecStart={python} -m kvmrt.tuning.watcher" in unit
    assert "PartOf=kvmrt.service" in unit.splitlines()
    assert not any(line.startswith("After=") and "kvmrt.service" in line.split("=")[1].split()
                   for line in unit.splitlines())      # kvmrt-boot starts it while starting
    assert (tmp_path / "kvmrt-vfio-watch.service").stat().st_mode & 0o777 == 0o644
