"""Helpers for the scenarios that run inside the simulated host
(``scenarios.py``): kvmrt's commands in forked children, libvirt through
virsh, and snapshots of every value kvmrt may change, read as the kernel
shows it. Guest side only: it reads and writes the real /proc and /sys.
"""

from __future__ import annotations

import io
import json
import os
import runpy
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from xml.etree import ElementTree

BIN = Path(sys.executable).parent
OUT = Path(os.environ.get("SIMHOST_OUT", "/tmp"))
STATE_DIR = Path(os.environ.get("KVMRT_STATE_DIR") or "/run/kvmrt")
T0 = time.monotonic()
PF_KTHREAD = 0x00200000
PF_NO_SETAFFINITY = 0x04000000

def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:7.1f}s] {text}", flush=True)


def emit(key: str, value) -> None:
    with open(OUT / "results.jsonl", "a") as f:
        f.write(json.dumps({"key": key, "value": value}, sort_keys=True) + "\n")


def read(path: str | Path, default: str | None = None) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def write(path: str | Path, text: str) -> str | None:
    """Write like ``echo text > path``; the error text, or None."""
    try:
        Path(path).write_text(text)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)


# --- running kvmrt's commands -------------------------------------------------

class Child:
    """A kvmrt command running in a forked child (its console script via runpy)."""

    def __init__(self, tool: str, *args: str) -> None:
        self.argv = [str(BIN / tool), *args]
        self.out = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        self.start = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:   # pragma: no cover - the child
            code = 1
            try:
                os.setpgid(0, 0)
                os.dup2(self.out.fileno(), 1)
                os.dup2(self.err.fileno(), 2)
                sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), write_through=True)
                sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), write_through=True)
                sys.argv = list(self.argv)
                runpy.run_path(self.argv[0], run_name="__main__")
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
            finally:
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                finally:
                    os._exit(code)

    def poll(self) -> int | None:
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                self.status = -9
                break
            time.sleep(0.05)
        return self.result()

    def result(self) -> dict:
        def text(f) -> str:
            f.seek(0)
            return f.read().decode(errors="replace")

        return {"argv": [Path(self.argv[0]).name, *self.argv[1:]], "rc": self.status,
                "out": text(self.out), "err": text(self.err),
                "seconds": round(time.monotonic() - self.start, 2)}


def run_tool(tool: str, *args: str, timeout: float = 600) -> dict:
    say(f"$ {tool} {' '.join(args)}")
    r = Child(tool, *args).wait(timeout)
    say(f"  exit {r['rc']} after {r['seconds']} s")
    for line in (r["out"] + r["err"]).splitlines()[:40]:
        print(f"    | {line}", flush=True)
    return r


def stat_json(cfg: str, *vms: str) -> dict:
    r = run_tool("kvmrt-stat", "-f", cfg, "--json", *vms)
    try:
        r["json"] = json.loads(r["out"])
    except ValueError:
        r["json"] = None
    return r


# --- libvirt ------------------------------------------------------------------

