"""kvmrt-stat tells the truth (issue 10, section 2), on the Threadripper
fixture host with libvirt's test driver (as tests/test_boot_cli.py):

- QEMU's own kernel threads (``kvm-nx-lpage-re``, ``vhost-PID``: the
  kernel's PF_USER_WORKER threads inside QEMU) are neither emulator
  threads nor a disturbance; a threaded IRQ handler follows its IRQ;
- an ordinary user, who cannot read libvirt's status file, gets the same
  answer as root;
- a paused VM runs, for stat, boot, shutdown and their --dry-run alike;
- what runs is compared with the config, and stat says what applies it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import hostgen
from conftest import stop_watchers
from kvmrt.config.file import load_config, parse_config
from kvmrt.host import HostFS, qemu, read_host
from kvmrt.host.tasks import read_tasks
from kvmrt.lifecycle import pinning_problems
from kvmrt.placement import place
from kvmrt.status import collect
from kvmrt.tuning.journal import JournalState
from test_boot_cli import BIN, EXAMPLE, NODE, pin_like_libvirt

DOM = hostgen.REDHAWK_RT
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def booted(host):
    """RedHawk-8.4-RT tuned by kvmrt-boot, its threads pinned as libvirt does."""
    kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")
    pin_like_libvirt(host)
    return host


@pytest.fixture
def host(make_host):
    return make_host(hostgen.threadripper_5975wx())


def kvmrt(root: Path, tool: str, *args: str, uri: str = NODE) -> subprocess.CompletedProcess:
    """``tool`` as a user runs it on the fixture host, libvirt at ``uri``."""
    env = {**os.environ, "KVMRT_FSROOT": str(root), "LIBVIRT_DEFAULT_URI": uri}
    env.pop("KVMRT_STATE_DIR", None)
    proc = subprocess.run([str(BIN / tool), "-f", str(EXAMPLE), *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


def stat(root: Path, *args: str, node: str = NODE) -> dict:
    out = kvmrt(root, "kvmrt-stat", "--json", *args, "RedHawk-8.4-RT", uri=node).stdout
    return json.loads(out)[0]


def test_qemus_kernel_threads_are_not_emulator_threads(host):
    """kvm-nx-lpage-re and vhost-PID run in QEMU but are the kernel's: the
    emulator pin does not apply to them (no note at boot), stat gives them
    the role 'kernel' and does not count them."""
    fs = HostFS(host)
    workers = {t.comm: t for t in read_tasks(fs, [DOM.pid]) if t.worker}
    assert set(workers) == {"kvm-nx-lpage-re", f"vhost-{DOM.pid}"}
    assert not any(t.kernel for t in workers.values())   # PF_USER_WORKER, not PF_KTHREAD
    p = place(load_config(str(EXAMPLE)).vms[0], read_host(fs).topology)
    pin_like_libvirt(host)
    status = qemu.read_qemu_status(fs, DOM.name)
    assert pinning_problems(p, status, read_tasks(fs, [DOM.pid])) == []
    out = kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")
    assert "kvm-nx-lpage-re" not in out.stdout + out.stderr
    s = stat(host, "-t")
    roles = {t["name"]: t["role"] for t in s["threads"]}
    assert roles["kvm-nx-lpage-re"] == roles[f"vhost-{DOM.pid}"] == "kernel"
    assert s["tuning"] == "ok", s["problems"]


def test_a_threaded_irq_handler_is_judged_by_its_irq(make_host):
    """irq/29-nvme0q0 last ran its IRQ on a shielded CPU: the kernel moves it
    with the IRQ's next interrupt, and the IRQ itself is off them."""
    spec = hostgen.threadripper_5975wx()
    handler = hostgen.TaskSpec(310, "irq/29-nvme0q0", kernel=True, affinity=frozenset({9}))
    root = make_host(dataclasses.replace(
        spec, tasks=hostgen.standard_tasks(spec) + (handler,)))
    kvmrt(root, "kvmrt-boot", "RedHawk-8.4-RT")
    pin_like_libvirt(root)
    hostgen.kernel_sets_affinity(root, 310, None, {9})   # it followed IRQ 29 before
    s = stat(root)
    assert s["tuning"] == "ok", s["problems"]


