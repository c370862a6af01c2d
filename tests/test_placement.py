"""Placement (SPEC 2 and 3) on fixture hosts."""

from __future__ import annotations

from pathlib import Path

import pytest

from kvmrt.config.file import load_config, parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.placement import place, place_all, placement_json, try_place

EXAMPLE = Path(__file__).parent.parent / "examples" / "threadripper-5975wx.cfg"
U = "00000000-0000-4000-8000-0000000000{:02d}"


def vm(attrs: str, n: int = 1):
    return parse_config(f"[{U.format(n)}]\nname = vm{n}\n{attrs}\n").vms[0]


def topo(root: Path):
    return read_host(HostFS(root)).topology


def test_spec_example_on_threadripper(threadripper):
    """The 'done' check of the foundation issue."""
    config = load_config(str(EXAMPLE))
    p = placement_json(place(config.vms[0], topo(threadripper)))
    assert p["nr_vcpus"] == 15
    assert p["vcpu_cpus"] == [[c] for c in range(8, 23)]
    assert p["emulator_cpus"] == [23]
    assert p["offline_cpus"] == list(range(40, 56))
    assert p["numatune"] == [1, 2]
    assert p["irq_cpu"] == 23
    assert p["cpuset"] == list(range(8, 24)) + list(range(40, 56))
    assert p["usable_cpus"] == list(range(8, 24))
    assert p["owned_cpus"] == p["shielded_cpus"] == p["cpuset"]
    assert p["cpu_topology"] == [1, 15, 1] and p["rt_memory"] is True


def test_rt_vm_owns_siblings_outside_its_cpuset(threadripper):
    p = place(vm("cpuset = 8-11\nrt = yes"), topo(threadripper))
    assert p.usable_cpus == {8, 9, 10, 11}
    assert p.owned_cpus == {8, 9, 10, 11, 40, 41, 42, 43}
    assert p.offline_cpus == {40, 41, 42, 43}
    assert p.nr_vcpus == 1 and p.vcpu_cpus == ({8},) and p.emulator_cpus == {9, 10, 11}
    assert p.irq_cpu is None  # no passthrough devices


def test_rt_keeps_the_lowest_thread_in_the_cpuset(threadripper):
    # Only the second threads are named: they stay online, the first go offline.
    p = place(vm("cpuset = 40-43\nrt = 1\nnr_vcpus = 2"), topo(threadripper))
    assert p.usable_cpus == {40, 41, 42, 43} and p.offline_cpus == {8, 9, 10, 11}
    assert p.vcpu_cpus == ({40}, {41}) and p.emulator_cpus == {42, 43}


def test_non_rt_vm_gets_one_cpu_per_vcpu_and_the_rest_for_the_emulator(threadripper):
    p = place(vm("cpuset = 0-3,32\nnr_vcpus = 3"), topo(threadripper))
    assert p.vcpu_cpus == ({0}, {1}, {2}) and p.emulator_cpus == {3, 32}
    assert p.offline_cpus == p.shielded_cpus == frozenset() and p.rt_memory is False


def test_undersupplied_non_rt_vm_shares_cpus(small):
    p = place(vm("cpuset = 1-2\nnr_vcpus = 5"), topo(small))
    assert p.vcpu_cpus == ({1}, {2}, {1}, {2}, {1})
    assert p.emulator_cpus == {1, 2}


def test_empty_cpuset_is_not_pinned(small):
    p = place(vm("nr_vcpus = 2"), topo(small))
    assert p.vcpu_cpus == (frozenset(), frozenset()) and p.emulator_cpus == frozenset()
    assert p.numatune is None


@pytest.mark.parametrize("attrs, numatune", [
    ("cpuset = n0,n3", {0, 3}), ("cpuset = n0\nnumatune = 1-2", {1, 2}),
    ("cpuset = n0\nnumatune =", None), ("cpuset = 8", {1}),
])
def test_numatune(threadripper, attrs, numatune):
    assert place(vm(attrs), topo(threadripper)).numatune == numatune


def test_auto_nr_vcpus_and_topology_on_xeon(xeon):
    # Xeon: CPUs 0-19 are package 0's first threads, 40-59 their siblings.
    p = place(vm("cpuset = p0\nrt = on\nnr_vcpus = auto"), topo(xeon))
    assert p.usable_cpus == set(range(20)) and p.offline_cpus == set(range(40, 60))
    assert p.nr_vcpus == 19 and p.cpu_topology == (1, 19, 1)
    assert p.emulator_cpus == {19}


def test_logical_cores_on_xeon_second_package(xeon):
    # core_id repeats across packages; logical core 20 is package 1's first core.
    p = place(vm("cpuset = c20-21\nrt = on"), topo(xeon))
    assert p.cpuset == {20, 21, 60, 61} and p.usable_cpus == {20, 21}


def test_siblings_already_offline_are_owned_not_usable(make_host):
    """While the rt VM runs (or after nosmt) its siblings are offline and the
    kernel hides their topology: the placement must not change."""
    import dataclasses

    import hostgen
    spec = dataclasses.replace(hostgen.threadripper_5975wx(), offline=frozenset(range(40, 56)))
    config = load_config(str(EXAMPLE))
    p = placement_json(place(config.vms[0], topo(make_host(spec))))
    assert p["nr_vcpus"] == 15 and p["vcpu_cpus"] == [[c] for c in range(8, 23)]
    assert p["emulator_cpus"] == [23] and p["offline_cpus"] == list(range(40, 56))
    assert p["usable_cpus"] == list(range(8, 24))


def test_non_rt_vm_skips_offline_cpus(offline_host):
    # offline_4c2t: CPUs 5 and 7 are offline.
    p = place(vm("cpuset = 4-7\nnr_vcpus = 1"), topo(offline_host))
    assert p.usable_cpus == {4, 6} and p.vcpu_cpus == ({4},) and p.emulator_cpus == {6}


def test_only_vms_that_can_be_placed_are_placed(threadripper):
    """The one rule show-config, show-host, validate-host and stat share:
    a VM with an attribute that failed to parse, without a name, or whose
    cpuset names what the host lacks has no placement."""
    config = parse_config(
        f"[{U.format(1)}]\nname = good\ncpuset = 0-3\n"
        f"[{U.format(2)}]\nname = bad-count\ncpuset = 4-7\nnr_vcpus = many\n"
        f"[{U.format(3)}]\ncpuset = 8-11\n"
        f"[{U.format(4)}]\nname = elsewhere\ncpuset = 64-67\n"
        f"[{U.format(5)}]\nname = good-too\ncpuset = n1\n")
    host = topo(threadripper)
    assert [p.vm.name for p in place_all(config.vms, host)] == ["good", "good-too"]
    assert [try_place(v, host) is not None for v in config.vms] == [
        True, False, False, False, True]
