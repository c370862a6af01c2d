"""Import takes the tuning a domain already has (issue 9.3), and one bad
domain does not block the others (9.4); on libvirt's test driver.

Round trip: ``kvmrt-import`` then ``kvmrt-sync-config -q`` changes nothing,
unless the config cannot express what the XML has, and then import said
which element and why. A sync or boot never removes tuning silently.
"""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from kvmrt.config.file import Config, format_config, parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.domxml_channel import PORT_NAME, socket_path
from kvmrt.libvirt_sync.domxml import owned_changes
from kvmrt.libvirt_sync.importer import import_domains, sync_from_libvirt
from kvmrt.libvirt_sync.sync import plan_to_libvirt, sync_to_libvirt
from kvmrt.lifecycle import boot_vm

DATA = Path(__file__).parent / "data"
DOMAINS = DATA / "domains"
SAMPLES = ("q35-uefi-gpu", "i440fx-bios", "kvmrt-configured", "compact", "tuned-secrets",
           "tuned-odd", "libvirt-suite")
ODD_UUID = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


def node_uri(tmp_path: Path, *samples: str) -> str:
    node = tmp_path / "node.xml"
    node.write_text("<node>\n" + "".join(
        (DOMAINS / f"{s}.xml").read_text() for s in samples) + "</node>\n")
    return f"test://{node}"


@pytest.fixture
def host(threadripper):
    return read_host(HostFS(threadripper))


def round_trip(domains: Domains, host) -> tuple[Config, list[str], dict]:
    config = Config(path="k.cfg")
    result = import_domains(config, domains.all(), host, update=False)
    assert result.refused == [] or all("pcidevs" in r for r in result.refused)
    outs = {o.vm: o for o in sync_to_libvirt(config.vms, host.topology, domains, query=True)}
    return config, result.notes, outs


@pytest.mark.parametrize("uri", ["test:///default", "node.xml", *SAMPLES])
def test_import_then_sync_query_changes_nothing_it_did_not_name(uri, host, tmp_path):
    if uri == "node.xml":
        uri = f"test://{(DATA / 'node.xml').resolve()}"
    elif uri in SAMPLES:
        uri = node_uri(tmp_path, uri)
    domains = Domains(libvirt.open(uri))
    config, notes, outs = round_trip(domains, host)
    for vm in config.vms:
        change = plan_to_libvirt(vm, host.topology, domains)
        named = [n for n in notes if n.startswith(f"{vm.name}: ")]
        # Every element a sync would still change was named by the import, and only those.
        assert len(named) == len(owned_changes(change.domain.xml, change.wanted))
        assert (outs[vm.label].status == "in step") == (not named)


def test_libvirt_suite_domains_are_in_step_after_one_sync(host, tmp_path):
    """After import and one sync, libvirt keeps what kvmrt wrote: no domain
    stays out of step (a <vcpu placement='auto'> domain's numatune
    placement='auto' is libvirt's, which it puts back when removed)."""
    domains = Domains(libvirt.open(node_uri(tmp_path, "libvirt-suite")))
    config = Config(path="k.cfg")
    result = import_domains(config, domains.all(), host, update=False)
    assert result.refused == []
    synced = sync_to_libvirt(config.vms, host.topology, domains, query=False)
    assert [m for o in synced for m in o.messages] == [
        "suite-pin-ranges: removed <vcpu cpuset> (CPUs 4,6-7): the config does not have it"]
    assert ("suite-pin-ranges: <vcpu cpuset>: libvirt has CPUs 4,6-7, kvmrt-sync-config "
            "would remove it (kvmrt pins each vCPU with <vcpupin> instead)") in result.notes
    again = sync_to_libvirt(config.vms, host.topology, domains, query=True)
    assert {o.vm: o.status for o in again} == dict.fromkeys(
        ("suite-auto-placement", "suite-memnode", "suite-pin-ranges", "suite-rt-gpu"),
        "in step")


