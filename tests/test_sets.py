"""CPUSET, ID-set and PCISET: parsing, canonical form, resolution."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvmrt.sets import CpuSpec, IdSet, PciAddress, PciSet, format_ids
from kvmrt.errors import SetSyntaxError, UnknownHostObject
from kvmrt.host.model import RawCpu, Topology

ids = st.frozensets(st.integers(min_value=0, max_value=300), max_size=40)


def two_node_smt() -> Topology:
    """8 CPUs: 4 cores x 2 threads (k and k+4 are siblings), node 0 = cores 0-1."""
    raw = [RawCpu(c, True, package_id=0, die_id=0, core_id=c % 4,
                  siblings=frozenset({c % 4, c % 4 + 4})) for c in range(8)]
    return Topology.build(raw, {0: {0, 1, 4, 5}, 1: {2, 3, 6, 7}})


@given(ids)
def test_idset_round_trip(s):
    text = str(IdSet(s))
    assert IdSet.parse(text) == s
    assert str(IdSet.parse(text)) == text


@pytest.mark.parametrize("text, expected", [
    ("", ""), ("3,1,2", "1-3"), ("0,2,4-7,12-15", "0,2,4-7,12-15"),
    (" 5 , 6 ,7", "5-7"), ("9-9", "9"), ("1-3,2-5", "1-5"),
])
def test_idset_canonical(text, expected):
    assert str(IdSet.parse(text)) == expected


@pytest.mark.parametrize("text, element", [
    ("1,,2", ""), ("a", "a"), ("-1", "-1"), ("5-3", "5-3"), ("1-", "1-"), ("n1", "n1"),
])
def test_idset_errors_name_the_element(text, element):
    with pytest.raises(SetSyntaxError) as info:
        IdSet.parse(text)
    assert info.value.element.strip() == element


specs = st.builds(
    lambda groups, comp: CpuSpec(tuple((p, frozenset(g)) for p, g in groups if g), comp),
    st.lists(st.tuples(st.sampled_from(["", "p", "d", "n", "c"]), ids), max_size=5,
             unique_by=lambda t: t[0]).map(
        lambda gs: sorted(gs, key=lambda t: ["", "p", "d", "n", "c"].index(t[0]))),
    st.booleans(),
).filter(lambda s: s.groups or not s.complement)


@given(specs)
def test_cpuset_round_trip(spec):
    assert CpuSpec.parse(str(spec)) == spec
    assert str(CpuSpec.parse(str(spec))) == str(spec)


@pytest.mark.parametrize("text, expected", [
    ("n1,n2", "n1-2"), ("n1-n3", "n1-3"), ("0,1,16-19, 3", "0-1,3,16-19"),
    ("c5,0-2,n1", "0-2,n1,c5"), ("~ n0", "~n0"), ("", ""), ("n1 - n3", "n1-3"),
    ("n1 - 3", "n1-3"),
])
def test_cpuset_canonical(text, expected):
    assert str(CpuSpec.parse(text)) == expected


@pytest.mark.parametrize("text, element, reason", [
    ("n1-c3", "n1-c3", "mix"), ("1-n3", "1-n3", "mix"), ("x4", "x4", "prefix"),
    ("4-2", "4-2", "below"), ("~", "~", "complement"), ("n", "n", "without a number"),
    ("3-", "3-", "start and an end"), ("-3", "-3", "start and an end"),
    ("n٢", "n٢", "integer"), ("1-x", "1-x", "integer"), ("n1-x", "n1-x", "mix"),
    ("0,,1", "", "empty"),
])
def test_cpuset_errors_name_the_element(text, element, reason):
    with pytest.raises(SetSyntaxError) as info:
        CpuSpec.parse(text)
    assert info.value.element.strip() == element
    assert reason in str(info.value)


def test_cpuset_resolves_prefixes():
    topo = two_node_smt()
    assert CpuSpec.parse("n1").resolve(topo) == {2, 3, 6, 7}
    assert CpuSpec.parse("c1").resolve(topo) == {1, 5}
    assert CpuSpec.parse("c0-1,7").resolve(topo) == {0, 1, 4, 5, 7}
    assert CpuSpec.parse("p0").resolve(topo) == set(range(8))
    assert CpuSpec.parse("d0").resolve(topo) == set(range(8))
    assert CpuSpec.parse("~n0").resolve(topo) == {2, 3, 6, 7}
    assert CpuSpec.parse("").resolve(topo) == frozenset()


@pytest.mark.parametrize("text, message", [
    ("8", "CPU 8 does not exist (host has CPUs 0-7)"),
    ("n2", "NUMA node 2 does not exist (host has NUMA nodes 0-1)"),
    ("c1-9", "core 4 does not exist (host has cores 0-3)"),
    ("p1", "package 1 does not exist (host has packages 0)"),
])
def test_cpuset_unknown_objects(text, message):
    with pytest.raises(UnknownHostObject) as info:
        CpuSpec.parse(text).resolve(two_node_smt())
    assert str(info.value) == message


@given(specs.filter(lambda s: not s.complement))
def test_complement_laws(spec):
    topo = two_node_smt()
    try:
        cpus = spec.resolve(topo)
    except UnknownHostObject:
        return
    comp = CpuSpec(spec.groups, complement=True).resolve(topo)
    assert cpus | comp == topo.all_cpus
    assert not cpus & comp
    # complementing twice gives the set back
    assert CpuSpec(CpuSpec.of_cpus(comp).groups, complement=True).resolve(topo) == cpus


def test_pci_addresses():
    assert str(PciAddress.parse("10000:e0:17.0")) == "10000:e0:17.0"  # Intel VMD domain
    assert str(PciAddress.parse("0000:21:00.0")) == "0000:21:00.0"
    assert str(PciAddress.parse("0000:AF:1F.7")) == "0000:af:1f.7"
    assert str(PciSet.parse("0000:22:00.1  0000:21:00.0\t0000:22:00.0")) == \
        "0000:21:00.0 0000:22:00.0 0000:22:00.1"
    assert PciSet.parse("") == PciSet()


@pytest.mark.parametrize("bad", ["21:00.0", "0000:21:00.8", "0000:21:20.0", "0000:2g:00.0",
                                 "0000:21:00", "000:21:00.0"])
def test_pci_errors_name_the_address(bad):
    with pytest.raises(SetSyntaxError) as info:
        PciSet.parse(f"0000:01:00.0 {bad}")
    assert info.value.element == bad


@given(st.frozensets(st.builds(PciAddress, st.integers(0, 0xFFFF), st.integers(0, 0xFF),
                               st.integers(0, 0x1F), st.integers(0, 7)), max_size=8))
def test_pciset_round_trip(addresses):
    s = PciSet(addresses)
    assert PciSet.parse(str(s)) == s


def test_format_ids_prefix():
    assert format_ids([3, 1, 2, 7], "n") == "n1-3,n7"


# --- bounds before expanding (issue 11) ---------------------------------------


@pytest.mark.parametrize("text, message", [
    ("0-4294967295", "CPU 4294967295 cannot exist: Linux numbers CPUs 0-8191 at most "
                     "(NR_CPUS is at most 8192)"),
    ("~8192", "CPU 8192 cannot exist"),
    ("n0-99999999", "NUMA node 99999999 cannot exist: Linux numbers NUMA nodes 0-1023 at most"),
    ("c0-c4294967295", "core 4294967295 cannot exist"),
    ("d9000", "die 9000 cannot exist"),
    ("p0-1,p10000", "package 10000 cannot exist"),
    ("9" * 5000, "number too large (5000 digits)"),
    ("0-" + "1" * 4301, "number too large (4301 digits)"),
])
def test_cpuset_is_bounded_before_it_is_expanded(text, message):
    with pytest.raises(SetSyntaxError) as info:
        CpuSpec.parse(text)
    assert message in info.value.reason


def test_cpuset_at_the_bounds_parses():
    assert str(CpuSpec.parse("0-8191,n1023,c8191")) == "0-8191,n1023,c8191"


def test_idset_bounds_cpus_by_default_and_nodes_for_numatune():
    assert IdSet.parse("8191") == {8191}
    with pytest.raises(SetSyntaxError, match="CPU 8192 cannot exist"):
        IdSet.parse("0,8192")
    assert IdSet.parse_nodes("1023") == {1023}
    with pytest.raises(SetSyntaxError, match="NUMA node 4294967295 cannot exist"):
        IdSet.parse_nodes("0-4294967295")


def test_many_overlapping_wide_ranges_parse_in_time_linear_in_the_text():
    import time

    text = ",".join(["0-8191"] * 20_000)
    start = time.perf_counter()
    assert len(CpuSpec.parse(text).groups[0][1]) == 8192
    assert time.perf_counter() - start < 2
