"""kvmrt's part of the libvirt domain XML (kvmrt.libvirt_sync.domxml).

Realistic domains live in tests/data/domains/; each is transformed with a
real-time and a plain configuration on the Threadripper fixture host. The
outputs are compared with golden files (tests/data/domains/expected/;
regenerate with ``KVMRT_UPDATE_GOLDEN=1`` and review the diff), checked
element by element against the placement, stripped of kvmrt's part and
compared with the input, validated with libvirt's own schema
(``virt-xml-validate``), and defined on libvirt's test driver
(tests/data/node.xml) and read back.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest
from lxml import etree

import hostgen
from kvmrt.config.file import parse_config
from kvmrt.sets import PciAddress, PciSet
from kvmrt.errors import DomainXmlError, KvmrtError
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domxml import (
    DomainFacts, apply_config, owned_differences, read_facts,
)
from kvmrt.placement import Placement, place

DATA = Path(__file__).parent / "data"
DOMAINS = DATA / "domains"
EXPECTED = DOMAINS / "expected"
NODE = DATA / "node.xml"
UPDATE_GOLDEN = os.environ.get("KVMRT_UPDATE_GOLDEN") == "1"


# -- the host and the configurations -------------------------------------------
@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    """Threadripper PRO 5975WX: CPU k and k+32 are siblings; node n has
    cores 8n..8n+7 (CPUs 8n..8n+7 and 32+8n..32+8n+7)."""
    root = hostgen.build_host(tmp_path_factory.mktemp("host"), hostgen.threadripper_5975wx())
    return read_host(HostFS(root)).topology


def vm_config(name: str, **attrs: str) -> str:
    lines = ["[00000000-0000-4000-8000-000000000001]", f"name = {name}"]
    lines += [f"{key} = {value}" for key, value in attrs.items()]
    return "\n".join(lines) + "\n"


def placement(topology, text: str) -> Placement:
    config = parse_config(text)
    assert not config.has_errors, [p.format() for p in config.problems]
    return place(config.vms[0], topology)


@dataclass(frozen=True)
class Case:
    sample: str
    label: str
    config: str

    @property
    def id(self) -> str:
        return f"{self.sample}.{self.label}"

    @property
    def source(self) -> str:
        return (DOMAINS / f"{self.sample}.xml").read_text()


RT_GPU = dict(title="RHEL 8.4 real-time", description="GPU workstation, real-time",
              nr_vcpus="8", cpuset="c8-c16", numatune="1", rt="True", hide_kvm="True",
              pcidevs="0000:21:00.0 0000:22:00.0 0000:22:00.1")
CASES = [
    # q35: adds pins next to shares/vcpusched, locked, hidden; keeps 21:00.0,
    # drops 41:00.0, adds 22:00.0/.1; the USB hostdev stays.
    Case("q35-uefi-gpu", "rt", vm_config("rhel8-gpu", **RT_GPU)),
    # ...and without: title removed, PCI hostdevs removed, nothing pinned.
    Case("q35-uefi-gpu", "plain", vm_config("rhel8-gpu", nr_vcpus="8")),
    # i440fx without <cpu>, <cputune>, <numatune>, <memoryBacking> or <kvm>.
    Case("i440fx-bios", "rt", vm_config(
        "centos7-legacy", title="Legacy DAQ", cpuset="n2", rt="True", hide_kvm="True",
        pcidevs="0000:21:00.0", nr_vcpus="auto")),
    Case("i440fx-bios", "plain", vm_config(
        "centos7-legacy", nr_vcpus="4", cpuset="24-29")),
    # Already configured by kvmrt on node 1: move it to node 3...
    Case("kvmrt-configured", "rt", vm_config(
        "RedHawk-8.4-RT", title="Real-Time RedHawk 8.4", description="Moved to node 3",
        nr_vcpus="6", cpuset="c24-c31", rt="True", hide_kvm="True",
        pcidevs="0000:22:00.0 0000:22:00.1")),
    # ...or take everything kvmrt set away again.
    Case("kvmrt-configured", "plain", vm_config("RedHawk-8.4-RT", nr_vcpus="6")),
    # A one-line domain, as libvirt keeps one a script defined without line breaks.
    Case("compact", "rt", vm_config(
        "scripted", nr_vcpus="2", cpuset="4-7", rt="True", pcidevs="0000:40:00.0")),
    Case("compact", "plain", vm_config("scripted", nr_vcpus="2", cpu_topology="1,1,2")),
]
SAMPLES = sorted({c.sample for c in CASES})


def case_ids(cases):
    return [c.id for c in cases]


@pytest.fixture(params=CASES, ids=case_ids(CASES))
def case(request):
    return request.param


@pytest.fixture
def applied(case, topology):
    p = placement(topology, case.config)
    return case, p, apply_config(case.source, p)


# -- helpers that read XML without kvmrt's code ---------------------------------
def tree_of(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def cpus(text: str) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def pci_sources(domain: etree._Element) -> set[PciAddress]:
    return {
        PciAddress(*(int(a.get(k), 16) for k in ("domain", "bus", "slot", "function")))
        for a in domain.xpath("devices/hostdev[@type='pci']/source/address")
    }


OWNED = (
    "name", "title", "description", "vcpu", "cpu/topology", "cputune/vcpupin",
    "cputune/emulatorpin", "cputune/iothreadpin", "numatune/memory", "memoryBacking/locked",
    "features/kvm/hidden", "devices/hostdev[@type='pci']",
)
CONTAINERS = ("cputune", "numatune", "memoryBacking", "features/kvm", "features", "cpu")


def without_owned(xml: str) -> str:
    """The domain with kvmrt's part and the containers it left empty
    removed, whitespace between elements ignored."""
    domain = tree_of(xml)
    for path in OWNED:
        for el in domain.xpath(path):
            el.getparent().remove(el)
    for path in CONTAINERS:
        for el in domain.xpath(path):
            if not len(el) and not el.attrib:
                el.getparent().remove(el)
    for el in domain.iter():
        if el.text is not None and not el.text.strip():
            el.text = None
        if el.tail is not None and not el.tail.strip():
            el.tail = None
    return etree.tostring(domain, encoding="unicode")


def iothread_ids(domain: etree._Element) -> list[int]:
    ids = [int(i) for i in domain.xpath("iothreadids/iothread/@id")]
    return ids or list(range(1, int(domain.findtext("iothreads") or 0) + 1))


# -- apply_config on the samples ---------------------------------------------------
def test_output_matches_golden_file(applied):
    case, _, out = applied
    golden = EXPECTED / f"{case.id}.xml"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(out)
    assert out == golden.read_text()


def test_owned_parts_are_as_the_placement_says(applied):
    case, p, out = applied
    vm, domain = p.vm, tree_of(out)
    assert domain.findtext("name") == vm.name
    for tag in ("title", "description"):
        assert domain.findtext(tag) == (getattr(vm, tag) or None)
    vcpu = domain.find("vcpu")
    assert int(vcpu.text) == p.nr_vcpus
    assert int(vcpu.get("current", p.nr_vcpus)) <= p.nr_vcpus
    topo = domain.find("cpu/topology")
    assert tuple(int(topo.get(a)) for a in ("sockets", "cores", "threads")) == p.cpu_topology
    assert topo.get("dies", "1") == topo.get("clusters", "1") == "1"
    pins = {int(el.get("vcpu")): cpus(el.get("cpuset"))
            for el in domain.iterfind("cputune/vcpupin")}
    assert pins == {i: c for i, c in enumerate(p.vcpu_cpus) if c}
    emulator = [cpus(el.get("cpuset")) for el in domain.iterfind("cputune/emulatorpin")]
    assert emulator == ([p.emulator_cpus] if p.emulator_cpus else [])
    iothreads = {int(el.get("iothread")): cpus(el.get("cpuset"))
                 for el in domain.iterfind("cputune/iothreadpin")}
    expected = {k: p.emulator_cpus for k in iothread_ids(domain)} if p.emulator_cpus else {}
    assert iothreads == expected
    memory = domain.find("numatune/memory")
    if p.numatune is None:
        assert memory is None
    else:
        assert (memory.get("mode"), cpus(memory.get("nodeset"))) == ("strict", p.numatune)
    assert (domain.find("memoryBacking/locked") is not None) == p.rt_memory
    hidden = domain.find("features/kvm/hidden")
    assert (hidden.get("state") if hidden is not None else None) == ("on" if vm.hide_kvm else None)
    assert pci_sources(domain) == set(vm.pcidevs)


def test_no_empty_container_is_left(applied):
    domain = tree_of(applied[2])
    for path in ("cputune", "numatune", "memoryBacking", "features/kvm", "features"):
        for el in domain.xpath(path):
            assert len(el), f"empty <{el.tag}> left behind"


def test_everything_not_owned_is_unchanged(applied):
    case, _, out = applied
    assert without_owned(out) == without_owned(case.source)


def test_non_pci_hostdevs_and_comments_survive(applied):
    case, _, out = applied
    source, domain = tree_of(case.source), tree_of(out)
    others = "devices/hostdev[@type!='pci']"
    assert [etree.tostring(e) for e in domain.xpath(others)] == \
        [etree.tostring(e) for e in source.xpath(others)]
    assert [c.text for c in domain.iter(etree.Comment)] == \
        [c.text for c in source.iter(etree.Comment)]


def test_apply_is_idempotent(applied):
    _, p, out = applied
    assert apply_config(out, p) == out


@pytest.mark.parametrize("sample", SAMPLES)
def test_plain_after_rt_is_plain(sample, topology):
    """Taking a real-time configuration back leaves no trace of it."""
    rt, plain = (next(c for c in CASES if c.sample == sample and c.label == label)
                 for label in ("rt", "plain"))
    p_rt, p_plain = placement(topology, rt.config), placement(topology, plain.config)
    once = apply_config(rt.source, p_rt)
    assert apply_config(once, p_plain) == apply_config(rt.source, p_plain)


@pytest.mark.skipif(shutil.which("virt-xml-validate") is None,
                    reason="virt-xml-validate (libvirt-clients) is not installed")
def test_output_passes_libvirt_schema(applied, tmp_path):
    case, _, out = applied
    path = tmp_path / f"{case.id}.xml"
    path.write_text(out)
    result = subprocess.run(["virt-xml-validate", str(path), "domain"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("sample", SAMPLES)
def test_samples_pass_libvirt_schema(sample):
    if shutil.which("virt-xml-validate") is None:
        pytest.skip("virt-xml-validate (libvirt-clients) is not installed")
    result = subprocess.run(["virt-xml-validate", str(DOMAINS / f"{sample}.xml"), "domain"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_config_matching_the_domain_changes_nothing(topology):
    """A domain already in step with its config comes back byte for byte,
    comment before the root and blank line included."""
    source = (DOMAINS / "kvmrt-configured.xml").read_text()
    p = placement(topology, vm_config(
        "RedHawk-8.4-RT", title="Real-Time RedHawk 8.4", description="Configured for real-time",
        nr_vcpus="6", cpuset="8-15", rt="True", hide_kvm="True",
        pcidevs="0000:22:00.0 0000:22:00.1"))
    assert apply_config(source, p) == source
    source = (DOMAINS / "q35-uefi-gpu.xml").read_text()
    p = placement(topology, vm_config(
        "rhel8-gpu", title="RHEL 8.4 workstation", nr_vcpus="8",
        pcidevs="0000:21:00.0 0000:41:00.0"))
    assert apply_config(source, p) == source


def test_unpinning_removes_only_kvmrt_parts(topology):
    case = next(c for c in CASES if c.id == "kvmrt-configured.plain")
    domain = tree_of(apply_config(case.source, placement(topology, case.config)))
    assert domain.find("cputune") is None  # it held only pins
    assert [e.tag for e in domain.find("numatune")] == ["memnode"]
    assert [e.tag for e in domain.find("memoryBacking")] == ["hugepages"]
    assert [e.tag for e in domain.find("features")] == ["acpi", "apic", "pmu"]
    assert domain.xpath("devices/hostdev") == []
    assert domain.find("vcpu").get("current") == "4"


# -- details of apply_config -----------------------------------------------------
MINIMAL = """<domain type='kvm'>
  <name>t</name>
  <memory unit='KiB'>1048576</memory>
{inner}  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
  </os>
{after}  <devices>
{devices}  </devices>
</domain>
"""


def minimal(inner: str = "", after: str = "", devices: str = "") -> str:
    return MINIMAL.format(inner=inner, after=after, devices=devices)


def test_vcpu_current_above_the_count_goes(topology):
    p = placement(topology, vm_config("t", nr_vcpus="2"))
    out = apply_config(minimal("  <vcpu placement='static' current='3'>4</vcpu>\n"), p)
    assert "<vcpu placement='static'>2</vcpu>" in out
    out = apply_config(minimal("  <vcpu placement='auto' current='1'>4</vcpu>\n"), p)
    assert "<vcpu placement='auto' current='1'>2</vcpu>" in out


@pytest.mark.parametrize("given, wanted", [
    ("sockets='2' dies='2' clusters='2' cores='1' threads='1'",
     "sockets='1' dies='1' clusters='1' cores='4' threads='1'"),
    ("sockets='1' dies='1' cores='2' threads='2'", "sockets='1' dies='1' cores='4' threads='1'"),
    ("sockets='4' cores='1' threads='1'", "sockets='1' cores='4' threads='1'"),
])
def test_topology_keeps_dies_and_clusters_only_at_one(topology, given, wanted):
    p = placement(topology, vm_config("t", nr_vcpus="4"))
    cpu = f"  <cpu mode='host-passthrough'>\n    <topology {given}/>\n  </cpu>\n"
    assert f"<topology {wanted}/>" in apply_config(minimal(after=cpu), p)


def test_new_elements_go_in_libvirt_order_with_sibling_indentation(topology):
    p = placement(topology, vm_config("t", nr_vcpus="2", cpuset="8-11", rt="True",
                                      hide_kvm="True", title="T", pcidevs="0000:21:00.0"))
    out = apply_config(minimal(), p)
    tags = [e.tag for e in tree_of(out)]
    assert tags == ["name", "title", "memory", "memoryBacking", "vcpu", "cputune", "numatune",
                    "os", "features", "cpu", "devices"]
    assert "\n  <cputune>\n    <vcpupin vcpu='0' cpuset='8'/>\n" in out
    assert ("\n  <devices>\n    <hostdev mode='subsystem' type='pci' managed='yes'>\n"
            "      <source>\n        <address domain='0x0000' bus='0x21' slot='0x00'"
            " function='0x0'/>\n      </source>\n    </hostdev>\n  </devices>\n") in out


def test_indentation_follows_the_document(topology):
    source = minimal().replace("\n  ", "\n    ").replace("\n      ", "\n        ")
    p = placement(topology, vm_config("t", nr_vcpus="1", rt="True", cpuset="8-9"))
    out = apply_config(source, p)
    assert "\n    <memoryBacking>\n        <locked/>\n    </memoryBacking>\n" in out


def test_cputune_keeps_user_children_and_orders_pins(topology):
    cputune = ("  <cputune>\n    <shares>1024</shares>\n    <emulatorpin cpuset='0'/>\n"
               "    <vcpupin vcpu='1' cpuset='9,10'/>\n    <vcpupin vcpu='0' cpuset='8'/>\n"
               "    <vcpupin vcpu='7' cpuset='1'/>\n"
               "    <emulatorsched scheduler='fifo' priority='2'/>\n"
               "  </cputune>\n")
    p = placement(topology, vm_config("t", nr_vcpus="2", cpuset="8-10"))
    out = apply_config(minimal("  <vcpu placement='static'>2</vcpu>\n" + cputune), p)
    assert ("  <cputune>\n    <shares>1024</shares>\n    <vcpupin vcpu='0' cpuset='8'/>\n"
            "    <vcpupin vcpu='1' cpuset='9'/>\n    <emulatorpin cpuset='10'/>\n"
            "    <emulatorsched scheduler='fifo' priority='2'/>\n  </cputune>\n") in out


def test_equal_sets_keep_their_spelling(topology):
    p = placement(topology, vm_config("t", nr_vcpus="1", cpuset="8-11", numatune="1,2"))
    inner = ("  <vcpu placement='static'>1</vcpu>\n  <cputune>\n"
             "    <vcpupin vcpu='0' cpuset='8'/>\n    <emulatorpin cpuset='9,10,11'/>\n"
             "  </cputune>\n  <numatune>\n    <memory mode='strict' nodeset='2,1'/>\n"
             "  </numatune>\n")
    out = apply_config(minimal(inner), p)
    assert "<emulatorpin cpuset='9,10,11'/>" in out
    assert "<memory mode='strict' nodeset='2,1'/>" in out


def test_numatune_memory_is_made_strict_and_static(topology):
    p = placement(topology, vm_config("t", nr_vcpus="1", numatune="3"))
    inner = ("  <numatune>\n    <memory mode='interleave' placement='auto'/>\n"
             "    <memnode cellid='0' mode='strict' nodeset='3'/>\n  </numatune>\n")
    out = apply_config(minimal(inner), p)
    assert ("<numatune>\n    <memory mode='strict' nodeset='3'/>\n"
            "    <memnode cellid='0' mode='strict' nodeset='3'/>\n  </numatune>") in out


def test_iothreads_from_iothreadids_completed_up_to_the_count(topology):
    inner = ("  <iothreads>3</iothreads>\n  <iothreadids>\n    <iothread id='2'/>\n"
             "  </iothreadids>\n")
    p = placement(topology, vm_config("t", nr_vcpus="1", cpuset="8-9"))
    domain = tree_of(apply_config(minimal(inner), p))
    assert [int(e.get("iothread")) for e in domain.iterfind("cputune/iothreadpin")] == [2, 1, 3]


def test_hostdevs_matched_by_address_whatever_the_spelling(topology):
    devices = (
        "    <hostdev mode='subsystem' type='pci' managed='no'>\n      <source>\n"
        "        <address bus='0X21' slot='0' function='0'/>\n      </source>\n"
        "      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>\n"
        "    </hostdev>\n"
        "    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n"
        "        <address domain='0x0000' bus='0x21' slot='0x00' function='0x0'/>\n"
        "      </source>\n    </hostdev>\n"
        "    <hostdev mode='subsystem' type='mdev' model='vfio-pci'>\n      <source>\n"
        "        <address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/>\n"
        "      </source>\n    </hostdev>\n"
        "    <hostdev mode='subsystem' type='scsi'>\n      <source>\n"
        "        <adapter name='scsi_host0'/>\n"
        "        <address bus='0' target='0' unit='0'/>\n      </source>\n    </hostdev>\n")
    p = placement(topology, vm_config("t", nr_vcpus="1", pcidevs="0000:21:00.0"))
    out = apply_config(minimal(devices=devices), p)
    domain = tree_of(out)
    kept = domain.xpath("devices/hostdev[@type='pci']")
    assert len(kept) == 1 and kept[0].get("managed") == "no"  # the first, untouched
    assert "<address bus='0X21' slot='0' function='0'/>" in out
    assert [h.get("type") for h in domain.iterfind("devices/hostdev")] == ["pci", "mdev", "scsi"]


def test_the_output_is_written_as_libvirt_writes_it(topology):
    """Single quotes, namespace declarations last, quotes escaped in text;
    <metadata> as libxml2 writes it; no prolog (libvirt's XML has none)."""
    source = ("<?xml version='1.0' encoding='UTF-8'?>\n<!-- dropped -->\n"
              + minimal(after="  <metadata>\n    <a:b xmlns:a=\"urn:a\" c=\"it's\">t'x\"t</a:b>\n"
                              "  </metadata>\n  <title>it's \"x\"</title>\n")
              .replace("<domain type='kvm'>", '<domain xmlns:q="urn:q" type="kvm">'))
    p = placement(topology, vm_config("t", nr_vcpus="1", title='it\'s "x"'))
    out = apply_config(source, p)
    assert out.startswith("<domain type='kvm' xmlns:q='urn:q'>\n")
    assert "<a:b xmlns:a=\"urn:a\" c=\"it's\">t'x\"t</a:b>" in out
    assert "<title>it&apos;s &quot;x&quot;</title>" in out
    assert out.endswith("</domain>\n")


def test_compact_document_stays_compact(topology):
    case = next(c for c in CASES if c.id == "compact.rt")
    out = apply_config(case.source, placement(topology, case.config))
    assert out.count("\n") == 1 and '"' not in out
    assert "<memoryBacking><locked/></memoryBacking><vcpu>2</vcpu><cputune>" in out


# -- errors --------------------------------------------------------------------
@pytest.mark.parametrize("xml, message", [
    ("", "not well-formed XML"),
    ("<domain type='kvm'><name>x</name>", "line 1: not well-formed XML"),
    ("<domain type='kvm'>\n  <name>x</nam>\n</domain>", "line 2: not well-formed XML"),
    ("<network><name>default</name></network>", "root element is <network>, not <domain>"),
    (b"<domain/>", "expected the XML as text, got bytes"),
])
def test_malformed_input_is_a_named_error(topology, xml, message):
    p = placement(topology, vm_config("t"))
    for call in (lambda: apply_config(xml, p), lambda: read_facts(xml),
                 lambda: owned_differences(xml, xml)):
        with pytest.raises(DomainXmlError, match=re.escape(message)) as info:
            call()
        assert isinstance(info.value, KvmrtError)


@pytest.mark.parametrize("inner, devices, message", [
    ("  <vcpu>four</vcpu>\n", "", "<vcpu>: count 'four' is not an unsigned integer"),
    ("", "    <hostdev mode='subsystem' type='pci'>\n      <source/>\n    </hostdev>\n",
     "PCI <hostdev> without <source><address>"),
    ("", "    <hostdev mode='subsystem' type='pci'>\n      <source>\n"
         "        <address domain='0x0000' bus='0x21' slot='0x20' function='0x0'/>\n"
         "      </source>\n    </hostdev>\n", "slot='0x20' is above 0x1f"),
    ("", "    <hostdev mode='subsystem' type='pci'>\n      <source>\n"
         "        <address domain='0x0000' slot='0x00' function='0x0'/>\n"
         "      </source>\n    </hostdev>\n", "bus is missing"),
])
def test_unreadable_owned_values_are_named_errors(inner, devices, message):
    with pytest.raises(DomainXmlError, match=re.escape(message)):
        read_facts(minimal(inner, devices=devices))


def test_unreadable_pin_is_a_named_error():
    inner = "  <cputune>\n    <vcpupin vcpu='0' cpuset='8-x'/>\n  </cputune>\n"
    with pytest.raises(DomainXmlError, match=r"line 5: <vcpupin cpuset='8-x'>: not a CPU"):
        owned_differences(minimal(inner), minimal(inner))


# -- read_facts ------------------------------------------------------------------
FACTS = {
    "q35-uefi-gpu": DomainFacts(
        "3f1c7e2a-5b8d-4a6e-9c0f-2d4b6a8e0c13", "rhel8-gpu", "RHEL 8.4 workstation", "", 8,
        (1, 8, 1), PciSet.parse("0000:21:00.0 0000:41:00.0")),
    "i440fx-bios": DomainFacts(
        "7b2e9d4c-1a3f-4e5b-8c7d-6f0a1b2c3d4e", "centos7-legacy", "",
        "Legacy data acquisition box\nmoved from the old rack in 2019", 2, None, PciSet()),
    "kvmrt-configured": DomainFacts(
        "fde74e84-0e1b-404e-90e7-72101e79c48a", "RedHawk-8.4-RT", "Real-Time RedHawk 8.4",
        "Configured for real-time", 6, (1, 6, 1), PciSet.parse("0000:22:00.0 0000:22:00.1"),
        pinned_cpus=frozenset(range(8, 16)), numatune=frozenset({1}), locked=True,
        kvm_hidden=True),
    "compact": DomainFacts(
        "0b5c3e4a-1f2d-4c6b-9a8e-7d6c5b4a3f21", "scripted", "", "", 1, None, PciSet()),
}


@pytest.mark.parametrize("sample", SAMPLES)
def test_read_facts_of_samples(sample):
    assert read_facts((DOMAINS / f"{sample}.xml").read_text()) == FACTS[sample]


def test_read_facts_folds_dies_and_clusters_into_cores():
    cpu = ("  <cpu>\n    <topology sockets='2' dies='2' clusters='3' cores='4' threads='2'/>\n"
           "  </cpu>\n")
    inner = "  <vcpu placement='static'>96</vcpu>\n"
    facts = read_facts(minimal(inner, after=cpu))
    assert (facts.nr_vcpus, facts.cpu_topology, facts.uuid) == (96, (2, 24, 2), None)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_read_facts_reads_back_what_apply_wrote(case, topology):
    p = placement(topology, case.config)
    facts = read_facts(apply_config(case.source, p))
    assert (facts.name, facts.title, facts.description) == (p.vm.name, p.vm.title,
                                                            p.vm.description)
    assert (facts.nr_vcpus, facts.cpu_topology) == (p.nr_vcpus, p.cpu_topology)
    assert facts.pcidevs == p.vm.pcidevs
    assert facts.pinned_cpus == frozenset().union(p.emulator_cpus, *p.vcpu_cpus)
    assert (facts.numatune, facts.locked, facts.kvm_hidden) == (
        p.numatune, p.rt_memory, bool(p.vm.hide_kvm))


# -- owned_differences -------------------------------------------------------------
@pytest.fixture
def wanted(topology):
    case = next(c for c in CASES if c.id == "kvmrt-configured.rt")
    return apply_config(case.source, placement(topology, case.config))


def pretty_again(xml: str) -> str:
    """libvirt's layout: re-indented, comments gone, attributes reordered."""
    domain = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True,
                                                             remove_comments=True))
    for el in domain.iter():
        if len(el.attrib) > 1:
            items = list(el.attrib.items())[::-1]
            el.attrib.clear()
            el.attrib.update(items)
    return etree.tostring(domain, encoding="unicode", pretty_print=True)


