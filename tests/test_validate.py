"""The validator (SPEC 4): each rule, on the Threadripper fixture host.

Threadripper PRO 5975WX: 32 cores x 2 threads, CPU k and k+32 are siblings,
node k holds CPUs 8k..8k+7 and 32+8k..32+8k+7; 0000:21:00.0 alone in its
IOMMU group on node 2; 0000:22:00.0 and .1 share a group on node 1.
"""

from __future__ import annotations

import pytest

from kvmrt.config.file import parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.validate import validate

U = "00000000-0000-4000-8000-0000000000{:02d}"


def config_of(*vms: str):
    text = "".join(f"[{U.format(i)}]\nname = vm{i}\n{attrs}\n\n" for i, attrs in enumerate(vms))
    return parse_config(text, "k.cfg")


@pytest.fixture
def host(threadripper):
    return read_host(HostFS(threadripper))


def codes(host, *vms: str, **kw) -> list[tuple[str, str, tuple]]:
    return [(d.severity.value, d.code, d.vms) for d in validate(config_of(*vms), host, **kw)]


def test_spec_example_is_clean_but_for_numa_advice(host):
    from pathlib import Path
    from kvmrt.config.file import load_config
    config = load_config(str(Path(__file__).parent.parent / "examples/threadripper-5975wx.cfg"))
    found = validate(config, host)
    assert [(d.code, d.severity.value) for d in found] == [("rt-multi-node", "warning")]
    assert found[0].format() == (
        f"{config.path}:7: warning: RedHawk-8.4-RT: cpuset: cpuset spans NUMA nodes 1-2; "
        "an rt VM is best kept on one node")


def test_rt_overlap_counts_owned_siblings(host):
    # vm0 owns 8-9 and siblings 40-41; vm1 asks for CPU 41.
    found = validate(config_of("cpuset = 8-10\nrt = 1", "cpuset = 41"), host)
    overlap = [d for d in found if d.code == "rt-overlap"]
    assert len(overlap) == 1 and overlap[0].vms == ("vm0", "vm1")
    assert "CPUs 41" in overlap[0].message and overlap[0].line == 3


def test_two_rt_vms_overlapping_are_reported_once(host):
    assert [c for c in codes(host, "cpuset = 8-10\nrt = 1", "cpuset = 10-12\nrt = 1")
            if c[1] == "rt-overlap"] == [("error", "rt-overlap", ("vm0", "vm1"))]


def test_non_rt_vms_may_share_cpus(host):
    assert codes(host, "cpuset = 0-3", "cpuset = 2-5") == []


@pytest.mark.parametrize("attrs, code", [
    ("rt = 1", "rt-empty-cpuset"),
    ("cpuset = 8-9\nrt = 1\nnr_vcpus = 2", "rt-too-few-cpus"),
    ("cpuset = 8,40\nrt = 1", "rt-too-few-cpus"),          # siblings: one usable CPU
    ("cpuset = 8-10\nrt = 1\nrt_memory = off", "rt-unlocked-memory"),
    ("cpuset = 64", "unknown-cpu"), ("cpuset = n4", "unknown-cpu"),
    ("cpuset = c32", "unknown-cpu"), ("cpuset = d1", "unknown-cpu"),
    ("cpuset = p1", "unknown-cpu"), ("numatune = 7", "unknown-node"),
    ("pcidevs = 0000:99:00.0", "unknown-device"),
    ("pcidevs = 0000:22:00.0", "iommu-split"),
    ("nr_vcpus = 4\ncpu_topology = 1,2,1", "topology-mismatch"),
    ("nr_vcpus = 0", "vcpus-below-one"),
    ("nr_vcpus = auto\ncpuset = 5", "vcpus-below-one"),
])
def test_single_vm_errors(host, attrs, code):
    found = codes(host, attrs)
    assert ("error", code, ("vm0",)) in found, found


def test_iommu_split_names_the_missing_devices(host):
    (d,) = [d for d in validate(config_of("pcidevs = 0000:22:00.1"), host)]
    assert d.code == "iommu-split" and d.attribute == "pcidevs" and d.line == 3
    assert d.message.endswith("also pass 0000:22:00.0")


def test_unknown_cpu_message_names_what_the_host_has(host):
    (d,) = validate(config_of("cpuset = 0-3,70"), host)
    assert d.message == "CPU 70 does not exist (host has CPUs 0-63) in '0-3,70'"


def test_rt_vms_may_not_take_every_cpu(host):
    found = codes(host, "cpuset = 0-31\nrt = 1\nnr_vcpus = auto")
    assert ("error", "rt-all-cpus", ("vm0",)) in found


def test_pci_device_given_twice(host):
    found = validate(config_of("pcidevs = 0000:21:00.0", "pcidevs = 0000:21:00.0"), host)
    (d,) = [d for d in found if d.code == "pci-shared"]
    assert d.vms == ("vm1", "vm0") and d.line == 7 and "already given to vm0 (line 3)" in d.message


