"""Reading real machines as the kernel writes them.

sysfs values that end in NUL bytes (firmware and device-tree strings on
ARM and some x86 machines), lack the newline, or carry stray blanks, read
as the kernel and hwloc read them; NUMA layouts without a node 0, and
kernels without NUMA. Fixture trees from :mod:`hostgen`, read in-process
and by the installed tools (``KVMRT_FSROOT``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hostcheck_fixtures as F
import hostgen
from kvmrt.config.file import parse_config
from kvmrt.sets import PciAddress
from kvmrt.errors import HostReadError
from kvmrt.host import HostFS, read_host
from kvmrt.host.cgroups import read_cpusets
from kvmrt.host.cpuctl import is_online, set_online
from kvmrt.host.irqs import read_default_affinity, read_irqs, read_workqueue_mask
from kvmrt.hostcheck import Status, validate_host
from kvmrt.placement import place
from kvmrt.validate import validate

BIN = Path(sys.executable).parent
CPU = hostgen.CPU

# How some kernels write a value ``v`` (the fixtures write ``v\n``).
QUIRKS = {
    "nul": lambda v: v + "\0",
    "nul-padded": lambda v: v + "\0" * 7,
    "newline-nul": lambda v: v + "\n\0",
    "nul-newline": lambda v: v + "\0\n",
    "no-newline": lambda v: v,
    "blanks": lambda v: f" {v} \t\n",
    "crlf": lambda v: v + "\r\n",
    "two-newlines": lambda v: v + "\n\n",
}


def tool(name: str, *args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KVMRT_FSROOT": str(root)}
    exe = shutil.which(name, path=str(BIN)) or name
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)


def snapshot(root: Path) -> dict:
    """What kvmrt reads of a host: topology, PCI, IRQs, masks, cpusets, online state."""
    fs = HostFS(root)
    host = read_host(fs)
    return {"host": host, "irqs": read_irqs(fs), "default": read_default_affinity(fs),
            "workqueue": read_workqueue_mask(fs), "cpusets": read_cpusets(fs),
            "online": {c: is_online(fs, c) for c in host.topology.all_cpus}}


def quirky(make_host, spec: hostgen.HostSpec, quirk: str) -> tuple[Path, Path]:
    """A clean tree of ``spec`` and one whose one-line sys and proc/irq values
    are written the ``quirk`` way."""
    clean, odd = make_host(spec), make_host(spec)
    changed = [p for below in ("sys", "proc/irq")
               for p in hostgen.rewrite_values(odd, below, QUIRKS[quirk])]
    assert len(changed) > 50
    return clean, odd


# -- values with NULs and odd whitespace ------------------------------------------
@pytest.mark.parametrize("quirk", QUIRKS)
@pytest.mark.parametrize("spec", [hostgen.threadripper_cgroup_v1, hostgen.offline_4c2t,
                                  hostgen.legacy_1s2c2t])
def test_quirky_values_read_like_clean_ones(make_host, spec, quirk: str) -> None:
    clean, odd = quirky(make_host, spec(), quirk)
    assert snapshot(odd) == snapshot(clean)


@pytest.mark.parametrize("quirk", ["nul", "newline-nul", "blanks"])
def test_show_host_reads_quirky_values(make_host, quirk: str) -> None:
    clean, odd = quirky(make_host, hostgen.threadripper_5975wx(), quirk)
    for args in ((), ("--json",)):
        want = tool("kvmrt-show-host", *args, root=clean)
        got = tool("kvmrt-show-host", *args, root=odd)
        assert (got.returncode, got.stderr) == (0, "")
        assert got.stdout == want.stdout
    assert "node n3" in got.stdout or json.loads(got.stdout)["nodes"][3]["cpus"]


def test_validate_host_reads_quirky_values(tmp_path: Path) -> None:
    spec = hostgen.threadripper_5975wx()
    clean = F.build_rt_host(tmp_path / "clean", spec, F.tuned())
    odd = F.build_rt_host(tmp_path / "odd", spec, F.tuned())
    hostgen.rewrite_values(odd, "sys", QUIRKS["nul"])
    hostgen.rewrite_values(odd, "proc/sys", QUIRKS["no-newline"])
    want = json.loads(tool("kvmrt-validate-host", "--json", "-c", "test:///default",
                           root=clean).stdout)
    got = json.loads(tool("kvmrt-validate-host", "--json", "-c", "test:///default",
                          root=odd).stdout)
    assert got == want


def test_a_cpu_online_file_ending_in_nul_reads_and_writes(offline_host: Path) -> None:
    fs = HostFS(offline_host)
    (offline_host / CPU / "cpu5/online").write_text("0\0")
    (offline_host / CPU / "cpu1/online").write_text("1\0\n")
    assert not is_online(fs, 5) and is_online(fs, 1)
    topo = read_host(fs).topology
    assert not topo.cpus[5].online and topo.cpus[1].online
    set_online(fs, 5, True)
    assert is_online(fs, 5)


def test_a_nul_inside_a_value_is_still_refused_naming_the_file(small: Path) -> None:
    (small / CPU / "online").write_text("0-1\0garbage\n")
    with pytest.raises(HostReadError) as err:
        read_host(HostFS(small))
    assert f"{small / CPU / 'online'}: not a cpulist" in str(err.value)
    proc = tool("kvmrt-show-host", root=small)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{small / CPU / 'online'}" in proc.stderr


# -- NUMA nodes: none made up --------------------------------------------------------
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"


def vm_cfg(cpuset: str, numatune: str = "auto", rt: bool = False) -> str:
    return (f"[{RT_UUID}]\nname = vm\ncpuset = {cpuset}\nnumatune = {numatune}\n"
            f"rt = {rt}\n")


def diagnostics(text: str, root: Path) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in validate(parse_config(text, "k.cfg"),
                                                  read_host(HostFS(root)))]


def placed(text: str, root: Path):
    return place(parse_config(text, "k.cfg").vms[0], read_host(HostFS(root)).topology)


@pytest.fixture
def no_node0(make_host) -> Path:
    """The Threadripper with its NUMA nodes numbered 1-4 by the firmware."""
    root = make_host(hostgen.threadripper_5975wx())
    hostgen.renumber_nodes(root, {0: 1, 1: 2, 2: 3, 3: 4})
    return root


def test_a_host_without_node_0_has_only_the_nodes_sysfs_shows(no_node0: Path) -> None:
    topo = read_host(HostFS(no_node0)).topology
    assert list(topo.nodes) == [1, 2, 3, 4]
    assert topo.nodes[1] == set(range(0, 8)) | set(range(32, 40))
    assert {c.node for c in topo.cpus.values()} == {1, 2, 3, 4}
    assert read_host(HostFS(no_node0)).pci[PciAddress.parse("0000:21:00.0")].numa_node == 3
    text = tool("kvmrt-show-host", root=no_node0).stdout
    assert "node n0" not in text and [f"node n{n}" in text for n in (1, 2, 3, 4)] == [True] * 4
    data = json.loads(tool("kvmrt-show-host", "--json", root=no_node0).stdout)
    assert [n["node"] for n in data["nodes"]] == [1, 2, 3, 4]


def test_node_0_of_a_cpuset_or_numatune_is_unknown_without_node_0(no_node0: Path) -> None:
    assert placed(vm_cfg("n1"), no_node0).numatune == {1}
    found = diagnostics(vm_cfg("n0"), no_node0)
    assert [c for c, _ in found] == ["unknown-cpu"]
    assert "NUMA node 0" in found[0][1] and "1-4" in found[0][1]
    found = diagnostics(vm_cfg("n1", numatune="0"), no_node0)
    assert [c for c, _ in found] == ["unknown-node"]
    assert "host has nodes 1-4" in found[0][1]


def test_an_offline_node_0_with_its_directory_left_is_not_a_node(make_host) -> None:
    root = make_host(hostgen.offline_4c2t())
    hostgen.renumber_nodes(root, {2: 0, 0: 1, 1: 2})  # node 0 is memory-only
    (root / hostgen.NODE / "online").write_text("1-2\n")  # and its memory went away
    topo = read_host(HostFS(root)).topology
    assert list(topo.nodes) == [1, 2]
    assert "memory-only" not in tool("kvmrt-show-host", root=root).stdout
    assert "NUMA node 0" in diagnostics(vm_cfg("n0"), root)[0][1]


def test_cpus_of_a_node_sysfs_does_not_show_are_not_lost(make_host) -> None:
    root = make_host(hostgen.offline_4c2t())
    (root / hostgen.NODE / "online").write_text("1-2\n")  # node 0 offline, links left
    topo = read_host(HostFS(root)).topology
    assert list(topo.nodes) == [1, 2]
    assert sorted(c for c, i in topo.cpus.items() if i.node is None) == [0, 1, 4, 5]
    text = tool("kvmrt-show-host", root=root).stdout
    assert "node n0" not in text and "on no NUMA node sysfs shows: CPUs 0-1,4\n" in text


def test_a_kernel_without_numa_has_one_implicit_node_0(legacy: Path) -> None:
    topo = read_host(HostFS(legacy)).topology
    assert topo.nodes == {0: frozenset({0, 1, 2, 3})}
    assert {c.node for c in topo.cpus.values()} == {0}
    assert placed(vm_cfg("n0"), legacy).cpuset == {0, 1, 2, 3}
    assert placed(vm_cfg("1-2"), legacy).numatune == {0}
    assert "NUMA node 1" in diagnostics(vm_cfg("n1"), legacy)[0][1]
    assert "node n0" in tool("kvmrt-show-host", root=legacy).stdout


def test_validate_host_reads_the_memory_of_the_nodes_there_are(tmp_path: Path) -> None:
    root = F.build_rt_host(tmp_path / "h", hostgen.threadripper_5975wx(),
                           F.tuned(hugepages_1g=0))
    hostgen.renumber_nodes(root, {0: 1, 1: 2, 2: 3, 3: 4})
    cfg = parse_config(f"[{RT_UUID}]\nname = RedHawk-8.4-RT\ncpuset = n2\nrt = True\n", "k.cfg")
    found = {r.id: r.finding for r in
             validate_host(HostFS(root), config=cfg, uri="test:///default").results}
    assert found["hugepages"].status is Status.WARN
    assert "node(s) 2 " in found["hugepages"].message
    assert "/sys/devices/system/node/node2/hugepages" in found["hugepages"].remedy
    assert "node(s) 2 have 32 GiB" in found["rt-memory"].message


def test_the_topology_and_hotplug_read_online_alike(offline_host: Path) -> None:
    """One reader of ``cpuN/online``: a value that is neither 0 nor 1 is an
    error naming the file for the topology too, not an offline CPU."""
    fs = HostFS(offline_host)
    (offline_host / CPU / "cpu5/online").write_text("2\n")
    with pytest.raises(HostReadError, match=r"cpu5/online.*not 0 or 1: '2'"):
        is_online(fs, 5)
    with pytest.raises(HostReadError, match=r"cpu5/online.*not 0 or 1: '2'"):
        read_host(fs)