def test_a_sync_of_an_imported_gpu_guest_changes_only_the_pins_it_named(host, tmp_path):
    """Hugepages, hyperv, kvm hint-dedicated, vcpusched, iothreadids, a USB
    hostdev and the PCI hostdevs' guest addresses and ROM stay; the pins
    move where kvmrt puts them, and import said so."""
    domains = Domains(libvirt.open(node_uri(tmp_path, "libvirt-suite")))
    config = Config(path="k.cfg")
    result = import_domains(config, [domains.by_name("suite-rt-gpu")], host, update=False)
    assert format_config(config.vms) == (
        "[7c1e0a52-3b7d-4c55-9a61-0f2d3e4a5b03]\nname = suite-rt-gpu\nnr_vcpus = 4\n"
        "cpuset = 8-13\nrt_memory = True\nnumatune = 0\nhide_kvm = True\n"
        "pcidevs = 0000:22:00.0 0000:22:00.1\n")
    named = [n.split(": ")[1] for n in result.notes]
    before = domains.by_name("suite-rt-gpu").xml
    (out,) = sync_to_libvirt(config.vms, host.topology, domains, query=False)
    after = domains.by_name("suite-rt-gpu").xml
    changed = [label for label, _have, _want in owned_changes(before, after)]
    assert out.messages == [] and changed == named == [
        "<cputune><vcpupin vcpu='0'>", "<cputune><vcpupin vcpu='1'>",
        "<cputune><vcpupin vcpu='2'>", "<cputune><vcpupin vcpu='3'>",
        "<cputune><emulatorpin>", "<cputune><iothreadpin iothread='1'>",
        "<cputune><iothreadpin iothread='3'>"]
    untouched = [line for line in before.splitlines() if "pin " not in line]
    assert [line for line in after.splitlines() if "pin " not in line] == untouched


def test_import_takes_the_guest_services_channel_kvmrt_wrote(host, tmp_path):
    """A domain with kvmrt's channel (a config that had guest_services on,
    then was lost) imports with guest_services on: a sync keeps the channel."""
    uuid = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6e"
    node = tmp_path / "gs.xml"
    node.write_text(
        f"<node><domain type='test'><name>with-gs</name><uuid>{uuid}</uuid>"
        "<memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
        "<cpu><topology sockets='1' cores='1' threads='1'/></cpu><devices>"
        f"<channel type='unix'><source mode='bind' path='{socket_path(uuid)}'/>"
        f"<target type='virtio' name='{PORT_NAME}'/></channel></devices></domain></node>")
    domains = Domains(libvirt.open(f"test://{node}"))
    config, notes, outs = round_trip(domains, host)
    assert config.vms[0].guest_services is True
    assert notes == [] and outs["with-gs"].status == "in step"


def test_import_takes_pins_numatune_locked_and_hidden_kvm(host, tmp_path):
    domains = Domains(libvirt.open(node_uri(tmp_path, "tuned-secrets", "kvmrt-configured")))
    config, notes, outs = round_trip(domains, host)
    assert format_config(config.vms) == (
        "[fde74e84-0e1b-404e-90e7-72101e79c48a]\nname = RedHawk-8.4-RT\n"
        "title = Real-Time RedHawk 8.4\ndescription = Configured for real-time\n"
        "nr_vcpus = 6\ncpuset = 8-15\nrt_memory = True\nhide_kvm = True\n"
        "pcidevs = 0000:22:00.0 0000:22:00.1\n\n"
        "[5d0c2f7e-8a41-4b9e-a3c6-1e2f3a4b5c6d]\nname = tuned-secrets\n"
        "title = Pinned, locked, hidden, with console passwords\nnr_vcpus = 4\n"
        "cpuset = 2-7\nrt_memory = True\nhide_kvm = True\n")
    assert notes == [] and {o.status for o in outs.values()} == {"in step"}


def test_import_names_what_the_config_cannot_express(host, tmp_path):
    domains = Domains(libvirt.open(node_uri(tmp_path, "tuned-odd")))
    config, notes, outs = round_trip(domains, host)
    assert format_config(config.vms) == (
        f"[{ODD_UUID}]\nname = tuned-odd\nnr_vcpus = auto\ncpuset = 3-5\n")
    assert notes == [
        "tuned-odd: <vcpu cpuset>: libvirt has CPUs 3-5, kvmrt-sync-config would remove it "
        "(kvmrt pins each vCPU with <vcpupin> instead)",
        "tuned-odd: <cputune><vcpupin vcpu='0'>: libvirt has CPUs 5, kvmrt-sync-config would "
        "write CPUs 3 (kvmrt pins vCPU i to the i-th usable CPU of the cpuset and the "
        "emulator and iothreads to the other CPUs)",
        "tuned-odd: <cputune><vcpupin vcpu='1'>: libvirt has CPUs 3, kvmrt-sync-config would "
        "write CPUs 4 (kvmrt pins vCPU i to the i-th usable CPU of the cpuset and the "
        "emulator and iothreads to the other CPUs)",
        "tuned-odd: <numatune><memory>: libvirt has mode=interleave nodeset=0, "
        "kvmrt-sync-config would write mode=strict nodeset=0 "
        "(numatune is a strict nodeset (mode='strict') or nothing)",
        "tuned-odd: <features><kvm><hidden>: libvirt has state=off, kvmrt-sync-config would "
        "remove it (hide_kvm writes state='on' or nothing)",
        "tuned-odd: <cputune><emulatorpin>: libvirt has none, kvmrt-sync-config would "
        "write CPUs 5 (kvmrt pins vCPU i to the i-th usable CPU of the cpuset and the "
        "emulator and iothreads to the other CPUs)"]
    assert outs["tuned-odd"].messages == [
        "tuned-odd: would remove <vcpu cpuset> (CPUs 3-5): the config does not have it",
        "tuned-odd: would remove <features><kvm><hidden> (state=off): "
        "the config does not have it"]