def test_the_vms_own_vhost_kernel_thread_is_neither_moved_nor_foreign(make_host):
    """Before Linux 6.4 (RHEL 8 and 9, RedHawk 8) a vhost worker is a kernel
    thread ``vhost-PID`` of its own, which libvirt puts in the VM's emulator
    cgroup: on its emulator CPU, a shielded one. A retune leaves it there
    and stat does not count it."""
    spec = hostgen.threadripper_5975wx()
    vhost = hostgen.TaskSpec(320, f"vhost-{DOM.pid}", kernel=True)
    root = make_host(dataclasses.replace(spec, tasks=hostgen.standard_tasks(spec) + (vhost,)))
    kvmrt(root, "kvmrt-boot", "RedHawk-8.4-RT")
    pin_like_libvirt(root)
    hostgen.kernel_sets_affinity(root, 320, None, {23})   # the VM's emulator cgroup
    assert stat(root)["tuning"] == "ok"
    kvmrt(root, "kvmrt-boot", "RedHawk-8.4-RT")
    assert hostgen.thread_affinity(root, 320) == {23}
    assert stat(root)["tuning"] == "ok"


def test_an_ordinary_user_gets_the_same_answer(booted):
    """libvirt's status file is root's (0600); without it stat finds QEMU by
    its -uuid argument and the vCPUs by their names, in that process only."""
    as_root = stat(booted, "-t")
    hostgen.hide_status_file(booted, DOM.name)
    with pytest.raises(PermissionError):
        (booted / f"run/libvirt/qemu/{DOM.name}.xml").read_text()
    as_user = stat(booted, "-t")
    assert as_user == as_root
    assert as_user["tuning"] == "ok" and "vCPU 0" in {t["role"] for t in as_user["threads"]}


@pytest.fixture
def open_dir():
    """A directory every user may enter (pytest's own are root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="kvmrt-stat-"))
    top.chmod(0o755)
    yield top
    stop_watchers(top)
    shutil.rmtree(top, ignore_errors=True)


def test_user_nobody_runs_kvmrt_stat_while_the_vm_runs(open_dir):
    """As user nobody (setpriv), libvirt's status file root's alone (0600)
    and the rest of the host readable as on a real one: the same answer as
    root's, through the public API and /proc."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    closed = [p for p in ROOT.parents if not p.stat().st_mode & 0o001]
    if closed:
        pytest.skip(f"other users cannot enter {closed[0]}, which holds this checkout")
    root = hostgen.build_host(open_dir / "host", hostgen.threadripper_5975wx())
    kvmrt(root, "kvmrt-boot", "RedHawk-8.4-RT")
    pin_like_libvirt(root)
    as_root = stat(root, "-t")
    for path in [open_dir, *open_dir.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    (root / f"run/libvirt/qemu/{DOM.name}.xml").chmod(0o600)
    home = open_dir / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    env = {"KVMRT_FSROOT": str(root), "LIBVIRT_DEFAULT_URI": NODE, "HOME": str(home),
           "PATH": os.environ["PATH"]}

    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
             str(BIN / "kvmrt-stat"), "-f", str(EXAMPLE), *args],
            env=env, capture_output=True, text=True, timeout=120, cwd="/")

    proc = as_nobody("--json", "-t", "RedHawk-8.4-RT")
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)[0]
    assert found == as_root
    assert found["state"] == "running" and found["tuning"] == "ok"
    assert "vCPU 0" in {t["role"] for t in found["threads"]}
    # Monitoring runs as an ordinary user too (the vfio IRQ watcher's VM
    # is found the same way).
    proc = as_nobody("--check")
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.startswith("OK: ")


@pytest.fixture
def paused_node(tmp_path) -> str:
    """The test driver's node file with RedHawk-8.4-RT paused."""
    text = (ROOT / "tests/data/node.xml").read_text()
    head, sep, rest = text.partition("<name>RedHawk-8.4-RT</name>")
    node = tmp_path / "node.xml"
    node.write_text(head + sep + rest.replace(
        "</domain>", "<test:runstate>3</test:runstate></domain>", 1))
    return f"test://{node}"


