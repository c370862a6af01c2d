"""kvmrt-gsd, the host side for every VM, as a real process: it finds the
VMs' channel sockets in the state directory, connects, answers, marks
connections for kvmrt-stat, stays off shielded CPUs, and stops (sockets
removed) through the same functions kvmrt-boot and kvmrt-shutdown call.
QEMU's listening socket is played by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kvmrt.config.file import parse_config
from kvmrt.guestsvc import daemon, protocol as proto, service
from kvmrt.host import HostFS, read_host

ROOT = Path(__file__).resolve().parent.parent
GS_UUID = "00000000-0000-4000-8000-0000000000a1"
RT_UUID = "00000000-0000-4000-8000-0000000000a2"
CONFIG = f"""[{GS_UUID}]
name = gs-vm
guest_services = yes

[{RT_UUID}]
name = rt-vm
cpuset = 1
rt = yes
"""


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")


@pytest.fixture
def state(monkeypatch):
    # Unix socket paths are at most 107 bytes: pytest's tmp_path is too deep.
    tmp_path = Path(tempfile.mkdtemp(prefix="gsd", dir="/tmp"))
    monkeypatch.setenv("KVMRT_STATE_DIR", str(tmp_path / "state"))
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(CONFIG)
    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(str(tmp_path / "log.sock"))
    log.settimeout(5)
    yield tmp_path, cfg, log
    service.stop_for(parse_config(CONFIG), set())
    log.close()
    shutil.rmtree(tmp_path)


def start_daemon(cfg: Path, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kvmrt.guestsvc.gsd", "-f", str(cfg), "--no-trace",
         "--syslog-socket", str(tmp_path / "log.sock")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_daemon_serves_a_vm_socket_and_stops_with_shutdown(state):
    tmp_path, cfg, log = state
    config = parse_config(CONFIG)
    service.prepare(config.vms)
    gs_dir = tmp_path / "state/gs"
    qemu = socket.socket(socket.AF_UNIX)          # QEMU's side of the channel
    qemu.bind(str(gs_dir / f"{GS_UUID}.sock"))
    qemu.listen(1)
    proc = start_daemon(cfg, tmp_path)
    qemu_conns = []
    try:
        qemu.settimeout(10)
        conn, _ = qemu.accept()                   # the daemon connected
        qemu_conns.append(conn)
        conn.sendall(b"gs1 3 log_msg 17 0 hello\ngs1 4 ping 18 0 c\n")
        conn.settimeout(5)
        replies = b""
        while replies.count(b"\n") < 2:
            replies += conn.recv(4096)
        first, second = (proto.parse_reply(r) for r in replies.splitlines())
        assert (first.seq, first.status, second.seq, second.text) == (3, "ok", 4, "c")
        assert b"LOG_MSG_HOST vm=gs-vm uuid=" + GS_UUID.encode() in log.recv(4096)
        assert wait_for(lambda: daemon.connection_state(GS_UUID) == "connected")
        assert daemon.connection_state(RT_UUID) == "off"
        pid = daemon.daemon_pid()
        assert pid == proc.pid
        # Shutdown while the VM still runs keeps everything.
        assert service.stop_for(config, {GS_UUID}) == []
        assert proc.poll() is None
        notes = service.stop_for(config, set())
        assert notes == ["guest services: stopped the host side (kvmrt-gsd)"]
        assert proc.wait(5) == 0
        assert not (gs_dir / f"{GS_UUID}.sock").exists()
        assert not list(gs_dir.glob("*.connected")) and daemon.daemon_pid() is None
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)
        for conn in qemu_conns:
            conn.close()
        qemu.close()


def test_daemon_stays_off_the_cpus_rt_vms_shield(state):
    tmp_path, cfg, _ = state
    online = read_host(HostFS()).topology.online_cpus
    if 1 not in online or len(online) < 2:
        pytest.skip("needs CPUs 0 and 1 online")
    service.prepare(parse_config(CONFIG).vms)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_for(daemon.daemon_pid)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        allowed = next(l for l in status.splitlines() if l.startswith("Cpus_allowed_list"))
        assert 1 not in os.sched_getaffinity(proc.pid)
        assert os.sched_getaffinity(proc.pid) == online - {1}, allowed
    finally:
        proc.terminate()
        proc.wait(5)


def test_one_daemon_per_host(state):
    tmp_path, cfg, _ = state
    service.prepare(parse_config(CONFIG).vms)
    first = start_daemon(cfg, tmp_path)
    try:
        wait_for(daemon.daemon_pid)
        second = start_daemon(cfg, tmp_path)
        assert second.wait(10) == 0          # found the lock held, left at once
        assert daemon.daemon_pid() == first.pid
    finally:
        first.terminate()
        first.wait(5)


def test_boot_starts_the_daemon_only_for_running_vms_with_guest_services(state):
    _tmp_path, cfg, _ = state
    config = parse_config(CONFIG)
    service.prepare(config.vms)
    assert service.start_for(config, str(cfg), {RT_UUID}) == []
    assert daemon.daemon_pid() is None
    assert service.start_for(config, str(cfg), {GS_UUID.upper()}) == []
    pid = daemon.daemon_pid()
    assert pid is not None
    assert service.start_for(config, str(cfg), {GS_UUID}) == [] and daemon.daemon_pid() == pid


def test_install_service_installs_the_guest_services_unit(tmp_path):
    bindir = Path(sys.executable).parent
    if not (bindir / "kvmrt-gsd").exists():
        pytest.skip("kvmrt-gsd is not installed in this environment (pip install -e .)")
    out = subprocess.run([str(ROOT / "scripts/install-service"), str(bindir), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    unit = (tmp_path / "kvmrt-gs.service").read_text()
    assert f"ExecStart={bindir.resolve()}/kvmrt-gsd -f /etc/kvmrt.cfg" in unit
    assert "PartOf=kvmrt.service" in unit and "Before=kvmrt.service" in unit
    assert "WantedBy=kvmrt.service" in unit and "kvmrt-gs.service (not enabled" in out


def test_shutdown_with_a_config_without_guest_services_leaves_the_daemon(state):
    """Another config's kvmrt-shutdown (no VM with guest services) is none of
    the daemon's business."""
    tmp_path, cfg, _ = state
    service.prepare(parse_config(CONFIG).vms)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_for(daemon.daemon_pid)
        other = parse_config(f"[{RT_UUID}]\nname = rt-vm\n")
        assert service.stop_for(other, set()) == []
        assert daemon.daemon_pid() == proc.pid and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(5)


