"""Guest services in-process: the wire protocol, the host side
(kvmrt.guestsvc.host) and the Python guest side (kvmrt.guestsvc.guest)
talking over real unix sockets, with real threads; a syslog socket the
test listens on; a tracefs tree (trace_marker, snapshot files) on disk,
and the real tracefs in a private mount namespace."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from kvmrt.guestsvc import protocol as proto
from kvmrt.guestsvc.guest import (Client, GsError, NotAvailable, PortFull, find_port,
                                  main as gs_main)
from kvmrt.guestsvc.host import GuestServices, QemuCpus, Vm
from kvmrt.guestsvc.tracefs import Tracefs
from kvmrt.host import HostFS
from kvmrt.host.qemu import read_qemu_status
from kvmrt.host.tasks import read_task, set_affinity

VM = Vm("00000000-0000-4000-8000-000000000001", "RedHawk-8.4-RT")


# -- the protocol ---------------------------------------------------------------------
@given(st.binary(max_size=300))
def test_escape_round_trips_and_stays_one_printable_line(data):
    text = proto.escape(data)
    assert all(0x20 <= ord(c) < 0x7F for c in text)
    assert proto.unescape(text.encode()) == data


@given(st.binary(min_size=1, max_size=3 * proto.MAX_LINE))
def test_a_long_argument_is_cut_at_an_escape_boundary(data):
    line, kept = proto.fit_line("gs1 1 log_msg 5 0", data)
    assert len(line) <= proto.MAX_LINE and line.endswith(b"\n")
    assert proto.parse_request(line[:-1]).arg == data[:kept]
    assert kept == len(data) or len(line) > proto.MAX_LINE - 4


def test_line_reader_cuts_long_lines_and_drops_their_rest():
    reader = proto.LineReader(limit=16)
    assert reader.feed(b"short\nabcdefghij") == [(b"short", False)]
    assert reader.feed(b"klmnopqrstuvwxyz") == [(b"abcdefghijklmno", True)]
    assert reader.feed(b"more rest\nnext\n") == [(b"next", False)]


@pytest.mark.parametrize("line, why", [
    (b"gs2 1 ping 5 0 x", "this host speaks gs1"),
    (b"gs1 1 ping", "expected: gs1 SEQ COMMAND"),
    (b"gs1 x ping 5 0", "decimal numbers"),
])
def test_bad_request_lines_are_named(line, why):
    with pytest.raises(proto.ProtocolError, match=why):
        proto.parse_request(line)


def test_hex_and_text_data():
    assert proto.parse_data("hex:00ff 10") == b"\x00\xff\x10"
    assert proto.parse_data("0x0a") == b"\n"
    assert proto.parse_data("plain text") == b"plain text"
    with pytest.raises(proto.ProtocolError, match="not hex bytes"):
        proto.parse_data("0xzz")


# -- the host side, over real sockets --------------------------------------------------
class Syslog:
    """A syslog socket (AF_UNIX datagrams, like /dev/log) the test reads."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(5)

    def next(self) -> str:
        return self.sock.recv(65536).decode()


def make_tracefs(root: Path, cpus: int, *, snapshot: bool) -> Path:
    (root / "per_cpu").mkdir(parents=True)
    (root / "trace_marker").write_text("")
    for cpu in range(cpus):
        (root / f"per_cpu/cpu{cpu}").mkdir()
        if snapshot:
            (root / f"per_cpu/cpu{cpu}/snapshot").write_text("0")
    if snapshot:
        (root / "snapshot").write_text("0")
    return root


class Port:
    """A unix socket standing in for the VM's port, served by the host side."""

    def __init__(self, path: Path, services: GuestServices, vm: Vm = VM) -> None:
        self.path = str(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.thread = threading.Thread(target=self._accept, args=(services, vm), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)

    def _accept(self, services: GuestServices, vm: Vm) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=services.serve, args=(vm, conn), daemon=True).start()


