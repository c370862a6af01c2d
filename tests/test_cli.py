"""The three foundation tools, run as a user runs them: installed commands
in a subprocess, on fixture hosts (KVMRT_FSROOT) and on this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
TR_CFG = EXAMPLES / "threadripper-5975wx.cfg"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def tr_host(tmp_path_factory):
    import hostgen
    return hostgen.build_host(tmp_path_factory.mktemp("tr"), hostgen.threadripper_5975wx())


@pytest.fixture(autouse=True)
def libvirt_in_step(tmp_path, monkeypatch, tr_host):
    """libvirt's test driver with the example's VMs defined and in step, so
    that the outputs below speak of the config alone."""
    import libvirt

    from kvmrt.config.file import load_config
    from kvmrt.host import HostFS, read_host
    from kvmrt.libvirt_sync.domxml import apply_config
    from kvmrt.placement import place

    topo = read_host(HostFS(tr_host)).topology
    domains = []
    for vm in load_config(str(TR_CFG)).vms:
        base = (f"<domain type='test'><name>{vm.name}</name><uuid>{vm.uuid}</uuid>"
                "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
                "<devices/></domain>")
        domains.append(apply_config(base, place(vm, topo)))
    node = tmp_path / "node.xml"
    node.write_text("<node>" + "".join(domains) + "</node>")
    uri = f"test://{node}"
    conn = libvirt.open(uri)  # fails here, not in the tools, if the file is wrong
    conn.close()
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", uri)
    return uri


def run(tool: str, *args: str, root: Path | None = None, check: int | None = 0):
    env = dict(os.environ)
    env.pop("KVMRT_FSROOT", None)
    if root is not None:
        env["KVMRT_FSROOT"] = str(root)
    exe = shutil.which(tool, path=str(BIN)) or tool
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def test_show_config_json_on_the_spec_example(threadripper):
    out = json.loads(run("kvmrt-show-config", "-f", str(TR_CFG), "--json",
                         root=threadripper).stdout)
    assert [vm["name"] for vm in out] == ["RedHawk-8.4-RT"]
    vm = out[0]
    assert list(vm) == [
        "uuid", "name", "title", "description", "rt", "disabled", "autostart", "hide_kvm",
        "rt_memory", "nr_vcpus", "cpu_topology", "cpuset", "owned_cpus", "usable_cpus",
        "vcpu_cpus", "emulator_cpus", "offline_cpus", "shielded_cpus", "irq_cpu",
        "numatune", "pcidevs"]
    assert vm["nr_vcpus"] == 15 and vm["vcpu_cpus"] == [[c] for c in range(8, 23)]
    assert vm["emulator_cpus"] == [23] and vm["irq_cpu"] == 23
    assert vm["offline_cpus"] == list(range(40, 56)) and vm["numatune"] == [1, 2]


def test_show_config_all_includes_disabled(threadripper):
    out = json.loads(run("kvmrt-show-config", "-f", str(TR_CFG), "--json", "--all",
                         root=threadripper).stdout)
    assert [vm["name"] for vm in out] == ["RedHawk-8.4-RT", "RedHawk-8.4"]
    assert out[1]["vcpu_cpus"] == [[], []] and out[1]["numatune"] is None


def test_show_config_text(threadripper):
    out = run("kvmrt-show-config", "-f", str(TR_CFG), root=threadripper).stdout
    assert "vCPU -> CPU    0-14 -> 8-22" in out
    assert "offline CPUs   40-55 (SMT siblings)" in out
    assert "IRQ CPU        23" in out and "numatune       nodes 1-2 (auto)" in out


def test_show_config_shows_the_chosen_vms_that_can_be_placed(small, tmp_path):
    """The named VMs (a disabled one too) in config order, else the active
    ones; a VM with a malformed value or a CPU the host lacks is left out
    and its error goes to stderr."""
    cfg = tmp_path / "k.cfg"
    cfg.write_text("".join(
        f"[00000000-0000-4000-8000-00000000000{i}]\nname = {name}\n{extra}\n"
        for i, (name, extra) in enumerate([
            ("a", "cpuset = 0-1\n"), ("b", "cpuset = 2\ndisabled = yes\n"),
            ("c", "cpuset = 9\n"), ("d", "nr_vcpus = many\n"), ("e", "")])))
    def shown(*args: str) -> list[str]:
        proc = run("kvmrt-show-config", "-f", str(cfg), "--json", *args, root=small, check=1)
        assert [line.split(": ")[0] for line in proc.stderr.splitlines()] == [
            f"{cfg}:12", f"{cfg}:16"]
        return [vm["name"] for vm in json.loads(proc.stdout)]

    assert shown() == ["a", "e"]
    assert shown("--all") == ["a", "b", "e"]
    assert shown("e", "d", "c", "b") == ["b", "e"]


def test_validate_config_text_and_exit(threadripper, tmp_path):
    cfg = tmp_path / "k.cfg"
    cfg.write_text(TR_CFG.read_text().replace("cpuset = n1,n2", "cpuset = n1,n2,n7"))
    proc = run("kvmrt-validate-config", "-f", str(cfg), root=threadripper, check=1)
    assert proc.stdout.splitlines() == [
        f"{cfg}:7: error: RedHawk-8.4-RT: cpuset: NUMA node 7 does not exist "
        "(host has NUMA nodes 0-3) in 'n1-2,n7'",
        f"{cfg}: 1 error, 0 warnings"]


def test_validate_config_json(threadripper):
    out = json.loads(run("kvmrt-validate-config", "-f", str(TR_CFG), "--json", "--all",
                         root=threadripper).stdout)
    assert out["errors"] == 0 and out["warnings"] == 1
    assert out["diagnostics"] == [{
        "severity": "warning", "code": "rt-multi-node", "vms": ["RedHawk-8.4-RT"],
        "attribute": "cpuset", "line": 7,
        "message": "cpuset spans NUMA nodes 1-2; an rt VM is best kept on one node"}]


def test_show_host_json_and_owners(threadripper):
    out = json.loads(run("kvmrt-show-host", "-f", str(TR_CFG), "--json",
                         root=threadripper).stdout)
    cpus = {c["cpu"]: c for c in out["cpus"]}
    assert cpus[40] == {"cpu": 40, "online": True, "package": 0, "die": 0, "core": 8,
                        "node": 1, "siblings": [8, 40], "vms": ["RedHawk-8.4-RT"]}
    assert out["nodes"][2] == {"node": 2, "cpus": list(range(16, 24)) + list(range(48, 56))}
    pci = {d["address"]: d for d in out["pci"]}
    assert pci["0000:22:00.1"]["group_members"] == ["0000:22:00.0", "0000:22:00.1"]
    assert pci["0000:22:00.1"]["vms"] == ["RedHawk-8.4-RT"]
    assert pci["0000:21:00.0"]["numa_node"] == 2


def test_show_host_tree_marks_offline_cpus(offline_host):
    out = run("kvmrt-show-host", root=offline_host).stdout
    assert "offline, topology hidden by the kernel: CPUs 5,7" in out
    assert "memory-only nodes (no CPUs): 2" in out


def test_the_tools_work_on_this_machine():
    host = json.loads(run("kvmrt-show-host", "--json").stdout)
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    from kvmrt.sets import IdSet
    assert {c["cpu"] for c in host["cpus"] if c["online"]} == IdSet.parse(online)
    run("kvmrt-validate-config", "-f", str(EXAMPLES / "any-host.cfg"))
    out = json.loads(run("kvmrt-show-config", "-f", str(EXAMPLES / "any-host.cfg"),
                         "--json").stdout)
    assert [vm["name"] for vm in out] == ["kvmrt-demo-office"]


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "no such file"),
    (lambda p: p.mkdir(), "directory"),
    (lambda p: p.write_bytes(b"\x00\x01\xffELF\x02"), "not a text file"),
    (lambda p: p.write_text("just some words\n"), "k.cfg:1:"),
])
@pytest.mark.parametrize("tool", ["kvmrt-validate-config", "kvmrt-show-config",
                                  "kvmrt-show-host"])
def test_bad_config_files_give_one_line_and_exit_1(tool, make, message, tmp_path, small):
    path = tmp_path / "k.cfg"
    make(path)
    proc = run(tool, "-f", str(path), root=small, check=1)
    assert "Traceback" not in proc.stderr + proc.stdout
    assert message in proc.stderr + proc.stdout


def test_host_root_without_sysfs(tmp_path):
    proc = run("kvmrt-show-host", root=tmp_path, check=1)
    assert len(proc.stderr.splitlines()) == 1 and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr


def test_unknown_vm_name(threadripper):
    proc = run("kvmrt-show-config", "-f", str(TR_CFG), "nope", root=threadripper, check=1)
    assert proc.stderr.strip().endswith("no VM named 'nope' (by name or UUID)")


@pytest.mark.parametrize("tool", ["kvmrt-validate-config", "kvmrt-show-config",
                                  "kvmrt-show-host"])
def test_help_and_usage_errors(tool):
    assert "Usage:" in run(tool, "--help").stdout
    assert run(tool, "--no-such-option", check=2).returncode == 2