NORMALISATIONS = {
    "dies and clusters of 1 added": lambda x: x.replace(
        "<topology sockets='1' dies='1' cores='6'",
        "<topology sockets='1' dies='1' clusters='1' cores='6'"),
    "layout, attribute order, quotes": pretty_again,
    "sets written another way": lambda x: x.replace("cpuset='30-31'", "cpuset='31,30'")
    .replace("nodeset='3'", "nodeset='3-3'").replace("cpuset='24'", "cpuset='24-27,^25,^26,^27'"),
    "hostdev gains a guest address": lambda x: x.replace(
        "function='0x1'/>\n      </source>\n",
        "function='0x1'/>\n      </source>\n      <address type='pci' domain='0x0000' "
        "bus='0x07' slot='0x00' function='0x0'/>\n"),
    "hex case and zero padding": lambda x: x.replace(
        "bus='0x22' slot='0x00' function='0x1'", "bus='0X22' slot='0x0' function='1'"),
    "placement and current at their defaults": lambda x: x.replace(
        "<vcpu placement='static' current='4'>6</vcpu>", "<vcpu current='6'>6</vcpu>"),
    "mode strict made explicit or implicit": lambda x: x.replace(
        "<memory mode='strict' nodeset='3'/>", "<memory nodeset='3'/>"),
    "escaped text": lambda x: x.replace("Moved to node 3", "Moved to node&#32;3"),
}


