"""``guest_services``: kvmrt's virtio-serial channel in the domain XML
(kvmrt.libvirt_sync.domxml_channel through apply_config)."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from lxml import etree

import hostgen
from kvmrt.config.file import parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domxml import apply_config, owned_differences
from kvmrt.placement import place

DATA = Path(__file__).parent / "data"
UUID = "00000000-0000-4000-8000-000000000001"


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    root = hostgen.build_host(tmp_path_factory.mktemp("host"), hostgen.small_4c1t())
    return read_host(HostFS(root)).topology


@pytest.fixture(autouse=True)
def state_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("KVMRT_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state"


def applied(topology, xml: str, on: bool) -> str:
    name = etree.fromstring(xml.encode()).findtext("name")
    config = parse_config(f"[{UUID}]\nname = {name}\nnr_vcpus = 2\n"
                          f"guest_services = {'yes' if on else 'no'}\n")
    assert not config.has_errors
    return apply_config(xml, place(config.vms[0], topology))


def channels(xml: str) -> list[etree._Element]:
    return etree.fromstring(xml.encode()).findall("devices/channel")


def kvmrt_channel(xml: str) -> etree._Element:
    (found,) = [c for c in channels(xml) if c.find("target").get("name") == "org.kvmrt.gs.0"]
    return found


def test_on_adds_a_unix_channel_named_by_uuid(topology, state_dir):
    source = (DATA / "domains/q35-uefi-gpu.xml").read_text()
    xml = applied(topology, source, True)
    channel = kvmrt_channel(xml)
    assert channel.get("type") == "unix"
    assert channel.find("source").attrib == {
        "mode": "bind", "path": f"{state_dir}/gs/{UUID}.sock"}
    assert channel.find("target").get("type") == "virtio"
    # The user's own channels (the guest agent's, spice's) stay before it.
    assert channels(xml)[:-1] and len(channels(xml)) == len(channels(source)) + 1
    assert channels(xml)[-1] is channel or channels(xml)[-1].attrib == channel.attrib


def test_on_twice_changes_nothing_and_off_removes_only_kvmrts(topology):
    source = (DATA / "domains/q35-uefi-gpu.xml").read_text()
    once = applied(topology, source, True)
    assert applied(topology, once, True) == once
    off = applied(topology, once, False)
    assert len(channels(off)) == len(channels(source))
    assert off == applied(topology, source, False)


def test_libvirt_keeps_the_channel(topology):
    """The test driver accepts the channel and owned_differences sees no loss."""
    xml = applied(topology, (DATA / "domains/i440fx-bios.xml").read_text(), True)
    conn = libvirt.open(f"test://{DATA / 'node.xml'}")
    try:
        dom = conn.defineXML(xml)
        back = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    finally:
        conn.close()
    assert owned_differences(xml, back) == []
    assert "org.kvmrt.gs.0" in back


def test_a_lost_channel_is_reported(topology):
    source = (DATA / "domains/i440fx-bios.xml").read_text()
    xml = applied(topology, source, True)
    (diff,) = owned_differences(xml, applied(topology, source, False))
    assert diff.startswith("<channel> org.kvmrt.gs.0: libvirt dropped it")