@pytest.mark.parametrize("vms, code, who", [
    (["cpuset = 8-10,16\nrt = 1"], "rt-multi-node", ("vm0",)),
    (["cpuset = 8-10\nrt = 1\nnumatune ="], "rt-numatune", ("vm0",)),
    (["cpuset = 8-10\nrt = 1\nnumatune = 0"], "rt-numatune", ("vm0",)),
    (["cpuset = 8-10\nrt = 1", "cpuset = 12-13"], "node-shared", ("vm1", "vm0")),
    (["cpuset = 8-10\nrt = 1", "cpuset = 0\nnumatune = 1"], "numatune-shared", ("vm1", "vm0")),
    (["cpuset = 0-1\npcidevs = 0000:21:00.0"], "pci-remote-node", ("vm0",)),
    (["cpuset = 0-1\nnr_vcpus = 3"], "undersupplied", ("vm0",)),
])
def test_warnings(host, vms, code, who):
    assert ("warning", code, who) in codes(host, *vms)


def test_disabled_vms_are_left_out_unless_all(host):
    vms = ("cpuset = 8-10\nrt = 1", "cpuset = 9\ndisabled = yes")
    assert codes(host, *vms) == []
    assert ("error", "rt-overlap", ("vm0", "vm1")) in codes(host, *vms, include_disabled=True)


def test_named_vms_select_diagnostics(host):
    vms = ("cpuset = 64", "cpuset = 65", "cpuset = 8-10\nrt = 1", "cpuset = 9")
    assert [c[2] for c in codes(host, *vms, names=("vm1",))] == [("vm1",)]
    assert codes(host, *vms, names=("vm3",)) == [
        ("error", "rt-overlap", ("vm2", "vm3")), ("warning", "node-shared", ("vm3", "vm2"))]


def test_malformed_vm_gets_only_its_load_error(host):
    assert codes(host, "cpuset = 8-x\nrt = 1") == [("error", "bad-value", ("vm0",))]


def test_rt_vm_may_not_need_cpu0_offline(host):
    # CPU 32 is CPU 0's sibling; cpu0 has no 'online' file, the kernel keeps it.
    found = validate(config_of("cpuset = 32-35\nrt = 1"), host)
    (d,) = [d for d in found if d.code == "offline-refused"]
    assert d.is_error and "CPU 0 would have to go offline" in d.message


def test_offline_cpus_in_a_non_rt_cpuset_are_reported(offline_host):
    h = read_host(HostFS(offline_host))
    assert [(d.code, d.message) for d in validate(config_of("cpuset = 4-7"), h)] == [
        ("offline-cpus", "CPUs 5,7 of the cpuset are offline and are not used")]


@pytest.mark.parametrize("cpuset", ["0-3", "n0", "~8-63"])
def test_rt_cpuset_with_the_boot_cpu_is_a_warning_with_the_reason(host, cpuset):
    found = validate(config_of(f"cpuset = {cpuset}\nrt = 1"), host)
    (d,) = [d for d in found if d.code == "rt-boot-cpu"]
    assert not d.is_error and d.attribute == "cpuset" and d.line == 3
    assert d.message.startswith("cpuset contains CPU 0, the boot CPU:")
    assert "nohz_full=" in d.message and "leave CPU 0" in d.message


def test_boot_cpu_is_fine_for_non_rt_vms_and_rt_vms_without_it(host):
    assert "rt-boot-cpu" not in [c[1] for c in codes(host, "cpuset = 0-3")]
    assert "rt-boot-cpu" not in [c[1] for c in codes(host, "cpuset = 1-4\nrt = 1")]


# --- libvirt's name rules; no host path from a name (issue 11) ----------------


@pytest.mark.parametrize("name", ["a/b", "..", ".", "x\x1by"])
def test_name_libvirt_refuses_is_an_error_with_its_line(host, name):
    config = parse_config(f"[{U.format(0)}]\nname = {name}\ncpuset = 8-11\n", "k.cfg")
    found = [(d.code, d.line, d.attribute) for d in validate(config, host) if d.is_error]
    assert found == [("bad-value", 2, "name")]


@pytest.mark.parametrize("name", ["../../../etc/x", "..", None])
def test_no_status_file_path_is_built_from_a_bad_name(threadripper, name):
    from kvmrt.errors import HostReadError
    from kvmrt.host.qemu import read_qemu_status

    with pytest.raises(HostReadError, match="not a libvirt domain name"):
        read_qemu_status(HostFS(threadripper), name)


def test_vcpus_over_qemus_limit_are_refused_before_placement(big_host):
    config = config_of("nr_vcpus = 100000000\ncpuset = 0-511")
    found = validate(config, read_host(HostFS(big_host)))
    assert [(d.code, d.attribute) for d in found] == [("bad-value", "nr_vcpus")]
    assert "QEMU accepts at most 4096" in found[0].message


def test_errors_only_gives_exactly_the_errors(host):
    """kvmrt-show-config asks for the errors alone, which skips the cross-VM
    rules that can only warn: the errors are the same, in the same order."""
    config = config_of("cpuset = 8-10\nrt = 1\npcidevs = 0000:21:00.0",
                       "cpuset = 41\nnumatune = 1", "cpuset = 12-15\nrt = 1",
                       "cpuset = 13\npcidevs = 0000:21:00.0", "cpuset = n1\nnr_vcpus = 40",
                       "cpuset = 99")
    every = validate(config, host)
    assert {d.severity.value for d in every} == {"error", "warning"}
    assert validate(config, host, errors_only=True) == [d for d in every if d.is_error]
    assert validate(config, host, errors_only=True, names=("vm3",)) == [
        d for d in validate(config, host, names=("vm3",)) if d.is_error]