def virsh(*args: str, check: bool = True) -> str:
    p = subprocess.run(["virsh", *args], capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise RuntimeError(f"virsh {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout


def define(name: str, uuid: str, vcpus: int = 1) -> None:
    """A disk-less TCG domain: 64 MiB, no OS (SeaBIOS finds nothing to boot)."""
    xml = (f"<domain type='qemu'><name>{name}</name><uuid>{uuid}</uuid>"
           f"<memory unit='MiB'>64</memory><vcpu>{vcpus}</vcpu>"
           "<os><type arch='x86_64'>hvm</type></os><devices/></domain>")
    path = Path(tempfile.mkdtemp()) / f"{name}.xml"
    path.write_text(xml)
    virsh("define", str(path))


def destroy_all(names: list[str]) -> None:
    for name in names:
        virsh("destroy", name, check=False)


def vm_threads(name: str) -> dict | None:
    """QEMU's PID, vCPU thread ids (libvirt's status file) and every thread."""
    try:
        root = ElementTree.fromstring(Path(f"/run/libvirt/qemu/{name}.xml").read_text())
    except (OSError, ElementTree.ParseError):
        return None
    pid = int(root.get("pid"))
    vcpus = {int(v.get("id")): int(v.get("pid")) for v in root.iterfind("vcpus/vcpu")}
    threads = [t for t in tasks() if t["pid"] == pid]
    return {"pid": pid, "vcpus": vcpus, "threads": threads}


# --- the host state kvmrt changes ---------------------------------------------

def tasks() -> list[dict]:
    found = []
    for pid in sorted(int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
        for tid in tids:
            base = f"/proc/{pid}/task/{tid}"
            try:
                stat = Path(f"{base}/stat").read_text()
                status = Path(f"{base}/status").read_text()
            except OSError:
                continue
            comm = stat[stat.find("(") + 1:stat.rfind(")")]
            fields = stat[stat.rfind(")") + 2:].split()
            flags = int(fields[6])
            allowed = next((line.split(":", 1)[1].strip() for line in status.splitlines()
                            if line.startswith("Cpus_allowed_list:")), "")
            found.append({"pid": pid, "tid": tid, "comm": comm, "start": int(fields[19]),
                          "cpu": int(fields[36]), "allowed": allowed,
                          "kthread": bool(flags & PF_KTHREAD),
                          "pinned": bool(flags & PF_NO_SETAFFINITY)})
    return found


def allowed(tid: int) -> str | None:
    """``Cpus_allowed_list`` of a thread."""
    status = read(f"/proc/{tid}/status", "") or ""
    return next((line.split(":", 1)[1].strip() for line in status.splitlines()
                 if line.startswith("Cpus_allowed_list:")), None)


def interrupts() -> dict[str, str]:
    """IRQ number -> the rest of its /proc/interrupts line after the counts."""
    lines = Path("/proc/interrupts").read_text().splitlines()
    ncpus = len(lines[0].split())
    names = {}
    for line in lines[1:]:
        head, _, rest = line.partition(":")
        if head.strip().isdigit():
            names[head.strip()] = " ".join(rest.split()[ncpus:])
    return names


def snapshot() -> dict:
    """Every value kvmrt may change, as the kernel shows it (exact text)."""
    cpu_dir = Path("/sys/devices/system/cpu")
    irqs = {}
    names = interrupts()
    for d in sorted(Path("/proc/irq").iterdir(), key=lambda p: p.name):
        if d.name.isdigit():
            affinity = read(d / "smp_affinity_list")
            if affinity is not None:
                irqs[d.name] = {"affinity": affinity,
                                "effective": read(d / "effective_affinity_list"),
                                "name": names.get(d.name, "")}
    cpus = sorted(int(p.name[3:]) for p in cpu_dir.glob("cpu[0-9]*"))
    return {
        "irqs": irqs,
        "default_smp_affinity": read("/proc/irq/default_smp_affinity"),
        "workqueue_cpumask": read("/sys/devices/virtual/workqueue/cpumask"),
        "online_files": {str(c): read(cpu_dir / f"cpu{c}/online") for c in cpus},
        "online": read(cpu_dir / "online"),
        "tasks": tasks(),
        "cpusets": cpusets(),
    }


def cpusets() -> dict[str, dict]:
    """Every cgroup's ``cpuset.cpus`` and ``cpuset.cpus.effective`` (v2, or
    a v1 cpuset hierarchy), by its directory below /sys/fs/cgroup."""
    found = {}
    root = Path("/sys/fs/cgroup")
    for f in sorted(root.rglob("cpuset.cpus")):
        found[str(f.parent.relative_to(root))] = {
            "cpus": read(f), "effective": read(f.parent / "cpuset.cpus.effective")}
    return found


def journal() -> list[dict]:
    text = read(STATE_DIR / "journal.jsonl", "") or ""
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            lines.append({"torn": line})
    return lines


def host_facts() -> dict:
    cpu_dir = Path("/sys/devices/system/cpu")
    siblings = {p.parent.parent.name: read(p) for p in
                sorted(cpu_dir.glob("cpu[0-9]*/topology/thread_siblings_list"))}
    nodes = {p.name: read(p / "cpulist") for p in
             sorted(Path("/sys/devices/system/node").glob("node[0-9]*"))}
    packages = {p.parent.parent.name: read(p) for p in
                sorted(cpu_dir.glob("cpu[0-9]*/topology/physical_package_id"))}
    return {"uname": os.uname().release, "version": read("/proc/sys/kernel/version"),
            "realtime": read("/sys/kernel/realtime"), "cmdline": read("/proc/cmdline"),
            "siblings": siblings, "nodes": nodes, "packages": packages,
            "isolated": read(cpu_dir / "isolated"), "nohz_full": read(cpu_dir / "nohz_full"),
            "cpu0_online_file": (cpu_dir / "cpu0/online").exists()}


def write_config(path: str, sections: list[tuple[str, dict]]) -> str:
    text = ""
    for uuid, attrs in sections:
        text += f"[{uuid}]\n" + "".join(f"{k} = {v}\n" for k, v in attrs.items()) + "\n"
    Path(path).write_text(text)
    return path


def step(name: str) -> None:
    say(f"=== {name}")
    emit(f"time:{name}", round(time.monotonic() - T0, 1))
