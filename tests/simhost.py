"""The simulated real-time host: a QEMU guest with a server-like topology
running Debian's PREEMPT_RT kernel, booted with virtme-ng (issue 6).

The guest's root file system is this machine's own ``/``, shared read-only
over 9p, with throw-away overlays on ``/etc``, ``/var``, ``/tmp``...: the
checkout and its ``.venv`` are there at the same paths, and so are libvirtd
and QEMU. The guest runs under TCG (no KVM): it is slow (about 30 s to
boot) but has exactly the topology asked for, SMT siblings included, an
IOMMU with interrupt remapping, and a real kernel's CPU hotplug, IRQ and
task affinity and boot parameters.

    from simhost import DEFAULT, TWO_SOCKET, run, unavailable
    status, output = run("kvmrt-show-host", DEFAULT)
    status, output = run("python tests/simhost/scenarios.py default",
                         DEFAULT, libvirtd=True)

Each ``run`` is one boot; the command runs as root in the checkout with
``.venv/bin`` first on PATH, after ``tests/simhost/prelude.sh``. A
directory shared read-write with the guest is passed as ``out`` (guest
path = host path, ``$SIMHOST_OUT`` inside): scenarios leave their results
there rather than on the console, where the guest's stdout and stderr
interleave. Prerequisites come from ``scripts/setup-simhost``; see
:func:`unavailable`.

From a shell, for a look around (as root, from the checkout)::

    .venv/bin/python tests/simhost.py [--cpus 16] [--append 'isolcpus=4-7'] \\
        [--libvirtd] -- COMMAND...
"""

from __future__ import annotations

import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SIMHOST_DIR = Path(os.environ.get("KVMRT_SIMHOST_DIR") or "/var/lib/kvmrt-simhost")
KERNEL = SIMHOST_DIR / "rt" / "vmlinuz"
BUSYBOX = SIMHOST_DIR / "busybox" / "bin" / "busybox"
QEMU_CACHE = SIMHOST_DIR / "qemu-cache"
PRELUDE = ROOT / "tests" / "simhost" / "prelude.sh"
# Written into ``out`` by the guest when its command begins.
BOOTED = "booted"

# An Intel model: under TCG only Intel models report SMT siblings.
CPU_MODEL = "Skylake-Server-noTSX-IBRS"
# QEMU warns once per vCPU for each feature of the model that TCG lacks.
_NOISE = ("TCG doesn't support requested feature",)


@dataclass(frozen=True)
class Topology:
    """Packages x cores x threads, split into NUMA nodes in CPU order
    (a node never spans two packages when ``nodes`` is a multiple of
    ``sockets``)."""

    name: str
    sockets: int
    cores: int          # per socket
    threads: int        # per core
    nodes: int
    memory_mib: int = 4096

    @property
    def cpus(self) -> int:
        return self.sockets * self.cores * self.threads

    def node_cpus(self) -> list[range]:
        per = self.cpus // self.nodes
        return [range(n * per, (n + 1) * per) for n in range(self.nodes)]

    def vng_args(self) -> list[str]:
        mem = self.memory_mib // self.nodes
        args = ["--cpus", str(self.cpus), "-m", f"{mem * self.nodes}M"]
        for r in self.node_cpus():
            args += ["--numa", f"{mem}M,cpus={r.start}-{r.stop - 1}"]
        return args

    def qemu_opts(self) -> list[str]:
        return ["-smp", f"{self.cpus},sockets={self.sockets},cores={self.cores},"
                        f"threads={self.threads}",
                "-cpu", CPU_MODEL]


DEFAULT = Topology("8 CPUs: 1 socket x 4 cores x 2 threads, 2 nodes", 1, 4, 2, 2)
TWO_SOCKET = Topology("16 CPUs: 2 sockets x 4 cores x 2 threads, 2 nodes", 2, 4, 2, 2)

# intel_iommu=on with QEMU's intel-iommu (interrupt remapping): IRQ affinity
# writes take effect at once, as on a server.
BASE_CMDLINE = "intel_iommu=on"
# With vng --verbose the kernel's console comes out with the command's
# output; at this level only warnings and worse (a panic says why the
# guest died before the command ran: vng then exits 255 without a word).
KERNEL_LOG = "loglevel=4"


def unavailable(*, libvirtd: bool = False) -> str | None:
    """Why the simulated host cannot run here, or None."""
    if platform.machine() != "x86_64":
        return f"the simulated host is an x86_64 guest; this machine is {platform.machine()}"
    if os.geteuid() != 0:
        return "needs root (the guest runs as the invoking user; kvmrt there needs root)"
    if not (BIN / "vng").exists():
        return f"virtme-ng is not installed in {BIN} (run scripts/setup-simhost)"
    for what, path in (("the PREEMPT_RT kernel", KERNEL), ("a static busybox", BUSYBOX)):
        if not path.exists():
            return f"{what} is missing: no {path} (run scripts/setup-simhost)"
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
    if shutil.which("qemu-system-x86_64", path=path) is None:
        return "qemu-system-x86_64 is not installed (run scripts/setup)"
    if libvirtd and shutil.which("libvirtd", path=path) is None:
        return "libvirtd is not installed (run scripts/setup)"
    return None


