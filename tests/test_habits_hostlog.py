"""The system log (kvmrt.hostlog): every host change kvmrt makes or restores
reaches the syslog socket as one line per VM and batch, with the user and
the command; with no syslog socket the commands stay silent and succeed.

The listener is a real AF_UNIX datagram socket, the kind journald and
syslog daemons listen on at /dev/log. The command-level test runs the
command in a mount namespace of its own (``unshare -m``) whose /dev is an
overlay of the host's /dev plus a ``log`` symlink to the listener, so the
host's /dev never changes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from kvmrt.hostlog import HostLog, command_line, who
from kvmrt.lifecycle import VmResult
from kvmrt.tuning import engine
from kvmrt.tuning.model import Action
from kvmrt.tuning.settings import CpuOnline
from test_boot_cli import BIN, EXAMPLE, NODE, host, kvmrt  # noqa: F401 (fixture)


@pytest.fixture
def listener(tmp_path):
    """A syslog socket: yields (path, read) where read() returns the lines."""
    path = tmp_path / "log.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)

    def read() -> list[str]:
        lines = []
        while True:
            try:
                lines.append(sock.recv(65536).decode())
            except BlockingIOError:
                return lines

    yield path, read
    sock.close()


def action(n: int) -> Action:
    return Action(CpuOnline(n), True, False)


def test_a_vm_line_has_the_counts_the_user_and_the_command(listener):
    path, read = listener
    log = HostLog(str(path), argv=["/usr/bin/kvmrt-boot", "-f", "my vms.cfg", "RT"],
                  environ={"SUDO_USER": "alice", "SUDO_UID": "1000"})
    log.vm(VmResult("RT", "started", actions=[action(40), action(41)]))
    log.vm(VmResult("ghost", "failed", error="no libvirt domain"))
    log.batch("restored", engine.Result(actions=[action(40)]))
    log.batch("recovered", engine.Result())      # nothing done: no line
    lines = read()
    pid = os.getpid()
    assert lines == [
        f"<30>kvmrt[{pid}]: RT: started; 2 host changes (CPUs online/offline 2) "
        "[user alice uid 1000; command: kvmrt-boot -f 'my vms.cfg' RT]",
        f"<28>kvmrt[{pid}]: ghost: failed; no host change; failed: no libvirt domain "
        "[user alice uid 1000; command: kvmrt-boot -f 'my vms.cfg' RT]",
        f"<30>kvmrt[{pid}]: restored: 1 host change (CPUs online/offline 1) "
        "[user alice uid 1000; command: kvmrt-boot -f 'my vms.cfg' RT]"]


def test_without_sudo_the_login_user_and_uid():
    assert who({}).endswith(f" uid {os.getuid()}")
    assert command_line(["/opt/kvmrt/bin/kvmrt-shutdown", "--force"]) == "kvmrt-shutdown --force"


def test_no_syslog_socket_is_silent(tmp_path, capfd):
    HostLog(str(tmp_path / "absent")).info("line")     # raises nothing, prints nothing
    assert capfd.readouterr() == ("", "")


def _namespaces_work() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _namespaces_work(), reason="needs root and unshare -m")
def test_boot_and_shutdown_tell_the_system_log(host, listener, tmp_path):  # noqa: F811
    path, read = listener
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    (upper / "log").symlink_to(path)

    def logged(tool: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "KVMRT_FSROOT": str(host), "LIBVIRT_DEFAULT_URI": NODE,
               "SUDO_USER": "alice", "SUDO_UID": "1000"}
        env.pop("KVMRT_STATE_DIR", None)
        script = ('mount -t overlay overlay -o "lowerdir=/dev,upperdir=$1,workdir=$2" /dev '
                  '&& shift 2 && exec "$@"')
        return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(upper),
                               str(work), str(BIN / tool), "-f", str(EXAMPLE), *args],
                              env=env, capture_output=True, text=True, timeout=120)

    proc = logged("kvmrt-boot", "RedHawk-8.4-RT")
    assert proc.returncode == 0, proc.stderr
    boot = read()
    assert len(boot) == 1 and "RedHawk-8.4-RT: retuned; " in boot[0]
    assert "host changes (CPUs online/offline 16, threads " in boot[0]
    assert boot[0].endswith("[user alice uid 1000; command: kvmrt-boot -f "
                            f"{EXAMPLE} RedHawk-8.4-RT]")
    assert boot[0].startswith("<30>kvmrt[")
    proc = logged("kvmrt-shutdown", "--timeout", "5")
    assert proc.returncode == 0, proc.stderr
    down = read()
    assert "RedHawk-8.4-RT: stopped; no host change" in down[0]
    assert "restored: " in down[1] and "CPUs online/offline 16" in down[1]
    assert not os.path.lexists("/dev/log")          # the host's /dev is as it was