@pytest.mark.parametrize("change", NORMALISATIONS, ids=list(NORMALISATIONS))
def test_libvirt_normalisations_are_no_difference(wanted, change):
    actual = NORMALISATIONS[change](wanted)
    assert actual != wanted
    assert owned_differences(wanted, actual) == []


LOSSES = {
    "locked dropped": (lambda x: x.replace("    <locked/>\n", ""),
                       "<memoryBacking><locked/>: libvirt dropped it (kvmrt wrote <locked/>)"),
    "pin changed": (lambda x: x.replace("<vcpupin vcpu='2' cpuset='26'/>",
                                        "<vcpupin vcpu='2' cpuset='26-27'/>"),
                    "<cputune><vcpupin vcpu='2'>: kvmrt wrote CPUs 26, libvirt has CPUs 26-27"),
    "iothread pin dropped": (lambda x: x.replace("    <iothreadpin iothread='4' cpuset='30-31'/>\n",
                                                 ""),
                             "<cputune><iothreadpin iothread='4'>: libvirt dropped it "
                             "(kvmrt wrote CPUs 30-31)"),
    "hidden turned off": (lambda x: x.replace("<hidden state='on'/>", "<hidden state='off'/>"),
                          "<features><kvm><hidden>: kvmrt wrote state=on, libvirt has state=off"),
    "topology changed": (lambda x: x.replace("sockets='1' dies='1' cores='6'",
                                             "sockets='1' dies='2' cores='3'"),
                         "<cpu><topology>: kvmrt wrote sockets=1 cores=6 threads=1, "
                         "libvirt has sockets=1 dies=2 cores=3 threads=1"),
    "hostdev dropped": (lambda x: re.sub(r"    <hostdev(?:(?!</hostdev>).)*?function='0x1'/>\n"
                                         r"      </source>.*?</hostdev>\n", "", x, flags=re.S),
                        "PCI <hostdev> 0000:22:00.1: libvirt dropped it (kvmrt wrote the device)"),
    "numatune changed": (lambda x: x.replace("<memory mode='strict' nodeset='3'/>",
                                             "<memory mode='preferred' nodeset='3'/>"),
                         "<numatune><memory>: kvmrt wrote mode=strict nodeset=3, "
                         "libvirt has mode=preferred nodeset=3"),
    "title changed": (lambda x: x.replace("<title>Real-Time", "<title>Soft real-time"),
                      "<title>: kvmrt wrote 'Real-Time RedHawk 8.4', "
                      "libvirt has 'Soft real-time RedHawk 8.4'"),
    "vcpu count changed": (lambda x: x.replace(">6</vcpu>", ">8</vcpu>"),
                           "<vcpu> count: kvmrt wrote 6, libvirt has 8"),
    "a pin appeared": (lambda x: x.replace(
        "    <emulatorpin", "    <vcpupin vcpu='9' cpuset='1'/>\n    <emulatorpin"),
                       "<cputune><vcpupin vcpu='9'>: libvirt has CPUs 1, which kvmrt did not "
                       "write"),
}


