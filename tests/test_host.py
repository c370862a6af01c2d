"""The host reader over generated sysfs trees and over this machine's ``/``."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hostgen
from kvmrt.sets import PciAddress, format_ids
from kvmrt.errors import HostReadError, SetSyntaxError
from kvmrt.host import HostFS, read_host, read_pci, read_topology
from kvmrt.host.fs import parse_cpulist

CPU = "sys/devices/system/cpu"


def pci(text: str) -> PciAddress:
    return PciAddress.parse(text)


def ids(text: str) -> frozenset[int]:
    return parse_cpulist(text)


# -- HostFS -----------------------------------------------------------------
def test_hostfs_reads_below_the_given_root(small: Path) -> None:
    fs = HostFS(small)
    assert fs.read(f"{CPU}/present") == "0-3"
    assert fs.read(f"/{CPU}/present") == "0-3", "a leading / must not escape the root"
    assert fs.path(f"/{CPU}/present") == small / CPU / "present"


def test_hostfs_root_comes_from_kvmrt_fsroot(small: Path, monkeypatch) -> None:
    monkeypatch.setenv("KVMRT_FSROOT", str(small))
    assert HostFS().root == small
    assert read_host().topology.all_cpus == {0, 1, 2, 3}
    assert HostFS("/elsewhere").root == Path("/elsewhere"), "an explicit root wins"


def test_hostfs_root_defaults_to_slash(monkeypatch) -> None:
    monkeypatch.delenv("KVMRT_FSROOT", raising=False)
    assert HostFS().root == Path("/")
    monkeypatch.setenv("KVMRT_FSROOT", "")
    assert HostFS().root == Path("/")


def test_hostfs_absent_file_is_default_or_file_not_found(small: Path) -> None:
    fs = HostFS(small)
    assert fs.read(f"{CPU}/cpu0/online", default=None) is None
    with pytest.raises(FileNotFoundError):
        fs.read(f"{CPU}/cpu0/online")
    with pytest.raises(FileNotFoundError):
        fs.read_cpulist(f"{CPU}/nosuch")
    assert fs.read_int(f"{CPU}/nosuch", default=7) == 7
    assert fs.listdir("sys/nosuch", default=[]) == []
    assert fs.readlink_name("sys/bus/pci/devices/0000:00:00.0/driver", default=None) is None


def test_hostfs_lists_reads_links_and_numbers(small: Path) -> None:
    fs = HostFS(small)
    assert fs.listdir("sys/bus/pci/devices") == ["0000:00:00.0", "0000:00:03.0"]
    assert fs.readlink_name("sys/bus/pci/devices/0000:00:03.0/driver") == "virtio-pci"
    assert fs.read_cpulist(f"{CPU}/online") == {0, 1, 2, 3}
    assert fs.read_int("sys/bus/pci/devices/0000:00:03.0/class", base=16) == 0x020000
    assert fs.exists(f"{CPU}/cpu3") and fs.is_dir(f"{CPU}/cpu3")


def test_hostfs_write_replaces_an_existing_file_only(offline_host: Path) -> None:
    fs = HostFS(offline_host)
    fs.write(f"{CPU}/cpu5/online", "1")
    assert fs.read(f"{CPU}/cpu5/online") == "1"
    with pytest.raises(FileNotFoundError):
        fs.write(f"{CPU}/cpu0/online", "0")
    assert not fs.exists(f"{CPU}/cpu0/online"), "write must not create kernel files"


def test_unparsable_kernel_file_names_the_file(small: Path) -> None:
    fs = HostFS(small)
    fs.write(f"{CPU}/online", "0-x")
    with pytest.raises(HostReadError, match=r"cpu/online"):
        read_topology(fs)


@pytest.mark.parametrize(
    "text, expected",
    [("0-3,8,10-11\n", {0, 1, 2, 3, 8, 10, 11}), ("", set()), ("\n", set()), ("5", {5})],
)
def test_parse_cpulist(text: str, expected: set[int]) -> None:
    assert parse_cpulist(text) == expected
    assert type(parse_cpulist(text)) is frozenset


def test_parse_cpulist_rejects_garbage() -> None:
    with pytest.raises(SetSyntaxError):
        parse_cpulist("0-3,,4")


@given(st.frozensets(st.integers(0, 300)))
def test_parse_cpulist_reads_what_the_kernel_prints(cpus: frozenset[int]) -> None:
    assert parse_cpulist(format_ids(cpus) + "\n") == cpus


# -- topology -----------------------------------------------------------------
def test_threadripper_threads_cores_and_nodes(threadripper: Path) -> None:
    topo = read_topology(HostFS(threadripper))
    assert topo.all_cpus == topo.online_cpus == set(range(64))
    assert all(topo.siblings(k) == {k, k + 32} == topo.siblings(k + 32) for k in range(32))
    assert topo.cores == {c: frozenset({c, c + 32}) for c in range(32)}
    assert topo.packages == topo.dies == {0: frozenset(range(64))}
    assert topo.nodes == {
        n: frozenset(range(8 * n, 8 * n + 8)) | frozenset(range(32 + 8 * n, 40 + 8 * n))
        for n in range(4)
    }
    cpu = topo.cpus[45]
    assert (cpu.package, cpu.die, cpu.core, cpu.node, cpu.online) == (0, 0, 13, 1, True)


def test_xeon_core_numbering_ignores_core_id_gaps_and_repeats(xeon: Path) -> None:
    topo = read_topology(HostFS(xeon))
    assert len(topo.cores) == 40, "core_id repeats in both packages; cores must not merge"
    assert topo.cores == {c: frozenset({c, c + 40}) for c in range(40)}
    assert topo.cpus[5].core == 5, "core_id 8 (after the gap) is logical core 5"
    assert topo.cpus[20].core == topo.cpus[60].core == 20, "package 1 numbers after package 0"
    pkg0 = frozenset(range(20)) | frozenset(range(40, 60))
    pkg1 = frozenset(range(20, 40)) | frozenset(range(60, 80))
    assert topo.packages == {0: pkg0, 1: pkg1}
    assert topo.dies == {0: pkg0, 1: pkg1}
    assert topo.nodes == {0: pkg0, 1: pkg1}


def test_multidie_numbers_dies_and_cores_host_wide(multidie: Path) -> None:
    topo = read_topology(HostFS(multidie))
    assert len(topo.cpus) == 32
    assert topo.dies == {
        d: frozenset(range(4 * d, 4 * d + 4)) | frozenset(range(16 + 4 * d, 20 + 4 * d))
        for d in range(4)
    }
    assert topo.cores == {c: frozenset({c, c + 16}) for c in range(16)}
    assert [topo.cpus[c].die for c in (0, 4, 8, 12, 20, 28)] == [0, 1, 2, 3, 1, 3]
    assert topo.packages == {0: topo.dies[0] | topo.dies[1], 1: topo.dies[2] | topo.dies[3]}
    assert topo.nodes == topo.dies


def test_small_host_has_no_smt_and_cpu0_without_online_file(small: Path) -> None:
    fs = HostFS(small)
    assert not fs.exists(f"{CPU}/cpu0/online")
    topo = read_topology(fs)
    assert topo.online_cpus == {0, 1, 2, 3}
    assert all(topo.siblings(c) == {c} for c in range(4))
    assert topo.cores == {c: frozenset({c}) for c in range(4)}
    assert topo.nodes == {0: frozenset(range(4))}


def test_cpu_without_online_file_follows_the_global_online_list(small: Path) -> None:
    fs = HostFS(small)
    fs.write(f"{CPU}/online", "1-3")
    assert not read_topology(fs).cpus[0].online


def test_offline_cpus_have_no_topology_but_keep_their_node(offline_host: Path) -> None:
    topo = read_topology(HostFS(offline_host))
    assert topo.all_cpus == set(range(8))
    assert topo.online_cpus == {0, 1, 2, 3, 4, 6}
    for cpu, node in ((5, 0), (7, 1)):
        info = topo.cpus[cpu]
        assert (info.online, info.package, info.die, info.core) == (False, None, None, None)
        assert info.node == node
        assert topo.siblings(cpu) == {cpu}
    assert topo.siblings(0) == {0, 4}
    assert topo.nodes == {0: ids("0-1,4-5"), 1: ids("2-3,6-7"), 2: frozenset()}
    assert topo.cores == {0: ids("0,4"), 1: ids("1"), 2: ids("2,6"), 3: ids("3")}


def test_memory_only_node_is_kept_without_cpus(offline_host: Path) -> None:
    topo = read_topology(HostFS(offline_host))
    assert 2 in topo.nodes and topo.nodes[2] == frozenset()
    assert topo.nodes_of(topo.all_cpus) == {0, 1}


def test_kernel_without_numa_is_one_node_0(legacy: Path) -> None:
    fs = HostFS(legacy)
    assert not fs.exists("sys/devices/system/node")
    topo = read_topology(fs)
    assert topo.nodes == {0: frozenset(range(4))}
    assert all(c.node == 0 for c in topo.cpus.values())


def test_missing_die_id_means_one_die_per_package(legacy: Path) -> None:
    assert not HostFS(legacy).exists(f"{CPU}/cpu0/topology/die_id")
    topo = read_topology(HostFS(legacy))
    assert topo.dies == {0: frozenset(range(4))}
    assert topo.cores == {0: ids("0,2"), 1: ids("1,3")}


def test_die_id_minus_one_means_one_die_per_package(xeon: Path) -> None:
    fs = HostFS(xeon)
    for cpu in range(80):
        fs.write(f"{CPU}/cpu{cpu}/topology/die_id", "-1")
    topo = read_topology(fs)
    assert topo.dies == topo.packages
    assert len(topo.cores) == 40


def test_siblings_fall_back_to_core_cpus_list(threadripper: Path) -> None:
    for cpu in range(64):
        (threadripper / CPU / f"cpu{cpu}/topology/thread_siblings_list").unlink()
    topo = read_topology(HostFS(threadripper))
    assert topo.cpus[3].siblings == {3, 35}


def test_present_falls_back_to_cpu_directories(make_host) -> None:
    root = make_host(dataclasses.replace(hostgen.offline_4c2t(), present_file=False))
    assert not HostFS(root).exists(f"{CPU}/present")
    assert read_topology(HostFS(root)).all_cpus == set(range(8))


def test_possible_but_absent_cpus_are_not_present(make_host) -> None:
    root = make_host(dataclasses.replace(hostgen.small_4c1t(), extra_possible=4))
    assert HostFS(root).read_cpulist(f"{CPU}/possible") == set(range(8))
    assert read_topology(HostFS(root)).all_cpus == set(range(4))


def test_big_host_reads_every_cpu(big_host: Path) -> None:
    topo = read_topology(HostFS(big_host))
    assert len(topo.cpus) == 512 and len(topo.cores) == 256 and len(topo.nodes) == 16
    assert topo.siblings(255) == {255, 511}
    assert topo.cpus[511].node == 15 and topo.cpus[511].package == 1


@settings(max_examples=25, deadline=None)
@given(
    packages=st.integers(1, 2), dies=st.integers(1, 2), cores=st.integers(1, 4),
    threads=st.integers(1, 2), split=st.sampled_from([1, 2]),
)
def test_reader_matches_generated_layout(packages, dies, cores, threads, split) -> None:
    spec = hostgen.HostSpec("prop", packages=packages, dies_per_package=dies,
                            cores_per_die=cores * split, threads_per_core=threads,
                            numa_nodes=packages * dies * split)
    with tempfile.TemporaryDirectory() as tmp:
        topo = read_topology(HostFS(hostgen.build_host(Path(tmp), spec)))
    for place in hostgen.layout(spec):
        cpu = topo.cpus[place.cpu]
        assert (cpu.package, cpu.die, cpu.core, cpu.node) == (
            place.package, place.die, place.core, place.node)
        assert len(cpu.siblings) == threads


# -- PCI --------------------------------------------------------------------
def test_threadripper_pci_devices(threadripper: Path) -> None:
    devices = read_pci(HostFS(threadripper))
    assert list(devices) == sorted(devices)
    gpu = devices[pci("0000:21:00.0")]
    assert (gpu.numa_node, gpu.iommu_group, gpu.driver, gpu.pci_class, gpu.bridge) == (
        2, 10, "vfio-pci", 0x030000, False)
    nic = devices[pci("0000:01:00.0")]
    assert (nic.numa_node, nic.driver, nic.pci_class) == (0, "igb", 0x020000)
    assert devices[pci("0000:00:00.0")].bridge and devices[pci("0000:00:00.0")].driver is None
    assert devices[pci("0000:00:01.1")].bridge
    assert devices[pci("0000:00:14.0")].numa_node is None


def test_iommu_group_members(threadripper: Path) -> None:
    host = read_host(HostFS(threadripper))
    assert host.group_members(pci("0000:21:00.0")) == {pci("0000:21:00.0")}
    pair = {pci("0000:22:00.0"), pci("0000:22:00.1")}
    assert host.group_members(pci("0000:22:00.1")) == pair
    assert host.iommu_groups[11] == pair


def test_pci_without_iommu_or_numa(small: Path) -> None:
    host = read_host(HostFS(small))
    assert set(host.pci) == {pci("0000:00:00.0"), pci("0000:00:03.0")}
    assert all(d.iommu_group is None and d.numa_node is None for d in host.pci.values())
    assert host.iommu_groups == {}
    assert host.group_members(pci("0000:00:03.0")) == {pci("0000:00:03.0")}


def test_pci_missing_files_are_none(threadripper: Path) -> None:
    dev = threadripper / "sys/bus/pci/devices/0000:01:00.0"
    (dev / "class").unlink()
    (dev / "numa_node").unlink()
    nic = read_pci(HostFS(threadripper))[pci("0000:01:00.0")]
    assert (nic.pci_class, nic.numa_node, nic.bridge, nic.driver) == (None, None, False, "igb")


def test_no_pci_bus_means_no_devices(offline_host: Path) -> None:
    assert not HostFS(offline_host).exists("sys/bus/pci")
    assert read_pci(HostFS(offline_host)) == {}


def test_pci_domain_wider_than_four_digits(make_host) -> None:
    vmd = hostgen.PciSpec("10000:e0:17.0", 0x010601, 0, iommu_group=30, driver="ahci")
    root = make_host(dataclasses.replace(hostgen.small_4c1t(), pci=(vmd,)))
    (address,) = read_pci(HostFS(root))
    assert str(address) == "10000:e0:17.0"


# -- read_host and errors ------------------------------------------------------
@pytest.mark.parametrize("name", sorted(hostgen.NAMED_HOSTS))
def test_read_host_over_every_named_host(make_host, name: str) -> None:
    spec = hostgen.NAMED_HOSTS[name]()
    host = read_host(HostFS(make_host(spec)))
    assert host.topology.all_cpus == set(range(spec.cpu_count))
    assert set(host.topology.nodes) == set(range(spec.node_count if spec.numa else 1))
    assert {str(a) for a in host.pci} == {d.address for d in spec.pci}


@pytest.mark.parametrize("layout", ["", "sys", "sys/devices/system"])
def test_root_without_sysfs_is_a_host_read_error(tmp_path: Path, layout: str) -> None:
    (tmp_path / layout).mkdir(parents=True, exist_ok=True)
    with pytest.raises(HostReadError, match="sysfs") as err:
        read_host(HostFS(tmp_path))
    assert err.value.path == str(tmp_path / CPU)


def test_cpu_directory_without_cpus_is_a_host_read_error(tmp_path: Path) -> None:
    (tmp_path / CPU).mkdir(parents=True)
    with pytest.raises(HostReadError, match="no present CPU"):
        read_topology(HostFS(tmp_path))


# -- this machine ---------------------------------------------------------------
real = pytest.mark.skipif(not os.path.isdir(f"/{CPU}"), reason="no sysfs on this machine")


def _sysfs(rel: str) -> str:
    with open(f"/{rel}") as f:
        return f.read().strip()


@real
def test_real_host_cpus() -> None:
    topo = read_topology(HostFS("/"))
    assert topo.all_cpus == parse_cpulist(_sysfs(f"{CPU}/present"))
    assert topo.online_cpus == parse_cpulist(_sysfs(f"{CPU}/online"))
    assert os.sched_getaffinity(0) <= topo.online_cpus
    for cpu in topo.online_cpus:
        info = topo.cpus[cpu]
        assert info.core is not None and info.die is not None and info.node in topo.nodes
        assert all(topo.siblings(s) == info.siblings for s in info.siblings)
    assert set().union(*topo.cores.values()) == topo.online_cpus


@real
def test_real_host_cpu0_without_online_file_is_online() -> None:
    if os.path.exists(f"/{CPU}/cpu0/online"):
        pytest.skip("cpu0 is hot-pluggable here")
    assert read_topology(HostFS("/")).cpus[0].online


@real
def test_real_host_pci_matches_sysfs() -> None:
    base = "sys/bus/pci/devices"
    names = sorted(os.listdir(f"/{base}")) if os.path.isdir(f"/{base}") else []
    devices = read_pci(HostFS("/"))
    assert sorted(str(a) for a in devices) == names
    for address, dev in devices.items():
        node = int(_sysfs(f"{base}/{address}/numa_node"))
        assert dev.numa_node == (node if node >= 0 else None)
        assert (dev.iommu_group is None) == (not os.path.exists(f"/{base}/{address}/iommu_group"))
        assert dev.pci_class == int(_sysfs(f"{base}/{address}/class"), 16)