def test_shutdown_of_one_config_keeps_the_daemon_for_another_configs_running_vm(state):
    """Two configs on one host: shutting down the last guest-services VM of
    one must not cut off a running VM of the other."""
    tmp_path, cfg, _ = state
    config = parse_config(CONFIG)
    service.prepare(config.vms)
    other_uuid = "00000000-0000-4000-8000-0000000000b1"
    gs_dir = tmp_path / "state/gs"
    qemu = socket.socket(socket.AF_UNIX)          # the other config's VM, running
    qemu.bind(str(gs_dir / f"{other_uuid}.sock"))
    qemu.listen(1)
    proc = start_daemon(cfg, tmp_path)
    try:
        wait_for(daemon.daemon_pid)
        assert service.stop_for(config, {other_uuid}) == []
        assert daemon.daemon_pid() == proc.pid and proc.poll() is None
        # once that VM stops too, the next shutdown stops the daemon
        assert service.stop_for(config, set()) == [
            "guest services: stopped the host side (kvmrt-gsd)"]
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)
        qemu.close()


def test_stat_says_whether_a_running_vms_guest_services_are_connected(state):
    """kvmrt-stat, on libvirt's test driver (its domain 'test' runs): the VM's
    channel socket exists but no kvmrt-gsd serves it: 'listening'; then
    served: 'connected'; a VM without guest services shows nothing."""
    tmp_path, _cfg, _log = state
    uuid = "6695eb01-f6a4-8304-79aa-97f2502e193f"      # test:///default's running 'test'
    cfg = tmp_path / "stat.cfg"
    cfg.write_text(f"[{uuid}]\nname = test\nguest_services = yes\n")
    gs_dir = tmp_path / "state/gs"
    gs_dir.mkdir(parents=True)
    qemu = socket.socket(socket.AF_UNIX)
    qemu.bind(str(gs_dir / f"{uuid}.sock"))
    qemu.listen(1)
    qemu.settimeout(10)
    stat = [str(Path(sys.executable).parent / "kvmrt-stat"), "-f", str(cfg), "-c",
            "test:///default"]
    try:
        shown = subprocess.run(stat, capture_output=True, text=True, check=True).stdout
        assert "    guest services: listening\n" in shown
        proc = start_daemon(cfg, tmp_path)
        conn, _ = qemu.accept()
        wait_for(lambda: daemon.connection_state(uuid) == "connected")
        shown = subprocess.run(stat + ["--json"], capture_output=True, text=True,
                               check=True).stdout
        assert '"guest_services": "connected"' in shown
        proc.terminate()
        proc.wait(5)
        conn.close()
        cfg.write_text(f"[{uuid}]\nname = test\n")
        shown = subprocess.run(stat, capture_output=True, text=True, check=True).stdout
        assert "guest services" not in shown
    finally:
        qemu.close()