def test_a_paused_vm_runs_for_stat_boot_and_shutdown_alike(booted, paused_node):
    s = stat(booted, node=paused_node)
    assert (s["state"], s["tuning"]) == ("paused", "ok"), s
    out = kvmrt(booted, "kvmrt-boot", "--dry-run", "RedHawk-8.4-RT", uri=paused_node).stdout
    assert "RedHawk-8.4-RT: would be retuned" in out
    out = kvmrt(booted, "kvmrt-boot", "RedHawk-8.4-RT", uri=paused_node).stdout
    assert "RedHawk-8.4-RT: retuned" in out
    out = kvmrt(booted, "kvmrt-shutdown", "--dry-run", uri=paused_node).stdout
    assert "would shut down: RedHawk-8.4-RT" in out and "CPU 40: offline -> online" in out
    out = kvmrt(booted, "kvmrt-shutdown", "-v", "--timeout", "5", uri=paused_node).stdout
    assert "RedHawk-8.4-RT: resuming" in out and "RedHawk-8.4-RT: stopped" in out
    assert "host: restored" in out


def test_stat_says_when_what_runs_differs_from_the_config(booted):
    """The test driver's RedHawk-8.4-RT runs 4 vCPUs; the config asks 15."""
    s = stat(booted)
    assert s["pending"] == [
        "runs 4 vCPUs, the config has 15: a restart applies it "
        "(kvmrt-shutdown RedHawk-8.4-RT, then kvmrt-boot RedHawk-8.4-RT)"]
    text = kvmrt(booted, "kvmrt-stat", "RedHawk-8.4-RT").stdout
    assert "    config: runs 4 vCPUs, the config has 15" in text


def test_pins_that_differ_from_the_config_say_what_applies_them(host):
    """What libvirt runs (its Runtime) against the placement: pins and the
    shielded CPUs apply with kvmrt-boot on the running VM."""
    from kvmrt.libvirt_sync.domains import Runtime
    from kvmrt.status import pending
    from kvmrt.tuning.model import TunedVm
    p = place(load_config(str(EXAMPLE)).vms[0], read_host(HostFS(host)).topology)
    pins = tuple(p.vcpu_cpus)
    same = Runtime(vcpus=15, vcpu_pins=pins, emulator_pin=p.emulator_cpus, iothread_pins={})
    assert pending(p, same, TunedVm.of(p)) == []
    moved = dataclasses.replace(same, vcpu_pins=(frozenset({30}),) + pins[1:],
                                emulator_pin=frozenset({31}))
    old = dataclasses.replace(TunedVm.of(p), shielded=frozenset(range(8, 16)))
    assert pending(p, moved, old) == [
        "vCPU 0 pinned to 30, the config has 8 (kvmrt-boot RedHawk-8.4-RT applies it)",
        "emulator pinned to 31, the config has 23 (kvmrt-boot RedHawk-8.4-RT applies it)",
        "host tuned for CPUs 8-15, the config has 8-23,40-55 "
        "(kvmrt-boot RedHawk-8.4-RT applies it)"]


def test_a_vm_whose_section_has_an_error_has_no_placement(host):
    """stat places VMs as show-config does: a value that failed to parse
    gives no vCPU count or cpuset made up from the defaults."""
    text = EXAMPLE.read_text().replace("nr_vcpus = auto", "nr_vcpus = many")
    vms = parse_config(text).vms[:1]
    fs = HostFS(host)
    (found,) = collect(fs, vms, {}, read_host(fs).topology, JournalState(), threads=False)
    assert found.as_json()["vcpus"] is None and found.as_json()["cpuset"] == []
    good = parse_config(EXAMPLE.read_text()).vms[:1]
    (found,) = collect(fs, good, {}, read_host(fs).topology, JournalState(), threads=False)
    assert found.as_json()["vcpus"] == 15


STAT_MODULES = """
import sys
from kvmrt.commands.stat import main
try:
    main(sys.argv[1:], prog_name="kvmrt-stat")
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith("kvmrt.guestsvc")), file=sys.stderr)
"""


def test_stat_of_an_rt_vm_without_guest_services_loads_no_guest_service_code(booted):
    """kvmrt-stat -t of a running rt VM that has no guest services does not
    import the guest services' daemon and its host checks (issue 14: ~50 ms
    of the 1.0x ps budget)."""
    env = {**os.environ, "KVMRT_FSROOT": str(booted), "LIBVIRT_DEFAULT_URI": NODE}
    env.pop("KVMRT_STATE_DIR", None)
    proc = subprocess.run([str(BIN / "python"), "-c", STAT_MODULES, "-f", str(EXAMPLE), "-t",
                           "RedHawk-8.4-RT"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert "vCPU 0" in proc.stdout and "ok" in proc.stdout, (proc.stdout, proc.stderr)
    assert proc.stderr.splitlines()[-1] == "[]"