@pytest.fixture
def host_side(tmp_path, threadripper):
    tracefs = make_tracefs(tmp_path / "tracefs", 64, snapshot=True)
    syslog = Syslog(tmp_path / "log.sock")
    services = GuestServices(tracer=Tracefs(tracefs), cpus=QemuCpus(HostFS(threadripper)),
                             syslog_socket=syslog.path)
    port = Port(tmp_path / "port.sock", services)
    yield port, syslog, tracefs
    port.close()
    syslog.sock.close()
    services.close()


def records(tracefs: Path) -> list[str]:
    return (tracefs / "trace_marker").read_text().splitlines()


def fields(record: str) -> dict[str, str]:
    """A record's fields; the last one (msg, cookie, data…) takes the rest of the line."""
    found: dict[str, str] = {}
    for token in record.split(" ")[1:]:
        if "=" in token and not (found and list(found)[-1] in TEXT_FIELDS):
            key, value = token.split("=", 1)
            found[key] = value
        else:
            last = list(found)[-1]
            found[last] += " " + token
    return found


TEXT_FIELDS = ("msg", "cookie", "data", "error")


def test_ping_is_answered_with_host_time_and_recorded(host_side):
    port, _syslog, tracefs = host_side
    with Client(port.path, trace_marker="") as gs:
        before = time.time_ns()
        reply = gs.ping(b"cookie 42")
        after = time.time_ns()
    assert reply.status == "ok" and reply.detail == b"cookie 42"
    assert before <= reply.host_ns <= after
    (record,) = records(tracefs)
    assert record.startswith("PING_HOST ")
    f = fields(record)
    assert (f["vm"], f["uuid"], f["host_ns"]) == (VM.name, VM.uuid, str(reply.host_ns))
    assert before <= int(f["guest_ns"]) <= reply.host_ns
    assert f["cookie"] == "cookie 42" and f["guest_cpu"].isdigit()


def test_log_msg_goes_to_syslog_and_trace_in_the_guests_order(host_side):
    port, syslog, tracefs = host_side
    with Client(port.path, trace_marker="") as gs:
        for n in range(5):
            gs.log_msg(f"message {n}\n".encode())
    lines = [syslog.next() for _ in range(5)]
    for n, line in enumerate(lines):
        assert line.startswith("<30>kvmrt-gs: LOG_MSG_HOST vm=RedHawk-8.4-RT ")
        assert line.endswith(f"msg=message {n}\\x0a")
    stamps = [int(fields(r)["host_ns"]) for r in records(tracefs)]
    assert stamps == sorted(stamps) and len(stamps) == 5


def test_too_long_message_is_cut_and_the_caller_told(host_side):
    port, syslog, _tracefs = host_side
    with Client(port.path, trace_marker="") as gs:
        reply = gs.log_msg(b"x" * 10000)
    assert reply.status == "cut" and 4000 < int(reply.text) < proto.MAX_LINE
    assert syslog.next().count("x") == int(reply.text)


def test_host_cuts_a_foreign_clients_long_line(host_side):
    """Another language's client that sends a longer line gets ``cut``."""
    port, syslog, _ = host_side
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(port.path)
        s.sendall(b"gs1 9 log_msg 5 0 " + b"y" * 9000 + b"\ngs1 10 ping 6 0 after\n")
        reader, replies = proto.LineReader(), []
        while len(replies) < 2:
            replies += [proto.parse_reply(line) for line, _ in reader.feed(s.recv(4096))]
    assert (replies[0].seq, replies[0].status) == (9, "cut")
    assert int(replies[0].text) == proto.MAX_LINE - 1 - len("gs1 9 log_msg 5 0 ")
    assert (replies[1].seq, replies[1].status, replies[1].text) == (10, "ok", "after")
    assert syslog.next().count("y") == int(replies[0].text)


