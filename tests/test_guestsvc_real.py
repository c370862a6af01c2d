"""Guest services end to end on the real libvirtd (issue 16).

The test builds an initramfs (static busybox, kvmrt-gs built statically
from guest/*.c, the virtio console modules of the simulated host's kernel),
defines a direct-boot TCG domain (``<domain type='qemu'>``, no cpuset, not
rt: no host CPU changes), sets ``guest_services = yes`` in a config and
syncs it through kvmrt, starts kvmrt-gsd in a private mount namespace with
its own tracefs mount and a syslog socket the test listens on, boots the VM
with kvmrt-boot, and checks on the host: the guest's log lines in the
syslog socket in the guest's order with host timestamps, the ``*_HOST``
records in the trace buffer, ping's reply; then kvmrt-shutdown stops the
host side and removes the socket. Takes 30-90 s under TCG.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIMHOST = Path("/var/lib/kvmrt-simhost")
BUSYBOX = SIMHOST / "busybox/bin/busybox"
KERNEL = SIMHOST / "rt/vmlinuz"
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "virtio_console")
URI = "qemu:///system"
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
for m in MODULES; do [ -e /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko; done
gs() { /bin/kvmrt-gs --timeout 5 "$@"; }
i=0
until gs available; do i=$((i+1)); [ $i -gt 90 ] && echo "GS: never available"; sleep 1; done
echo "GS: available after $i s"
reply=$(gs ping e2e-cookie)
gs log_msg "first message" log_msg "second message"
gs log_msg "ping-reply: $reply"
gs trace_log_data hex:00017f
gs trace_flush 2; echo "GS: trace_flush status $?"
gs log_msg "last message"
echo "GS: done"
[ -e /sys/kernel/tracing/trace_marker ] && echo "GS: guest trace_marker yes"
grep _GUEST /sys/kernel/tracing/trace | sed 's/^/GUEST-TRACE: /'
echo "GS: trace dumped"
while true; do sleep 60; done
"""


def need(condition: bool, why: str) -> None:
    if not condition:
        pytest.skip(why)


def module_files() -> dict[str, Path]:
    found = {}
    for moddir in sorted((SIMHOST / "rt/lib/modules").glob("*")):
        for name in MODULES:
            for ext in (".ko", ".ko.xz"):
                hits = list(moddir.rglob(f"{name}{ext}"))
                if hits and name not in found:
                    found[name] = hits[0]
    return found


def build_initramfs(work: Path) -> Path:
    rootfs = work / "rootfs"
    for d in ("bin", "dev", "proc", "sys", "lib/modules", "tmp"):
        (rootfs / d).mkdir(parents=True)
    shutil.copy(BUSYBOX, rootfs / "bin/busybox")
    subprocess.run(["gcc", "-O2", "-static", "-o", str(rootfs / "bin/kvmrt-gs"),
                    str(ROOT / "guest/kvmrt-gs.c"), str(ROOT / "guest/libkvmrtgs.c")],
                   check=True)
    for name, path in module_files().items():   # busybox insmod may not read .xz
        data = path.read_bytes()
        (rootfs / f"lib/modules/{name}.ko").write_bytes(
            lzma.decompress(data) if path.suffix == ".xz" else data)
    init = rootfs / "init"
    init.write_text(INIT.replace("MODULES", " ".join(MODULES)))
    init.chmod(0o755)
    out = work / "initrd.cpio"
    out.write_bytes(newc_archive(rootfs))
    return out


def _newc_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
                ino: int = 0) -> bytes:
    """One entry of a cpio "newc" archive (what the kernel unpacks)."""
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08x" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def newc_archive(rootfs: Path) -> bytes:
    """``rootfs`` as an initramfs, with /dev/console (no cpio on this host)."""
    parts = [_newc_entry("dev/console", 0o020600, rdev=(5, 1), ino=1)]
    for n, path in enumerate(sorted(rootfs.rglob("*")), start=2):
        rel, st = str(path.relative_to(rootfs)), path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else b""
        parts.append(_newc_entry(rel, st.st_mode, data, ino=n))
    parts.append(_newc_entry("TRAILER!!!", 0))
    return b"".join(parts)