@pytest.mark.parametrize("loss", LOSSES, ids=list(LOSSES))
def test_real_losses_are_reported(wanted, loss):
    change, message = LOSSES[loss]
    actual = change(wanted)
    assert actual != wanted
    assert owned_differences(wanted, actual) == [message]


# -- libvirt's test driver ------------------------------------------------------------
@pytest.fixture
def conn():
    c = libvirt.open(f"test://{NODE.resolve()}")
    yield c
    c.close()


def test_node_file_loads_with_running_and_shut_off_domains(conn):
    state = {d.name(): d.isActive() for d in conn.listAllDomains()}
    assert state == {"rhel8-gpu": 1, "RedHawk-8.4-RT": 1, "centos7-legacy": 0, "RedHawk-8.4": 0}
    assert conn.getInfo()[2] == 64
    facts = {d.name(): read_facts(d.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
             for d in conn.listAllDomains()}
    assert facts["rhel8-gpu"].pcidevs == PciSet.parse("0000:21:00.0 0000:41:00.0")
    assert facts["RedHawk-8.4-RT"].pcidevs == PciSet.parse("0000:22:00.0 0000:22:00.1")
    dom = conn.lookupByName("RedHawk-8.4")
    dom.setAutostart(1)
    assert dom.autostart() == 1


def test_round_trip_through_libvirt(applied, conn):
    _, p, out = applied
    dom = conn.defineXML(out)
    readback = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert owned_differences(out, readback) == []
    assert read_facts(readback) == read_facts(out)
    assert apply_config(readback, p) == readback  # libvirt's form is already in step


def test_round_trip_reports_what_libvirt_would_lose(conn, wanted):
    dom = conn.defineXML(wanted.replace("    <locked/>\n", ""))
    readback = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert owned_differences(wanted, readback) == [
        "<memoryBacking><locked/>: libvirt dropped it (kvmrt wrote <locked/>)"]


def test_every_node_domain_accepts_its_own_config(conn, topology):
    """What import would take from each domain, applied back, defines cleanly."""
    for dom in conn.listAllDomains():
        facts = read_facts(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        attrs = dict(title=facts.title, nr_vcpus=str(facts.nr_vcpus),
                     pcidevs=str(facts.pcidevs))
        if facts.cpu_topology:
            attrs["cpu_topology"] = ",".join(map(str, facts.cpu_topology))
        p = placement(topology, vm_config(facts.name, **attrs))
        xml = apply_config(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), p)
        readback = conn.defineXML(xml).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
        assert owned_differences(xml, readback) == []
        assert read_facts(readback).pcidevs == facts.pcidevs