def pin_vcpus_like_libvirt(root: Path) -> dict[int, int]:
    """The VM's vCPU n pinned to host CPUs 8+2n and 9+2n, last run on 9+2n
    (``stat`` field 39); the host CPU each vCPU last ran on."""
    fs = HostFS(root)
    status = read_qemu_status(fs, VM.name)
    last = {}
    for n, tid in status.vcpus.items():
        set_affinity(fs, read_task(fs, status.pid, tid), frozenset({8 + 2 * n, 9 + 2 * n}))
        stat = root / f"proc/{status.pid}/task/{tid}/stat"
        head, _, rest = stat.read_text().rpartition(")")
        fields = rest.split()
        fields[36] = str(9 + 2 * n)          # field 39 ("processor"), after pid and comm
        stat.write_text(f"{head}) {' '.join(fields)}")
        last[n] = 9 + 2 * n
    return last


def test_trace_flush_scopes_snapshot_the_right_cpus(host_side, threadripper):
    port, _, tracefs = host_side
    last = pin_vcpus_like_libvirt(threadripper)      # 4 vCPUs on host CPUs 8-15
    def snapped() -> set[int]:
        return {int(p.parent.name[3:]) for p in tracefs.glob("per_cpu/cpu*/snapshot")
                if p.read_text() == "1"}

    with Client(port.path, trace_marker="") as gs:
        # The stand-in port runs no vCPU: the sender says it ran on guest CPU 1.
        line = proto.Request(5, "trace_flush", time.time_ns(), 1, b"0").line()
        os.write(gs.fd, line)
        assert gs._receive(5).text == f"CPUs {last[1]}" == "CPUs 11"
        assert snapped() == {11}
        assert gs.trace_flush(1).text == "CPUs 8-15"
        assert snapped() == set(range(8, 16))
        assert (tracefs / "snapshot").read_text() == "0"
        assert gs.trace_flush(2).text == "all CPUs"
        assert (tracefs / "snapshot").read_text() == "1"
        with pytest.raises(GsError, match="scope '7'"):
            gs.request("trace_flush", b"7")


def test_trace_flush_says_when_the_kernel_has_no_snapshot(tmp_path, threadripper):
    tracefs = make_tracefs(tmp_path / "tracefs", 4, snapshot=False)
    services = GuestServices(tracer=Tracefs(tracefs), cpus=QemuCpus(HostFS(threadripper)))
    port = Port(tmp_path / "port.sock", services)
    with Client(port.path, trace_marker="") as gs:
        with pytest.raises(GsError, match="CONFIG_TRACER_SNAPSHOT is not set"):
            gs.trace_flush(2)
    port.close()
    services.close()
    assert "error=" in records(tracefs)[0]


def test_trace_flush_without_per_cpu_snapshots_takes_all_cpus_and_says_so(host_side):
    port, _, tracefs = host_side
    for per_cpu in tracefs.glob("per_cpu/cpu*/snapshot"):
        per_cpu.unlink()
    with Client(port.path, trace_marker="") as gs:
        reply = gs.trace_flush(1)
    assert reply.status == "ok" and reply.text.startswith("all CPUs (per-CPU snapshots of ")
    assert reply.text.endswith(" need CONFIG_TRACER_SNAPSHOT_PER_CPU_SWAP)")
    assert (tracefs / "snapshot").read_text() == "1"


def test_a_snapshot_the_kernel_refuses_is_an_error_and_the_vm_stays_connected(host_side):
    """A write to ``snapshot`` the kernel refuses (EBUSY under a latency
    tracer; here a directory: EISDIR) is the guest's error reply, not the
    end of the VM's connection."""
    port, _, tracefs = host_side
    (tracefs / "snapshot").unlink()
    (tracefs / "snapshot").mkdir()
    with Client(port.path, trace_marker="") as gs:
        with pytest.raises(GsError, match=r"refused the snapshot \(snapshot: Is a directory\)"):
            gs.trace_flush(2)
        assert gs.ping(b"still here").text == "still here"
    flush = next(r for r in records(tracefs) if r.startswith("TRACE_FLUSH_HOST"))
    assert fields(flush)["error"] == "the host kernel refused the snapshot (snapshot: Is a directory)"