def vng_command(command: str, topology: Topology = DEFAULT, cmdline: str = "", *,
                libvirtd: bool = False, out: Path | None = None) -> list[str]:
    """The ``vng`` command line that boots the simulated host and runs ``command``."""
    env = {"SIMHOST_REPO": str(ROOT), "SIMHOST_BIN": str(BIN)}
    if out is not None:
        env["SIMHOST_OUT"] = str(out)
    script = "; ".join([
        "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
        # The sign of life run() waits for (see ``boot_timeout``).
        *([f"cat /proc/uptime > {shlex.quote(str(out / BOOTED))}"] if out is not None else []),
        f"cd {shlex.quote(str(ROOT))}",
        f". {shlex.quote(str(PRELUDE))}",
        "simhost_fast_reads",
        *(["simhost_start_libvirtd || exit 125"] if libvirtd else []),
        command,
    ])
    qemu = [*topology.qemu_opts(), "-device", "intel-iommu,intremap=on",
            # A second export of / that the prelude mounts with caching on.
            "-fsdev", "local,id=simhostfs,path=/,security_model=none,readonly=on,"
                      "multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=simhostfs,mount_tag=simhost.root"]
    args = [str(BIN / "vng"), "--run", str(KERNEL), "--busybox", str(BUSYBOX),
            # 9p: virtme-ng would first wait ~3 s for a virtiofsd that fails.
            "--disable-kvm", "--force-9p", "--name", "simhost", "--cwd", str(ROOT),
            "--verbose",
            *topology.vng_args(), "--qemu-opts", " ".join(qemu),
            "--append", f"{BASE_CMDLINE} {KERNEL_LOG} {cmdline}".strip()]
    if libvirtd:
        # libvirt's QEMU capabilities cache outlives the boot: probing costs
        # 15-90 s under TCG.
        args.append(f"--rwdir=/var/cache/libvirt/qemu={QEMU_CACHE}")
    if out is not None:
        args.append(f"--rwdir={out}")
    return [*args, "--exec", script]


def run(command: str, topology: Topology = DEFAULT, cmdline: str = "", *,
        libvirtd: bool = False, out: Path | None = None,
        timeout: float = 900, boot_timeout: float = 600) -> tuple[int, str]:
    """Boot the simulated host, run ``command`` (bash) in it, power off.

    Returns the command's exit status (125: libvirtd did not start; 255: the
    guest died before the command ended, e.g. a kernel panic, whose console
    lines are in the output; -9: killed at ``timeout``, or, with ``out``,
    at ``boot_timeout`` when the guest had not reached the command by then:
    ``out/booted`` is missing) and everything the guest and QEMU printed,
    TCG feature warnings left out. QEMU is always ended: it is in the one
    process group this function starts.
    """
    reason = unavailable(libvirtd=libvirtd)
    if reason:
        raise RuntimeError(f"the simulated host cannot run here: {reason}")
    if libvirtd:
        QEMU_CACHE.mkdir(parents=True, exist_ok=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("KVMRT_FSROOT", None)
    # vng makes QEMU reopen its stdout with truncation: give it a pipe.
    proc = subprocess.Popen(
        vng_command(command, topology, cmdline, libvirtd=libvirtd, out=out),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=env, cwd=ROOT, start_new_session=True)
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(proc.stdout.read()), daemon=True)
    reader.start()
    start, why = time.monotonic(), ""
    try:
        while proc.poll() is None:
            time.sleep(1)
            waited = time.monotonic() - start
            if waited > timeout:
                why = f"killed after {timeout:g} s"
            elif out is not None and waited > boot_timeout and not (out / BOOTED).exists():
                why = f"the guest had not reached the command after {boot_timeout:g} s; killed"
            if why:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        reader.join()
    status = -9 if why else proc.returncode
    text = b"".join(chunks).decode(errors="replace") + (f"\nsimhost: {why}\n" if why else "")
    output = "".join(line for line in text.splitlines(keepends=True)
                     if not any(n in line for n in _NOISE))
    return status, output


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Boot the simulated real-time host "
                                     "and run a command in it.")
    parser.add_argument("--cpus", type=int, choices=(8, 16), default=8,
                        help="8: 1 socket x 4 cores x 2 threads; 16: 2 sockets (default 8)")
    parser.add_argument("--append", default="", help="more kernel parameters")
    parser.add_argument("--libvirtd", action="store_true", help="start libvirtd first")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    start = time.monotonic()
    status, output = run(" ".join(args.command), TWO_SOCKET if args.cpus == 16 else DEFAULT,
                         args.append, libvirtd=args.libvirtd, timeout=args.timeout)
    sys.stdout.write(output)
    print(f"simhost: exit {status} after {time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0 if status == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