def test_sync_and_boot_dry_run_name_each_tuning_element_they_remove(host, tmp_path,
                                                                    threadripper):
    domains = Domains(libvirt.open(node_uri(tmp_path, "tuned-secrets")))
    bare = parse_config("[5d0c2f7e-8a41-4b9e-a3c6-1e2f3a4b5c6d]\nname = tuned-secrets\n"
                        "title = Pinned, locked, hidden, with console passwords\n"
                        "nr_vcpus = 4\n")
    vm = bare.vms[0]
    removed = [
        "removed <cputune><vcpupin vcpu='0'> (CPUs 2): the config does not have it",
        "removed <cputune><vcpupin vcpu='1'> (CPUs 3): the config does not have it",
        "removed <cputune><vcpupin vcpu='2'> (CPUs 4): the config does not have it",
        "removed <cputune><vcpupin vcpu='3'> (CPUs 5): the config does not have it",
        "removed <cputune><emulatorpin> (CPUs 6-7): the config does not have it",
        "removed <cputune><iothreadpin iothread='1'> (CPUs 6-7): the config does not have it",
        "removed <numatune><memory> (mode=strict nodeset=0): the config does not have it",
        "removed <memoryBacking><locked/> (<locked/>): the config does not have it",
        "removed <features><kvm><hidden> (state=on): the config does not have it"]
    dry = boot_vm(HostFS(threadripper), domains, vm, host.topology, dry_run=True)
    assert dry.notes == [f"tuned-secrets: would {line}" for line in
                         (r.replace("removed", "remove", 1) for r in removed)]
    (out,) = sync_to_libvirt([vm], host.topology, domains, query=False)
    assert out.status == "updated" and out.messages == [f"tuned-secrets: {r}" for r in removed]


def test_import_skips_only_the_domain_that_cannot_be_imported(host, tmp_path):
    domains = Domains(libvirt.open(node_uri(tmp_path, "q35-uefi-gpu", "tuned-secrets")))
    config = Config(path="k.cfg")
    result = import_domains(config, domains.all(), host, update=False)
    assert result.added == ["tuned-secrets"]
    assert result.refused == [
        "rhel8-gpu: not imported: pcidevs = 0000:21:00.0 0000:41:00.0: PCI device "
        "0000:41:00.0 does not exist on this host; fix the domain (virsh edit rhel8-gpu) "
        "or the config (kvmrt-edit-config), then run the command again"]


def test_update_refuses_a_name_another_vm_has(host, tmp_path):
    domains = Domains(libvirt.open(node_uri(tmp_path, "tuned-odd", "tuned-secrets")))
    config = parse_config("[5d0c2f7e-8a41-4b9e-a3c6-1e2f3a4b5c6d]\nname = tuned-odd\n",
                          "k.cfg")
    result = import_domains(config, domains.all(), host, update=True)
    assert result.refused == [
        "tuned-odd: not imported: name = tuned-odd: the config's VM "
        "[5d0c2f7e-8a41-4b9e-a3c6-1e2f3a4b5c6d] has that name; fix the domain (virsh edit "
        "tuned-odd) or the config (kvmrt-edit-config), then run the command again"]
    assert result.updated == ["tuned-secrets"] and config.vms[0].name == "tuned-secrets"


def test_a_sync_names_each_pci_device_it_removes(host, tmp_path):
    domains = Domains(libvirt.open(node_uri(tmp_path, "kvmrt-configured")))
    config = parse_config("[fde74e84-0e1b-404e-90e7-72101e79c48a]\nname = RedHawk-8.4-RT\n"
                          "nr_vcpus = 6\ncpuset = 8-15\nrt_memory = True\nhide_kvm = True\n"
                          "pcidevs = 0000:22:00.1\n")
    (out,) = sync_to_libvirt(config.vms, host.topology, domains, query=True)
    assert out.messages == ["RedHawk-8.4-RT: would remove PCI <hostdev> 0000:22:00.0 "
                            "(the device): the config does not have it"]