def test_available_fails_fast_without_a_host_side(tmp_path):
    lonely = socket.socket(socket.AF_UNIX)
    lonely.bind(str(tmp_path / "nobody.sock"))
    lonely.listen(1)         # QEMU listens, but nobody answers
    start = time.monotonic()
    with Client(str(tmp_path / "nobody.sock"), timeout=0.2, trace_marker="") as gs:
        with pytest.raises(NotAvailable, match="no answer"):
            gs.available()
    assert time.monotonic() - start < 1.0
    lonely.close()
    os.unlink(tmp_path / "nobody.sock")
    with pytest.raises(NotAvailable):
        Client(str(tmp_path / "nobody.sock"))


@pytest.fixture(params=["socket", "device"])
def stuck_port(request, tmp_path):
    """A port whose host side is connected but does not read (stuck): a
    unix socket nobody accepts, or a FIFO standing in for the virtio
    character device (opened like /dev/vportNpM)."""
    path = tmp_path / "stuck"
    if request.param == "device":
        os.mkfifo(path)
        yield str(path)
        return
    with socket.socket(socket.AF_UNIX) as stuck:
        stuck.bind(str(path))
        stuck.listen(1)
        yield str(path)


def test_a_log_msg_that_does_not_wait_never_waits_for_a_full_port(stuck_port):
    """``wait=False`` calls fail at once with PortFull once the port is
    full; they neither block nor wait the client's 2 s timeout."""
    outcome: dict = {}

    def rt_loop() -> None:
        with Client(stuck_port, timeout=2.0, trace_marker="") as gs:
            slowest = 0.0
            try:
                for _ in range(100000):
                    start = time.monotonic()
                    try:
                        gs.log_msg(b"m" * 1000, wait=False)
                    finally:
                        slowest = max(slowest, time.monotonic() - start)
            except GsError as exc:
                outcome.update(error=exc, slowest=slowest)

    loop = threading.Thread(target=rt_loop, daemon=True)
    loop.start()
    loop.join(20)
    assert not loop.is_alive(), "a write blocked"
    assert isinstance(outcome["error"], PortFull) and "line dropped" in str(outcome["error"])
    assert outcome["slowest"] < 0.5


def test_guest_events_go_to_the_guests_trace_marker(host_side, tmp_path):
    port, _, _ = host_side
    marker = tmp_path / "guest_marker"
    marker.write_text("")
    with Client(port.path, trace_marker=str(marker)) as gs:
        gs.ping(b"7")
        gs.trace_log_data(b"\x00\xff")
    lines = marker.read_text().splitlines()
    assert lines[0].startswith("PING_GUEST seq=1 ") and lines[0].endswith("arg=7")
    assert lines[1].startswith("TRACE_LOG_DATA_GUEST seq=2 ") and lines[1].endswith(r"arg=\x00\xff")


def test_python_tool_exit_statuses(host_side, tmp_path, capsys):
    port, _, _ = host_side
    assert gs_main(["--port", port.path, "--no-trace", "available", "ping_available",
                    "ping", "abc"]) == 0
    assert capsys.readouterr().out.startswith("abc host_ns=")
    assert gs_main(["--port", str(tmp_path / "none"), "available"]) == 1
    assert gs_main(["bogus"]) == 2
    assert gs_main(["trace_flush", "9"]) == 2
    assert gs_main(["log_msg"]) == 2
    capsys.readouterr()
    assert gs_main(["--timeout", "abc", "available"]) == 2
    assert capsys.readouterr().err.startswith("kvmrt-gs: --timeout S: seconds, not abc\n")
    assert gs_main(["--help"]) == 0 and capsys.readouterr().out.startswith("usage: kvmrt-gs ")