def domain_xml(name: str, uuid: str, work: Path) -> str:
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <uuid>{uuid}</uuid>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{work}/vmlinuz</kernel>
    <initrd>{work}/initrd.cpio</initrd>
    <cmdline>console=ttyS0 quiet panic=-1</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='file'><source path='{work}/console.log'/><target port='0'/></serial>
    <console type='file'><source path='{work}/console.log'/><target type='serial' port='0'/></console>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def run(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, env=env, timeout=timeout)


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def record_fields(record: str) -> dict[str, str]:
    """The fields before the free text (``msg=``, ``data=``… take the rest)."""
    head = re.split(r" (?:msg|data|cookie|error|arg)=", record, maxsplit=1)[0]
    return dict(re.findall(r"(\w+)=(\S*)", head))


@pytest.fixture
def e2e():
    need(os.geteuid() == 0, "needs root")
    need(BUSYBOX.exists() and KERNEL.exists(), "no simulated host (scripts/setup-simhost)")
    need(set(module_files()) >= {"virtio_console"}, "no virtio_console module")
    need(shutil.which("gcc") is not None, "needs gcc")
    need((BIN / "kvmrt-gsd").exists(), "kvmrt-gsd is not installed (pip install -e .)")
    import libvirt
    try:
        libvirt.open(URI).close()
    except libvirt.libvirtError as exc:
        pytest.skip(f"libvirtd unreachable: {exc}")
    work = Path(tempfile.mkdtemp(prefix="gse2e-", dir="/tmp"))
    work.chmod(0o755)                   # QEMU runs as libvirt-qemu
    state = Path(tempfile.mkdtemp(prefix="kvmrt-gse2e-", dir="/run"))
    uuid = str(uuidlib.uuid4())
    name = f"hguest-e2e-{uuid[:8]}"
    env = {**os.environ, "KVMRT_STATE_DIR": str(state), "LIBVIRT_DEFAULT_URI": URI}
    yield work, state, uuid, name, env
    run("virsh", "-c", URI, "destroy", name, env=env)
    run("virsh", "-c", URI, "undefine", name, env=env)
    pidfile = state / "gs/gsd.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 15)
        except (ProcessLookupError, ValueError):
            pass
    shutil.rmtree(state, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


def test_real_guest_services_end_to_end(e2e):
    work, state, uuid, name, env = e2e
    shutil.copy(KERNEL, work / "vmlinuz")
    build_initramfs(work)
    (work / "domain.xml").write_text(domain_xml(name, uuid, work))
    assert run("virsh", "-c", URI, "define", str(work / "domain.xml"), env=env).returncode == 0
    cfg = work / "kvmrt.cfg"
    cfg.write_text(f"[{uuid}]\nname = {name}\nguest_services = yes\n")
    synced = run(str(BIN / "kvmrt-sync-config"), "-f", str(cfg), name, env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    xml = run("virsh", "-c", URI, "dumpxml", name, env=env).stdout
    sock_path = state / "gs" / f"{uuid}.sock"
    assert f"path='{sock_path}'" in xml and "name='org.kvmrt.gs.0'" in xml

    log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    log.bind(str(work / "log.sock"))
    log.settimeout(5)
    (state / "gs").mkdir(parents=True, exist_ok=True)
    tracing = work / "tracing"
    tracing.mkdir()
    # The host side in a mount namespace of its own, tracefs mounted there only.
    gsd_log = open(work / "gsd.log", "w")
    gsd = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f"mount -t tracefs nodev {tracing} && exec {BIN / 'kvmrt-gsd'} -f {cfg} "
         f"--syslog-socket {work / 'log.sock'}"],
        env=env, stdout=subprocess.DEVNULL, stderr=gsd_log)
    try:
        wait_for(lambda: (state / "gs/gsd.pid").exists(), 20, "kvmrt-gsd")
        booted = run(str(BIN / "kvmrt-boot"), "-f", str(cfg), name, env=env)
        assert booted.returncode == 0, booted.stdout + booted.stderr
        assert int((state / "gs/gsd.pid").read_text()) == gsd.pid   # boot started no other
        lines = []
        deadline = time.monotonic() + 180
        while len(lines) < 4 and time.monotonic() < deadline:
            try:
                lines.append(log.recv(65536).decode())
            except socket.timeout:
                continue
        console = (work / "console.log").read_text(errors="replace") \
            if (work / "console.log").exists() else ""
        assert len(lines) == 4, f"syslog got {lines}; console:\n{console[-3000:]}"
        msgs = [line.split(" msg=", 1)[1] for line in lines]
        assert msgs[0:2] == ["first message", "second message"]
        assert msgs[2].startswith("ping-reply: e2e-cookie host_ns=") and msgs[3] == "last message"
        stamps = [int(record_fields(line)["host_ns"]) for line in lines]
        assert stamps == sorted(stamps)
        assert all(f"vm={name} uuid={uuid}" in line for line in lines)
        guest_stamps = [int(record_fields(line)["guest_ns"]) for line in lines]
        assert guest_stamps == sorted(guest_stamps)

        trace = Path(f"/proc/{gsd.pid}/root{tracing}/trace").read_text()
        ours = [t.split("tracing_mark_write: ", 1)[1] for t in trace.splitlines()
                if f"uuid={uuid}" in t]
        kinds = [t.split()[0] for t in ours if not t.startswith("AVAILABLE_HOST")]
        assert kinds == ["PING_HOST", "LOG_MSG_HOST", "LOG_MSG_HOST", "LOG_MSG_HOST",
                         "TRACE_LOG_DATA_HOST", "TRACE_FLUSH_HOST", "LOG_MSG_HOST"]
        ping = record_fields(next(t for t in ours if t.startswith("PING_HOST")))
        assert f"e2e-cookie host_ns={ping['host_ns']} " in msgs[2]
        flush = next(t for t in ours if t.startswith("TRACE_FLUSH_HOST"))
        snapshot_ok = (Path(f"/proc/{gsd.pid}/root{tracing}") / "snapshot").exists()
        assert ("snapshot=" in flush) if snapshot_ok else ("CONFIG_TRACER_SNAPSHOT" in flush)
        assert "data=\\x00\\x01\\x7f" in next(t for t in ours if t.startswith("TRACE_LOG"))

        # The guest's own *_GUEST events, one per *_HOST record, same guest time.
        wait_for(lambda: "GS: trace dumped" in (work / "console.log").read_text(errors="replace"),
                 60, "the guest's trace on its console")
        console = (work / "console.log").read_text(errors="replace")
        if "GS: guest trace_marker yes" in console:
            guest = [line.split("tracing_mark_write: ", 1)[1] for line in console.splitlines()
                     if line.startswith("GUEST-TRACE: ") and "tracing_mark_write: " in line]
            guest = [g for g in guest if not g.startswith("AVAILABLE_GUEST")]
            assert [g.split()[0] for g in guest] == [k.replace("_HOST", "_GUEST") for k in kinds]
            host = [t for t in ours if not t.startswith("AVAILABLE_HOST")]
            assert [record_fields(g)["guest_ns"] for g in guest] == \
                [record_fields(h)["guest_ns"] for h in host]

        stopped = run(str(BIN / "kvmrt-shutdown"), "-f", str(cfg), "--force", "--timeout", "5",
                      name, env=env)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert gsd.wait(10) == 0
        assert not sock_path.exists() and not (state / "gs/gsd.pid").exists()
    finally:
        log.close()
        if gsd.poll() is None:
            gsd.terminate()
            gsd.wait(10)
        gsd_log.close()
