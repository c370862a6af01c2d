#!/usr/bin/env python3
"""What does a guest services call cost?

Runs in one process on this machine, with real unix sockets standing in for
the virtio-serial port (the same kind of socket QEMU gives the host side)
and the real host side (kvmrt.guestsvc.host.GuestServices, serving in a
thread; trace records to a scratch file, log_msg to a syslog socket this
benchmark reads and drops). Nothing of the host is changed.

Rows (median and best of N, microseconds):

- ``ping`` round trip from the Python guest module, next to a plain echo of
  the same line over the same kind of socket (a thread that sends back what
  it reads): the difference is the protocol and the host side's work;
- the same from the C library (built with gcc here): ``kvmrtgs_ping``
  next to write()+read() of the same line to an echo;
- the cost of ``log_msg`` in the C library without waiting
  (``KVMRTGS_NOWAIT``, what a real-time loop calls) next to the bare
  ``write()`` of the same line: the call must cost no more than the write
  plus the formatting; and ``log_msg`` waiting for the host's reply.

Under a VM the port is a virtio queue instead of a socket; the issue
measured 0.4-1 ms per round trip through QEMU/TCG on this machine.

Usage: bench/bench_guestsvc.py [-n RUNS]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kvmrt.guestsvc import protocol as proto
from kvmrt.guestsvc.guest import Client
from kvmrt.guestsvc.host import GuestServices, QemuCpus, Vm
from kvmrt.guestsvc.tracefs import Tracefs
from kvmrt.host import HostFS

ROOT = Path(__file__).resolve().parent.parent
VM = Vm("00000000-0000-4000-8000-0000000000b1", "bench")

C_BENCH = r"""
#include "libkvmrtgs.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

static long long ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec; }
static int cmp(const void *a, const void *b) { long long x = *(const long long *)a,
    y = *(const long long *)b; return x < y ? -1 : x > y; }
static void report(const char *what, long long *t, int n) {
    qsort(t, n, sizeof(*t), cmp);
    printf("%s %.2f %.2f\n", what, t[n / 2] / 1000.0, t[0] / 1000.0); }

int main(int argc, char **argv) {
    int n = atoi(argv[3]), i; long long *t = calloc(n, sizeof(*t)), s;
    char line[] = "gs1 0 log_msg 1700000000000000000 0 cycle 12345 overrun\n", buf[256];
    struct kvmrtgs *gs = kvmrtgs_open(argv[1], 1000);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int echo = socket(AF_UNIX, SOCK_STREAM, 0);
    if (!gs) { perror("open"); return 1; }
    kvmrtgs_set_trace_marker(gs, NULL);
    strcpy(sa.sun_path, argv[2]);
    if (connect(echo, (struct sockaddr *)&sa, sizeof(sa))) { perror("echo"); return 1; }
    for (i = 0; i < n; i++) { s = ns(); kvmrtgs_ping(gs, "42", NULL); t[i] = ns() - s; }
    report("c_ping", t, n);
    for (i = 0; i < n; i++) { s = ns(); write(echo, "gs1 1 ping 1 0 42\n", 18);
        read(echo, buf, sizeof(buf)); t[i] = ns() - s; }
    report("c_echo", t, n);
    for (i = 0; i < n; i++) { s = ns(); kvmrtgs_log_msg(gs, "cycle 12345 overrun", 19,
        KVMRTGS_NOWAIT); t[i] = ns() - s; usleep(50); }
    report("c_log_nowait", t, n);
    for (i = 0; i < n; i++) { s = ns(); write(echo, line, sizeof(line) - 1); t[i] = ns() - s;
        read(echo, buf, sizeof(buf)); usleep(50); }
    report("c_write", t, n);
    for (i = 0; i < n; i++) { s = ns(); kvmrtgs_log_msg(gs, "cycle 12345 overrun", 19, 0);
        t[i] = ns() - s; }
    report("c_log_wait", t, n);
    kvmrtgs_close(gs);
    return 0;
}
"""


def serve_forever(listener: socket.socket, handler) -> None:
    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()


def echo(conn: socket.socket) -> None:
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)


def listening(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(8)
    return s


def stats(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e6:9.1f} {min(times) * 1e6:9.1f}"


def timed(fn, runs: int) -> list[float]:
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gsbench", dir="/tmp"))
    try:
        (work / "trace_marker").write_text("")
        log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        log.bind(str(work / "log.sock"))
        threading.Thread(target=lambda: [log.recv(65536) for _ in iter(int, 1)],
                         daemon=True).start()
        services = GuestServices(tracer=Tracefs(work), cpus=QemuCpus(HostFS()),
                                 syslog_socket=str(work / "log.sock"))
        port, echo_port = listening(work / "port.sock"), listening(work / "echo.sock")
        serve_forever(port, lambda conn: services.serve(VM, conn))
        serve_forever(echo_port, echo)
        print(f"{'row':<34}{'median us':>10}{'best us':>10}")
        with Client(str(work / "port.sock"), trace_marker="") as gs:
            print(f"{'python ping round trip':<34}{stats(timed(lambda: gs.ping(b'42'), args.runs))}")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(work / "echo.sock"))
            line = proto.Request(1, "ping", time.time_ns(), 0, b"42").line()

            def plain() -> None:
                s.sendall(line)
                s.recv(4096)
            print(f"{'python plain echo, same line':<34}{stats(timed(plain, args.runs))}")
        gcc = shutil.which("gcc")
        if gcc is None:
            print("gcc missing: no C rows")
            return 0
        (work / "bench.c").write_text(C_BENCH)
        subprocess.run([gcc, "-O2", "-I", str(ROOT / "guest"), "-o", str(work / "bench"),
                        str(work / "bench.c"), str(ROOT / "guest/libkvmrtgs.c")], check=True)
        out = subprocess.run([str(work / "bench"), str(work / "port.sock"),
                              str(work / "echo.sock"), str(min(args.runs, 5000))],
                             capture_output=True, text=True, check=True).stdout
        labels = {"c_ping": "C kvmrtgs_ping round trip", "c_echo": "C plain echo, same line",
                  "c_log_nowait": "C log_msg NOWAIT (rt loop)",
                  "c_write": "C bare write() of the line", "c_log_wait": "C log_msg, waits reply"}
        for row in out.splitlines():
            key, median, best = row.split()
            print(f"{labels[key]:<34}{float(median):9.1f} {float(best):9.1f}")
        services.close()
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