def test_find_port_reads_virtio_port_names(tmp_path):
    for port, name in (("vport0p1", "org.qemu.guest_agent.0"), ("vport0p2", "org.kvmrt.gs.0")):
        (tmp_path / port).mkdir()
        (tmp_path / port / "name").write_text(name + "\n")
    assert find_port(tmp_path) == "/dev/vport0p2"
    (tmp_path / "vport0p2/name").write_text("other\n")
    with pytest.raises(NotAvailable, match="no virtio-serial port named org.kvmrt.gs.0"):
        find_port(tmp_path)


# -- the C library and tool, built with gcc, against the real host side --------------
GUEST_SRC = Path(__file__).parent.parent / "guest"


@pytest.fixture(scope="module")
def c_tool(tmp_path_factory):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is missing: cannot build the C guest tool")
    out = tmp_path_factory.mktemp("cbuild") / "kvmrt-gs"
    subprocess.run([gcc, "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(out),
                    str(GUEST_SRC / "kvmrt-gs.c"), str(GUEST_SRC / "libkvmrtgs.c")], check=True)
    return out


def run_c(tool: Path, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=timeout)


def test_c_tool_speaks_to_the_host_side(c_tool, host_side, tmp_path):
    port, syslog, tracefs = host_side
    marker = tmp_path / "guest_marker"
    marker.write_text("")
    done = run_c(c_tool, "--port", port.path, "--trace-marker", str(marker),
                 "available", "ping_available", "ping", "c-42",
                 "log_msg", "from C", "trace_log_data", "hex:00 ff 5c", "xtrace_flush", "2")
    assert done.returncode == 0, done.stderr
    ping, flush = done.stdout.splitlines()
    assert ping.startswith("c-42 host_ns=") and "rtt_ns=" in ping
    assert flush == "all CPUs"
    assert syslog.next().endswith("msg=from C")
    kinds = [r.split()[0] for r in records(tracefs)]
    assert kinds == ["AVAILABLE_HOST", "PING_AVAILABLE_HOST", "PING_HOST", "LOG_MSG_HOST",
                     "TRACE_LOG_DATA_HOST", "TRACE_FLUSH_HOST"]
    assert fields(records(tracefs)[4])["data"] == r"\x00\xff\\"
    seqs = [int(fields(r)["seq"]) for r in records(tracefs)]
    assert seqs == [1, 2, 3, 4, 5, 6]
    guest = marker.read_text().splitlines()
    assert [g.split()[0] for g in guest] == [k.replace("_HOST", "_GUEST") for k in kinds]
    assert guest[2].endswith("arg=c-42") and guest[4].endswith(r"arg=\x00\xff\\")
    host_guest_ns = [fields(r)["guest_ns"] for r in records(tracefs)]
    assert [fields(g)["guest_ns"] for g in guest] == host_guest_ns


def test_c_tool_cuts_long_messages_and_says_so(c_tool, host_side):
    port, syslog, _ = host_side
    done = run_c(c_tool, "--port", port.path, "log_msg", "z" * 6000)
    assert done.returncode == 0
    kept = int(done.stderr.split("cut to ")[1].split()[0])
    assert 4000 < kept < proto.MAX_LINE
    assert syslog.next().count("z") == kept


def test_c_tool_fails_fast_without_a_host(c_tool, tmp_path):
    lonely = socket.socket(socket.AF_UNIX)
    lonely.bind(str(tmp_path / "qemu.sock"))
    lonely.listen(1)            # QEMU listens, no host side serves
    start = time.monotonic()
    done = run_c(c_tool, "--port", str(tmp_path / "qemu.sock"), "--timeout", "0.2", "available")
    assert time.monotonic() - start < 2
    assert done.returncode == 1 and "not available" in done.stderr
    lonely.close()
    done = run_c(c_tool, "--port", str(tmp_path / "absent"), "available")
    assert done.returncode == 1 and "not available" in done.stderr


