"""End to end with a real libvirtd (QEMU driver, qemu:///system).

The tools run as installed commands against throwaway domains under unique
names, which are always undefined afterwards. libvirtd is started when it is
not running (scripts/start-libvirtd) and only what was started is stopped.
The host is this machine's real /sys; nothing here starts a VM or changes
the host.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
URI = "qemu:///system"


def sh(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def libvirtd():
    if os.geteuid() != 0:
        pytest.skip("needs root to run libvirtd with the QEMU driver")
    try:
        started = sh(str(ROOT / "scripts/start-libvirtd")).stdout.split()
    except (AssertionError, FileNotFoundError) as exc:
        pytest.skip(f"libvirtd cannot be started here: {exc}")
    yield URI
    for pid in reversed(started):
        try:
            os.kill(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            pass


@pytest.fixture
def domain(libvirtd, tmp_path):
    """Define throwaway domains; undefine them whatever happens."""
    made: list[str] = []

    def define(vcpus: int = 1, title: str = "") -> tuple[str, str]:
        name, uid = f"kvmrt-test-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
        kind = "kvm" if os.path.exists("/dev/kvm") else "qemu"
        xml = tmp_path / f"{name}.xml"
        xml.write_text(
            f"<domain type='{kind}'><name>{name}</name><uuid>{uid}</uuid>"
            + (f"<title>{title}</title>" if title else "")
            + f"<memory unit='MiB'>64</memory><vcpu>{vcpus}</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><devices/></domain>")
        sh("virsh", "-c", libvirtd, "define", str(xml))
        made.append(name)
        return name, uid

    yield define
    for name in made:
        sh("virsh", "-c", URI, "undefine", name, check=False)


def kvmrt(tool: str, *args: str, check: int | None = 0, input: str | None = None, **env: str):
    full = {**os.environ, "LIBVIRT_DEFAULT_URI": URI, **env}
    full.pop("KVMRT_FSROOT", None)
    proc = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True,
                          env=full, timeout=120, input=input)
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def dumpxml(name: str) -> str:
    return sh("virsh", "-c", URI, "dumpxml", "--inactive", name).stdout


def editor(tmp_path: Path, *sed: str) -> str:
    """A non-interactive EDITOR: a script that applies sed expressions."""
    script = tmp_path / f"editor-{len(list(tmp_path.glob('editor-*')))}"
    exprs = " ".join(f"-e {shlex.quote(e)}" for e in sed)
    script.write_text(f"#!/bin/sh\nsed -i {exprs} \"$1\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_import_edit_sync_and_back(domain, tmp_path):
    name, uid = domain(vcpus=1, title="first title")
    cfg = tmp_path / "kvmrt.cfg"
    out = kvmrt("kvmrt-import", "-f", str(cfg), name).stdout
    assert out == (f"{name}: added\nnote: {name}: <cpu><topology>: libvirt has none, "
                   "kvmrt-sync-config would write sockets=1 cores=1 threads=1 "
                   "(cpu_topology is sockets,cores,threads; kvmrt always writes one)\n")
    assert cfg.read_text() == f"[{uid}]\nname = {name}\ntitle = first title\n"
    assert f"{name}: skipped" in kvmrt("kvmrt-import", "-f", str(cfg), name).stdout

    # Edit through a scripted EDITOR: pin to CPU 1 and hide KVM; it syncs libvirt.
    ed = editor(tmp_path, "s/^title = .*/&\\ncpuset = 1\\nhide_kvm = yes/")
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), EDITOR=ed)
    assert f"{cfg}: saved" in out.stdout and f"{name}: updated" in out.stdout
    xml = dumpxml(name)
    assert "<vcpupin vcpu='0' cpuset='1'/>" in xml
    assert "<hidden state='on'/>" in xml
    xml_file = tmp_path / "dump.xml"
    xml_file.write_text(xml)
    sh("virt-xml-validate", str(xml_file), "domain")

    assert kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q").stdout == f"{name}: in step\n"
    # A change made with virsh: -q sees it, -r takes it into the config.
    sh("virsh", "-c", URI, "desc", name, "--config", "--title", "new title")
    q = kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q", "-r", check=1)
    assert "-title = first title" in q.stdout and "+title = new title" in q.stdout
    kvmrt("kvmrt-sync-config", "-f", str(cfg), "-r")
    assert "title = new title\n" in cfg.read_text()
    assert kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q").returncode == 0


def test_config_change_is_out_of_step_until_synced(domain, tmp_path):
    name, uid = domain(vcpus=1)
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {name}\nnr_vcpus = 2\n")
    q = kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q", check=1)
    assert f"{name}: out of step" in q.stdout and "+  <vcpu placement='static'>2</vcpu>" in \
        q.stdout.replace("\n+  <vcpu", "\n+  <vcpu")
    kvmrt("kvmrt-sync-config", "-f", str(cfg))
    assert "<vcpu placement='static'>2</vcpu>" in dumpxml(name)
    assert "<topology sockets='1'" in dumpxml(name)
    kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q")


def test_validate_config_sees_libvirt(domain, tmp_path):
    name, uid = domain()
    sh("virsh", "-c", URI, "autostart", name)
    missing = str(uuid.uuid4())
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {name}\n\n[{missing}]\nname = gone\n")
    out = kvmrt("kvmrt-validate-config", "-f", str(cfg)).stdout
    assert f"{cfg}:1: warning: {name}: libvirt's XML of domain '{name}' differs" in out
    assert f"{cfg}:1: warning: {name}: libvirt's own autostart is on" in out
    assert (f"{cfg}:4: warning: gone: libvirt has no domain with UUID {missing} (deleted, or "
            f"not defined yet); define it, or remove its section [{missing}] or set disabled "
            f"= true in it (kvmrt-edit-config -f {cfg})") in out


def test_vanished_domain_and_rename_clash(domain, tmp_path):
    name, uid = domain()
    other, _ = domain()
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {other}\n")
    out = kvmrt("kvmrt-sync-config", "-f", str(cfg), check=1)
    assert f"cannot rename domain '{name}' to '{other}': another domain" in out.stderr
    cfg.write_text(f"[{uid}]\nname = {name}-renamed\n")
    kvmrt("kvmrt-sync-config", "-f", str(cfg))
    assert sh("virsh", "-c", URI, "domname", uid).stdout.strip() == f"{name}-renamed"
    sh("virsh", "-c", URI, "undefine", f"{name}-renamed")
    out = kvmrt("kvmrt-sync-config", "-f", str(cfg), check=1)
    assert (f"libvirt has no domain with UUID {uid} (deleted, or not defined yet); define it, "
            f"or remove its section [{uid}] or set disabled = true in it "
            f"(kvmrt-edit-config -f {cfg})") in out.stderr


def test_edit_refuses_when_the_file_changed_meanwhile(domain, tmp_path):
    name, uid = domain()
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {name}\n")
    # The "editor" edits its copy and, meanwhile, someone changes the file.
    ed = tmp_path / "sneaky"
    ed.write_text(f"#!/bin/sh\necho 'title = mine' >> \"$1\"\n"
                  f"echo 'comments = theirs' >> {cfg}\n")
    ed.chmod(0o755)
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), check=1, EDITOR=str(ed))
    assert "changed on disk while you were editing; not overwritten" in out.stderr
    kept = out.stderr.rsplit("kept at ", 1)[1].strip()
    assert "title = mine" in Path(kept).read_text()
    assert cfg.read_text() == f"[{uid}]\nname = {name}\ncomments = theirs\n"
    os.unlink(kept)


def test_edit_with_errors_then_quit_or_fix(domain, tmp_path):
    name, uid = domain()
    cfg = tmp_path / "kvmrt.cfg"
    original = f"[{uid}]\nname = {name}\n"
    cfg.write_text(original)
    bad = editor(tmp_path, "s/^name = .*/&\\ncpuset = 99/")
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), check=1, EDITOR=bad, input="q\n")
    assert "CPU 99 does not exist" in out.stderr and "quit without saving" in out.stderr
    assert cfg.read_text() == original
    # Answer 'e': the editor's second run fixes the mistake of its first.
    fix = tmp_path / "fix"
    fix.write_text(f"#!/bin/sh\nif [ -e {tmp_path}/ran ]; then sed -i 's/cpuset = 99/cpuset = 1/' \"$1\"; "
                   f"else touch {tmp_path}/ran; echo 'cpuset = 99' >> \"$1\"; fi\n")
    fix.chmod(0o755)
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), EDITOR=str(fix), input="e\n")
    assert cfg.read_text() == original + "cpuset = 1\n"
    assert "<vcpupin vcpu='0' cpuset='1'/>" in dumpxml(name)
    # Unchanged edit: nothing happens.
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), EDITOR="true")
    assert out.stdout == "no changes\n"



def test_edit_syncs_only_what_it_changed(domain, tmp_path):
    """A virsh edit on a VM the edit leaves alone survives the edit; a VM
    whose domain was undefined gets told how to remove or disable it."""
    a, a_uid = domain()
    b, b_uid = domain()
    c, c_uid = domain()
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{a_uid}]\nname = {a}\n\n[{b_uid}]\nname = {b}\n\n[{c_uid}]\nname = {c}\n")
    kvmrt("kvmrt-sync-config", "-f", str(cfg))
    sh("virsh", "-c", URI, "desc", b, "--config", "--title", "set with virsh")
    sh("virsh", "-c", URI, "undefine", c)
    ed = editor(tmp_path, f"s/^name = {a}$/&\\nhide_kvm = yes/")
    out = kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), EDITOR=ed)
    assert f"{a}: updated" in out.stdout and "<hidden state='on'/>" in dumpxml(a)
    assert "<title>set with virsh</title>" in dumpxml(b)
    assert (f"{b}: not changed by this edit, out of step with libvirt and left as it is: "
            f"'kvmrt-sync-config -r {b}' takes libvirt's side") in out.stdout
    assert (f"warning: {c}: libvirt has no domain with UUID {c_uid} (deleted, or not "
            f"defined yet); define it, or remove its section [{c_uid}] or set disabled = "
            "true in it") in out.stderr
    assert list(tmp_path.glob("kvmrt-edit-*")) == []

def test_unreachable_libvirt_is_one_clear_line(tmp_path):
    cfg = tmp_path / "k.cfg"
    proc = kvmrt("kvmrt-import", "-f", str(cfg), "-c",
                 "qemu+unix:///system?socket=/nonexistent/sock", check=1)
    assert len(proc.stderr.splitlines()) == 1 and "cannot connect to libvirt" in proc.stderr
    assert not cfg.exists()


RICH = """<domain type='{kind}'><name>{name}</name><uuid>{uid}</uuid>
  <title>with secrets</title><memory unit='MiB'>64</memory>
  <memoryBacking><locked/></memoryBacking>
  <vcpu placement='static'>2</vcpu>
  <cputune><shares>512</shares><vcpupin vcpu='0' cpuset='0'/>
    <vcpupin vcpu='1' cpuset='1'/><emulatorpin cpuset='0-1'/></cputune>
  <numatune><memory mode='strict' nodeset='0'/></numatune>
  <os><type arch='x86_64'>hvm</type></os>
  <features><acpi/><kvm><hidden state='on'/></kvm></features>
  <cpu><topology sockets='1' cores='2' threads='1'/></cpu>
  <devices>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <auth username='admin'><secret type='ceph' usage='kvmrt-test-ceph'/></auth>
      <source protocol='rbd' name='pool/image'><host name='mon1.example.org' port='6789'/></source>
      <target dev='vda' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver name='qemu' type='raw'/>
      <source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-pool/1'>
        <host name='example.com' port='3260'/>
        <auth username='myuser'><secret type='iscsi' usage='kvmrt-test-iscsi'/></auth>
      </source><target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='cdrom'><driver name='qemu' type='raw'/>
      <source protocol='https' name='/isos/installer.iso'>
        <host name='downloads.example.org' port='443'/>
        <cookies><cookie name='session'>c2Vzc2lvbi1zZWNyZXQ</cookie></cookies>
      </source><target dev='sdb' bus='sata'/><readonly/></disk>
    <hostdev mode='subsystem' type='scsi'>
      <source protocol='iscsi' name='iqn.2014-08.com.example:iscsi-nopool/1'>
        <host name='example.com' port='3260'/>
        <auth username='myuser'><secret type='iscsi' uuid='{secret}'/></auth>
      </source><address type='drive' controller='0' bus='0' target='0' unit='0'/></hostdev>
    <graphics type='vnc' autoport='yes' passwd='vncpass1' passwdValidTo='2030-01-01T00:00:00'/>
    <graphics type='spice' autoport='yes' passwd='spice-secret' connected='keep'/>
  </devices></domain>"""


def secure_dump(name: str) -> str:
    return sh("virsh", "-c", URI, "dumpxml", "--inactive", "--security-info", name).stdout


def changed_lines(before: str, after: str) -> list[str]:
    import difflib
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(),
                                                   lineterm="", n=0)
            if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_secrets_and_tuning_survive_import_sync_boot_and_edit(domain, tmp_path):
    if not os.path.exists("/sys/devices/system/cpu/cpu1"):
        pytest.skip("needs CPUs 0 and 1")
    name, uid = domain(vcpus=2)
    xml = tmp_path / "rich.xml"
    xml.write_text(RICH.format(kind="kvm" if os.path.exists("/dev/kvm") else "qemu",
                               name=name, uid=uid, secret=uuid.uuid4()))
    sh("virsh", "-c", URI, "define", str(xml))
    before = secure_dump(name)
    assert "passwd='vncpass1'" in before and "passwd='spice-secret'" in before
    assert "<cookie name='session'>c2Vzc2lvbi1zZWNyZXQ</cookie>" in before
    cfg = tmp_path / "kvmrt.cfg"
    assert kvmrt("kvmrt-import", "-f", str(cfg), name).stdout == f"{name}: added\n"
    assert cfg.read_text() == (f"[{uid}]\nname = {name}\ntitle = with secrets\nnr_vcpus = 2\n"
                               "cpuset = 0-1\nrt_memory = True\nhide_kvm = True\n")
    assert kvmrt("kvmrt-sync-config", "-f", str(cfg), "-q").stdout == f"{name}: in step\n"
    dry = kvmrt("kvmrt-boot", "--dry-run", "-f", str(cfg), name)
    assert "note" not in dry.stdout and secure_dump(name) == before

    # A config change, synced: only the title differs, every secret stays.
    cfg.write_text(cfg.read_text().replace("title = with secrets", "title = renamed"))
    out = kvmrt("kvmrt-sync-config", "-f", str(cfg))
    assert "vncpass1" not in out.stdout and "spice-secret" not in out.stdout
    assert "c2Vzc2lvbi1zZWNyZXQ" not in out.stdout
    assert changed_lines(before, secure_dump(name)) == [
        "-  <title>with secrets</title>", "+  <title>renamed</title>"]
    # import -u after virsh changed the title, then an edit-config save.
    sh("virsh", "-c", URI, "desc", name, "--config", "--title", "from virsh")
    assert kvmrt("kvmrt-import", "-u", "-f", str(cfg), name).stdout == f"{name}: updated\n"
    ed = editor(tmp_path, "s/^title = .*/title = edited/")
    kvmrt("kvmrt-edit-config", "-f", str(cfg), TMPDIR=str(tmp_path), EDITOR=ed)
    assert changed_lines(before, secure_dump(name)) == [
        "-  <title>with secrets</title>", "+  <title>edited</title>"]

    # A config without the tuning: the sync names each element it removes.
    cfg.write_text(f"[{uid}]\nname = {name}\ntitle = edited\nnr_vcpus = 2\n")
    dry = kvmrt("kvmrt-boot", "--dry-run", "-f", str(cfg), name)
    assert f"note: {name}: would remove <memoryBacking><locked/> (<locked/>)" in dry.stdout
    out = kvmrt("kvmrt-sync-config", "-f", str(cfg))
    removed = [line for line in out.stderr.splitlines() if " removed " in line]
    assert removed == [f"warning: {name}: removed {e}: the config does not have it" for e in (
        "<cputune><vcpupin vcpu='0'> (CPUs 0)", "<cputune><vcpupin vcpu='1'> (CPUs 1)",
        "<cputune><emulatorpin> (CPUs 0-1)", "<numatune><memory> (mode=strict nodeset=0)",
        "<memoryBacking><locked/> (<locked/>)", "<features><kvm><hidden> (state=on)")]
    assert "passwd='vncpass1'" in secure_dump(name)
    assert "c2Vzc2lvbi1zZWNyZXQ" in secure_dump(name)


def test_import_and_reverse_sync_skip_only_the_bad_domain(domain, tmp_path):
    good, good_uid = domain(vcpus=1, title="good")
    bad, bad_uid = domain(vcpus=1)
    xml = tmp_path / "bad.xml"
    xml.write_text(dumpxml(bad).replace("<devices>", "<devices><hostdev mode='subsystem' "
                   "type='pci' managed='yes'><source><address domain='0x0000' bus='0xfe' "
                   "slot='0x1f' function='0x7'/></source></hostdev>", 1))
    sh("virsh", "-c", URI, "define", str(xml))
    cfg = tmp_path / "kvmrt.cfg"
    out = kvmrt("kvmrt-import", "-f", str(cfg), bad, good, check=1)
    assert out.stdout.startswith(f"{good}: added\nnote: {good}: <cpu><topology>")
    assert out.stderr == (
        f"{bad}: not imported: pcidevs = 0000:fe:1f.7: PCI device 0000:fe:1f.7 does not "
        f"exist on this host; fix the domain (virsh edit {bad}) or the config "
        "(kvmrt-edit-config), then run the command again\n")
    assert cfg.read_text() == f"[{good_uid}]\nname = {good}\ntitle = good\n"
    # sync -r: the same, per VM.
    cfg.write_text(cfg.read_text() + f"\n[{bad_uid}]\nname = {bad}\n")
    sh("virsh", "-c", URI, "desc", good, "--config", "--title", "better")
    out = kvmrt("kvmrt-sync-config", "-r", "-f", str(cfg), check=1)
    assert f"{good}: updated" in out.stdout
    assert f"{bad}: failed: pcidevs = 0000:fe:1f.7: PCI device" in out.stderr
    assert cfg.read_text() == (f"[{good_uid}]\nname = {good}\ntitle = better\n\n"
                               f"[{bad_uid}]\nname = {bad}\n")


@pytest.fixture
def real_vm(domain, tmp_path):
    """A running disk-less QEMU/KVM domain booted by kvmrt-boot with
    cpuset = 1; powered off and undefined afterwards."""
    if not os.path.exists("/dev/kvm"):
        pytest.skip("no /dev/kvm: cannot boot a real VM")
    if len(os.sched_getaffinity(0) | {0, 1}) < 2 or not os.path.exists(
            "/sys/devices/system/cpu/cpu1"):
        pytest.skip("needs a CPU 1")
    name, uid = domain(vcpus=1)
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(f"[{uid}]\nname = {name}\ncpuset = 1\nautostart = yes\n")
    yield name, uid, cfg
    sh("virsh", "-c", URI, "destroy", name, check=False)


def test_boot_pins_a_real_vm_and_stat_shows_its_threads(real_vm):
    name, uid, cfg = real_vm
    out = kvmrt("kvmrt-boot", "-f", str(cfg))
    assert f"{name}: started" in out.stdout
    stat = json.loads(kvmrt("kvmrt-stat", "-f", str(cfg), "-t", "--json").stdout)[0]
    assert stat["state"] == "running" and stat["tuning"] is None
    vcpu = next(t for t in stat["threads"] if t["role"] == "vCPU 0")
    assert vcpu["name"] == "CPU 0/KVM" and vcpu["affinity"] == [1]
    assert any(t["role"] == "emulator" for t in stat["threads"])
    text = kvmrt("kvmrt-stat", "-f", str(cfg), "-t").stdout
    assert "CPU 0/KVM" in text
    out = kvmrt("kvmrt-shutdown", "-f", str(cfg), "--force", "--timeout", "2", "-v")
    assert f"{name}: did not stop within 2 s; powered off" in out.stdout
    assert sh("virsh", "-c", URI, "domstate", name).stdout.strip() == "shut off"


def test_shielding_the_real_host_never_moves_a_running_vm(real_vm, tmp_path, monkeypatch):
    """Shield CPU 1 of this very host (as an rt VM there would) while a real
    VM runs pinned to it: the VM's threads stay, a thread of ours moves to
    CPU 0, and the release puts every IRQ and thread back exactly."""
    from kvmrt.host import HostFS
    from kvmrt.host.tasks import read_task, read_tasks
    from kvmrt.tuning import engine
    from kvmrt.tuning.model import TunedVm

    name, uid, cfg = real_vm
    kvmrt("kvmrt-boot", "-f", str(cfg))
    monkeypatch.setenv("KVMRT_STATE_DIR", str(tmp_path / "state"))
    fs = HostFS("/")
    sleeper = subprocess.Popen(["sleep", "60"])
    irqs_before = {p.name: p.read_text() for p in Path("/proc/irq").glob("*/smp_affinity_list")}
    from kvmrt.host.qemu import read_qemu_status
    qemu_pid = read_qemu_status(fs, name).pid
    vm_before = {t.tid: t.affinity for t in read_tasks(fs, [qemu_pid])}
    shield = TunedVm(uid, name, shielded=frozenset({1}), offline=frozenset())
    try:
        result = engine.tune(fs, shield)
        assert not result.failed, result.failed
        assert read_task(fs, sleeper.pid, sleeper.pid).affinity == {0}
        vm_now = {t.tid: t.affinity for t in read_tasks(fs, [qemu_pid])}
        assert vm_now == vm_before and {1} in vm_now.values()
    finally:
        engine.release(fs, [uid])
        sleeper.kill()
        sleeper.wait()
    irqs_after = {p.name: p.read_text() for p in Path("/proc/irq").glob("*/smp_affinity_list")}
    assert irqs_after == irqs_before


def test_an_unchanged_domain_is_written_back_as_libvirtd_wrote_it(libvirtd, tmp_path):
    """The real libvirtd's XML (a script defined it with double quotes),
    parsed and written back unchanged, is the same text, so that a sync
    finds it in step and a diff shows only kvmrt's lines; lxml alone would
    change every attribute's quotes, the root's namespace order and the
    quotes in a title. (libvirt writes <metadata> as libxml2 does.)"""
    import libvirt
    from lxml import etree

    from kvmrt.libvirt_sync.domains import XML_SECURE_INACTIVE
    from kvmrt.libvirt_sync.domxml_tree import parse_domain

    name, uid = f"kvmrt-test-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    xml = tmp_path / f"{name}.xml"
    xml.write_text(
        '<domain type="qemu" xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">'
        f'<name>{name}</name><uuid>{uid}</uuid><title>it\'s "quoted" &amp; &lt;b&gt;</title>'
        '<metadata><a:b xmlns:a="urn:a" c="it\'s">t\'x"t</a:b></metadata>'
        '<memory unit="MiB">64</memory><vcpu>1</vcpu>'
        '<os><type arch="x86_64">hvm</type></os><devices>'
        '<graphics type="vnc" passwd="a\'b&quot;c&lt;"/></devices>'
        '<qemu:commandline><qemu:arg value="-S"/></qemu:commandline></domain>')
    sh("virsh", "-c", libvirtd, "define", str(xml))
    try:
        conn = libvirt.open(libvirtd)
        desc = conn.lookupByName(name).XMLDesc(XML_SECURE_INACTIVE)
        conn.close()
    finally:
        sh("virsh", "-c", libvirtd, "undefine", name, check=False)
    assert "passwd='a&apos;b&quot;c&lt;'" in desc and "xmlns:qemu" in desc
    assert '<a:b xmlns:a="urn:a" c="it\'s">' in desc
    assert parse_domain(desc).serialize() == desc
    assert etree.tostring(etree.fromstring(desc.encode()), encoding="unicode") != desc


def test_an_ordinary_user_is_told_why_libvirtd_refuses_them(libvirtd):
    """Without a D-Bus system bus (a container, a rescue shell) libvirtd
    cannot ask polkit about a user who is not root, and says only "Unable to
    get system bus connection: ... No such file or directory". The hint must
    not send the user to start a libvirtd that runs."""
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run as another user")
    top = Path(tempfile.mkdtemp(prefix="kvmrt-user-"))   # tmp_path: only root may enter
    try:
        top.chmod(0o755)
        cfg = top / "kvmrt.cfg"
        cfg.write_text("")
        cfg.chmod(0o644)
        proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               str(BIN / "kvmrt-stat"), "-f", str(cfg), "-c", URI],
                              capture_output=True, text=True, timeout=60, cwd="/")
    finally:
        shutil.rmtree(top)
    if "system bus" not in proc.stderr:
        pytest.skip(f"libvirtd lets user nobody in here or fails otherwise: {proc.stderr!r}")
    assert proc.returncode == 1
    assert "is libvirtd running?" not in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "(libvirtd cannot ask polkit (no D-Bus system bus) whether this user may connect: "
        "run as root, or start D-Bus and polkit)")
