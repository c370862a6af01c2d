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
from kvmrt.libvirt_sync.importer import (WouldBreakConfig, check_still_valid, import_domains,
                                         sync_from_libvirt)
from kvmrt.libvirt_sync.sync import sync_to_libvirt
from kvmrt.validate import validate

DATA = Path(__file__).parent / "data"
EXAMPLE = Path(__file__).parent.parent / "examples" / "threadripper-5975wx.cfg"
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"


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
    assert result.added == ["RedHawk-8.4", "RedHawk-8.4-RT", "centos7-legacy", "rhel8-gpu"]
    gpu = config.find("rhel8-gpu")
    assert gpu.title == "RHEL 8.4 workstation" and gpu.nr_vcpus == 8
    assert str(gpu.pcidevs) == "0000:21:00.0 0000:41:00.0"
    assert import_domains(config, domains.all(), host, update=False).skipped == [
        "RedHawk-8.4", "RedHawk-8.4-RT", "centos7-legacy", "rhel8-gpu"]


def test_sync_writes_the_spec_example_into_libvirt(domains, host):
    config = load_config(str(EXAMPLE))
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=True)
    assert out.status == "out of step" and "+  <vcpu placement='static' current='4'>15</vcpu>" in out.diff
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=False)
    assert out.status == "updated" and out.messages == []
    facts = read_facts(domains.by_uuid(RT_UUID).xml)
    assert facts.nr_vcpus == 15 and facts.cpu_topology == (1, 15, 1)
    (out,) = sync_to_libvirt(config.select(("RedHawk-8.4-RT",)), host.topology, domains,
                             query=True)
    assert out.status == "in step"
    assert not [d for d in validate(config, host, domains={
        d.uuid: d for d in domains.all()}) if d.code == "out-of-step"]


def test_reverse_sync_refuses_values_that_break_the_config(domains, host):
    # libvirt has 6 vCPUs for the rt VM; give it a cpuset with 4 usable CPUs.
    text = f"[{RT_UUID}]\nname = RedHawk-8.4-RT\ncpuset = 8-11\nrt = yes\nnr_vcpus = 3\n"
    config = parse_config(text, "k.cfg")
    before = Config(config.path, list(config.vms), config.problems)
    (out,) = sync_from_libvirt(config, config.vms, host, domains, query=False)
    assert out.status == "updated" and "+nr_vcpus = 6" in out.diff
    with pytest.raises(WouldBreakConfig) as info:
        check_still_valid(before, config, host)
    assert [e.code for e in info.value.errors] == ["rt-too-few-cpus"]
    assert "k.cfg:3: error: RedHawk-8.4-RT: cpuset: 4 usable CPUs" in str(info.value)


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