NOWAIT_LOOP = r"""
#include "libkvmrtgs.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {   /* a real-time loop logging without waiting */
    struct kvmrtgs *gs = kvmrtgs_open(argv[1], 2000);
    char msg[1000]; double slowest = 0;
    memset(msg, 'm', sizeof(msg));
    kvmrtgs_set_trace_marker(gs, NULL);
    for (int i = 0; i < 100000; i++) {
        double start = now();
        int r = kvmrtgs_log_msg(gs, msg, sizeof(msg), KVMRTGS_NOWAIT);
        if (now() - start > slowest) slowest = now() - start;
        if (r < 0) { printf("%s %.3f\n", strerror(errno), slowest); return 0; }
    }
    return 1;
}
"""


def test_c_log_msg_nowait_never_waits_for_a_full_port(tmp_path, stuck_port):
    """kvmrtgs_log_msg(KVMRTGS_NOWAIT) costs the write: with a host side
    that is connected but does not read, the call that finds the port full
    fails at once with EAGAIN; it neither blocks nor waits the 2 s timeout."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is missing")
    (tmp_path / "loop.c").write_text(NOWAIT_LOOP)
    subprocess.run([gcc, "-O2", "-I", str(GUEST_SRC), "-o", str(tmp_path / "loop"),
                    str(tmp_path / "loop.c"), str(GUEST_SRC / "libkvmrtgs.c")], check=True)
    done = run_c(tmp_path / "loop", stuck_port)
    error, slowest = done.stdout.rsplit(" ", 1)
    assert error == os.strerror(errno.EAGAIN) and float(slowest) < 0.5


@pytest.mark.parametrize("args, why", [
    ((), "no command"), (("bogus",), "unknown command bogus"),
    (("ping",), "needs an argument"), (("trace_flush", "3"), "0, 1 or 2"),
    (("log_msg", "0xZZ"), "not hex bytes"), (("--timeout", "x", "available"), "seconds"),
])
def test_c_tool_usage_errors_exit_2(c_tool, args, why):
    done = run_c(c_tool, *args)
    assert done.returncode == 2 and why in done.stderr


def test_c_tool_reports_the_hosts_error(c_tool, tmp_path, threadripper):
    tracefs = make_tracefs(tmp_path / "tracefs", 4, snapshot=False)
    services = GuestServices(tracer=Tracefs(tracefs), cpus=QemuCpus(HostFS(threadripper)))
    port = Port(tmp_path / "port.sock", services)
    done = run_c(c_tool, "--port", port.path, "trace_flush", "1")
    port.close()
    services.close()
    assert done.returncode == 1
    assert "CONFIG_TRACER_SNAPSHOT is not set" in done.stderr


# -- the real tracefs, in a mount namespace of the test's own ---------------------------
TRACEFS_PROBE = """
import sys, uuid
from pathlib import Path
from kvmrt.guestsvc.tracefs import SnapshotUnsupported, Tracefs, find_tracefs, mount_tracefs
before = find_tracefs()
root = mount_tracefs(Path(sys.argv[1]))
token = uuid.uuid4().hex
t = Tracefs(root)
t.mark(f"PING_HOST vm=probe token={token}\\n")
print("mounted" if before is None else "found", root)
print("recorded" if token in (root / "trace").read_text() else "missing")
try:
    print("snapshot", t.snapshot(None))
except SnapshotUnsupported as exc:
    print("unsupported", exc)
"""


def test_tracefs_is_mounted_when_absent_and_takes_marker_records(tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a private mount namespace")
    mountpoint = tmp_path / "tracing"
    mountpoint.mkdir()
    done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                           TRACEFS_PROBE, str(mountpoint)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    where, recorded, snapshot = done.stdout.splitlines()
    assert where.startswith(("mounted " + str(mountpoint), "found "))
    assert recorded == "recorded"
    kernel_has_snapshot = snapshot.startswith("snapshot all CPUs")
    assert kernel_has_snapshot or snapshot == (
        "unsupported the host kernel has no ftrace snapshot (CONFIG_TRACER_SNAPSHOT is not set)")
    assert not any(m.split()[1] == str(mountpoint)
                   for m in Path("/proc/self/mounts").read_text().splitlines())
