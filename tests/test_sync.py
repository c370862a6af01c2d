"""Import and sync in-process, on libvirt's test driver (the real libvirt
API, no daemon) with the Threadripper domains of tests/data/node.xml."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from kvmrt.config.file import Config, load_config, parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.domxml import read_facts
from kvmrt.libvirt_sync.importer import import_domains, sync_from_libvirt
from kvmrt.libvirt_sync.sync import sync_to_libvirt
from kvmrt.validate import validate

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parent.parent / "examples" / "threadripper-5975wx.cfg"
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"
GPU_UUID = "3f1c7e2a-5b8d-4a6e-9c0f-2d4b6a8e0c13"


@pytest.fixture
def domains():
    conn = libvirt.open(f"test://{(DATA / 'node.xml').resolve()}")
    yield Domains(conn)
    conn.close()


@pytest.fixture
def host(threadripper):
    return read_host(HostFS(threadripper))


def test_import_all_domains_into_an_empty_config(domains, host):
    config = Config(path="k.cfg")
    result = import_domains(config, domains.all(), host, update=False)
    # rhel8-gpu passes through 0000:41:00.0, which this host lacks: it alone is left out.
    assert result.added == ["RedHawk-8.4", "RedHawk-8.4-RT", "centos7-legacy"]
    assert result.refused == [
        "rhel8-gpu: not imported: pcidevs = 0000:21:00.0 0000:41:00.0: PCI device "
        "0000:41:00.0 does not exist on this host; fix the domain (virsh edit rhel8-gpu) "
        "or the config (kvmrt-edit-config), then run the command again"]
    assert config.find("rhel8-gpu") is None
    rt = config.find("RedHawk-8.4-RT")
    assert rt.title == "Real-Time RedHawk 8.4" and rt.nr_vcpus == 6
    assert str(rt.pcidevs) == "0000:22:00.0 0000:22:00.1"
    assert import_domains(config, domains.all(), host, update=False).skipped == [
        "RedHawk-8.4", "RedHawk-8.4-RT", "centos7-legacy"]


def test_sync_writes_the_spec_example_into_libvirt(domains, host):
    config = load_config(str(EXAMPLE))
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=True)
    assert out.status == "out of step" and "+  <vcpu placement='static' current='4'>15</vcpu>" in out.diff
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=False)
    # The example does not hide KVM; the domain did: the sync says so.
    assert out.status == "updated" and out.messages == [
        "RedHawk-8.4-RT: removed <features><kvm><hidden> (state=on): "
        "the config does not have it"]
    facts = read_facts(domains.by_uuid(RT_UUID).xml)
    assert facts.nr_vcpus == 15 and facts.cpu_topology == (1, 15, 1)
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=True)
    assert out.status == "in step"
    assert not [d for d in validate(config, host, domains={
        d.uuid: d for d in domains.all()}) if d.code == "out-of-step"]


def test_reverse_sync_takes_each_vm_that_it_can(domains, host):
    # rhel8-gpu passes through 0000:41:00.0, which this host lacks: it alone fails.
    text = (f"[{GPU_UUID}]\nname = rhel8-gpu\npcidevs = 0000:21:00.0\n\n"
            f"[{RT_UUID}]\nname = RedHawk-8.4-RT\ncpuset = 8-11\nrt = yes\nnr_vcpus = 3\n")
    config = parse_config(text, "k.cfg")
    gpu, rt = config.vms
    gpu_out, rt_out = sync_from_libvirt(config, config.vms, host, domains, query=False)
    assert gpu_out.status == "failed" and config.vms[0] is gpu
    assert gpu_out.messages == [
        "pcidevs = 0000:21:00.0 0000:41:00.0: PCI device 0000:41:00.0 does not exist on "
        "this host; fix the domain (virsh edit rhel8-gpu) or the config (kvmrt-edit-config), "
        "then run the command again"]
    assert rt_out.status == "updated" and "+cpuset = 8-15" in rt_out.diff
    assert config.vms[1].nr_vcpus == 6


def test_running_domain_is_not_renamed(domains, host):
    config = parse_config(f"[{RT_UUID}]\nname = renamed\ncpuset = 8-23\nrt = 1\n")
    (out,) = sync_to_libvirt(config.vms, host.topology, domains, query=False)
    assert out.status == "failed"
    assert "cannot rename domain 'RedHawk-8.4-RT' to 'renamed': the domain is running" in \
        out.messages[0]
    assert domains.by_uuid(RT_UUID).name == "RedHawk-8.4-RT"


def test_libvirt_autostart_is_a_warning(domains, host):
    domains.conn.lookupByName("RedHawk-8.4").setAutostart(1)
    config = load_config(str(EXAMPLE))
    found = validate(config, host, include_disabled=True,
                     domains={d.uuid: d for d in domains.all()})
    (d,) = [d for d in found if d.code == "libvirt-autostart"]
    assert d.vms == ("RedHawk-8.4",) and "virsh autostart --disable RedHawk-8.4" in d.message
