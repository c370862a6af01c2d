"""Secrets survive a redefine (issue 9.1), on libvirt's test driver.

kvmrt reads the persistent XML with VIR_DOMAIN_XML_SECURE, so a sync keeps
what libvirt 9 gives only with that flag: the <graphics passwd=...> of VNC
and SPICE and the <cookie> values of an HTTP(S) disk source (the <auth>
<secret> references of disks and iSCSI hostdevs are in the XML either way
and are checked too). A connection that may not read the secrets compares
but never defines.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import libvirt
import pytest

from kvmrt.config.file import parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domains import XML_SECURE_INACTIVE, Domains
from kvmrt.libvirt_sync.sync import XmlChange, sync_to_libvirt

DOMAIN = Path(__file__).parent / "data" / "domains" / "tuned-secrets.xml"
UUID = "5d0c2f7e-8a41-4b9e-a3c6-1e2f3a4b5c6d"
CONFIG = (f"[{UUID}]\nname = tuned-secrets\ntitle = {{title}}\nnr_vcpus = 4\ncpuset = 2-7\n"
          "rt_memory = True\nhide_kvm = True\n")
SECRETS = ("passwd='vncpass1'", "passwd='spice-secret'", "passwdValidTo='2030-01-01T00:00:00'",
           "<secret type='ceph' usage='mypassid'/>",
           "<secret type='iscsi' usage='libvirtiscsi'/>",
           "<secret type='iscsi' uuid='3e3c8dc4-7c5d-4d89-bc6a-ac2c9b5fc12e'/>",
           "<cookie name='session'>c2Vzc2lvbi1zZWNyZXQ</cookie>")


@pytest.fixture
def uri(tmp_path):
    node = tmp_path / "node.xml"
    node.write_text("<node>\n" + DOMAIN.read_text() + "</node>\n")
    return f"test://{node}"


@pytest.fixture
def host(threadripper):
    return read_host(HostFS(threadripper))


def secure_xml(conn: libvirt.virConnect) -> str:
    return conn.lookupByUUIDString(UUID).XMLDesc(XML_SECURE_INACTIVE)


def changed_lines(before: str, after: str) -> list[str]:
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                   lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_a_sync_keeps_every_secret_and_changes_only_what_kvmrt_owns(uri, host):
    conn = libvirt.open(uri)
    before = secure_xml(conn)
    assert all(s in before for s in SECRETS)
    config = parse_config(CONFIG.format(title="Renamed by kvmrt"))
    (out,) = sync_to_libvirt(config.vms, host.topology, Domains(conn), query=False)
    assert out.status == "updated" and out.messages == []
    after = secure_xml(conn)
    assert changed_lines(before, after) == [
        "-  <title>Pinned, locked, hidden, with console passwords</title>",
        "+  <title>Renamed by kvmrt</title>"]


def test_printed_diffs_hide_the_passwords_and_cookies(uri):
    (domain,) = Domains(libvirt.open(uri)).all()
    assert domain.secure and "passwd='vncpass1'" in domain.xml
    # Any diff line near or on <graphics> or <cookie> shows the attribute
    # or element, never its value.
    wanted = (domain.xml.replace("type='vnc' port='-1'", "type='vnc' port='5901'")
              .replace("port='443'", "port='8443'"))
    vm = parse_config(CONFIG.format(title="x")).vms[0]
    diff = XmlChange(vm, domain, wanted).diff()
    assert "-    <graphics type='vnc' port='-1' autoport='yes' passwd='(hidden)'" in diff
    assert "+    <graphics type='vnc' port='5901' autoport='yes' passwd='(hidden)'" in diff
    assert "           <cookie name='session'>(hidden)</cookie>\n" in diff
    assert "vncpass1" not in diff and "c2Vzc2lvbi1zZWNyZXQ" not in diff


def test_a_read_only_connection_compares_but_never_defines(uri, host):
    domains = Domains(libvirt.openReadOnly(uri))
    (domain,) = domains.all()
    assert not domain.secure and "passwd=" not in domain.xml
    in_step = parse_config(CONFIG.format(title="Pinned, locked, hidden, with console passwords"))
    assert [o.status for o in sync_to_libvirt(in_step.vms, host.topology, domains,
                                              query=True)] == ["in step"]
    changed = parse_config(CONFIG.format(title="new"))
    (out,) = sync_to_libvirt(changed.vms, host.topology, domains, query=False)
    assert out.status == "failed"
    assert out.messages == [
        "libvirt does not let this connection read the passwords of domain 'tuned-secrets' "
        "(VIR_DOMAIN_XML_SECURE); defining it would remove them, so nothing was changed: "
        "run as root on a read-write connection"]
