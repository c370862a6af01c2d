"""kvmrt-edit-config as a user runs it: the installed command with a
scripted EDITOR, on the Threadripper fixture host (KVMRT_FSROOT) and
libvirt's test driver (a node file written per test, so each run starts
from the same libvirt).

Each run is a new process and the test driver forgets what it was told, so
these tests read what the tool says; tests/test_libvirt_e2e.py checks the
same behaviour against a persistent libvirtd.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kvmrt.config.file import parse_config
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domxml import apply_config
from kvmrt.placement import place

BIN = Path(sys.executable).parent
A = "0b7a3a7e-0000-4000-8000-00000000000a"
B = "0b7a3a7e-0000-4000-8000-00000000000b"
TWO = (f"[{A}]\nname = vm-a\nnr_vcpus = 1\nautostart = no\n\n"
       f"[{B}]\nname = vm-b\nnr_vcpus = 1\nautostart = no\n")


def node_file(tmp_path: Path, host: Path, config: str, *, shut_off: tuple[str, ...] = (),
              titles: dict[str, str] | None = None) -> str:
    """A test-driver node with a domain per VM of ``config``, in step with it,
    except for the ``titles`` set meanwhile (as ``virsh edit`` would)."""
    topo = read_host(HostFS(host)).topology
    domains = []
    for vm in parse_config(config).vms:
        title = (titles or {}).get(vm.name)
        xml = apply_config(
            f"<domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>"
            f"<name>{vm.name}</name><uuid>{vm.uuid}</uuid><memory>65536</memory>"
            "<vcpu>1</vcpu><os><type>hvm</type></os><devices/>"
            + ("<test:runstate>5</test:runstate>" if vm.name in shut_off else "")
            + "</domain>", place(vm, topo))
        if title:
            xml = xml.replace("</name>", f"</name>\n  <title>{title}</title>", 1)
        domains.append(xml)
    node = tmp_path / "node.xml"
    node.write_text("<node>" + "".join(domains) + "</node>")
    return f"test://{node}"


def editor(tmp_path: Path, *sed: str) -> str:
    """A non-interactive EDITOR: a script that applies sed expressions."""
    script = tmp_path / f"editor-{len(list(tmp_path.glob('editor-*')))}"
    script.write_text("#!/bin/sh\nsed -i " + " ".join(f"-e {shlex.quote(e)}" for e in sed)
                      + ' "$1"\n')
    script.chmod(0o755)
    return str(script)


def edit(host: Path, cfg: Path, uri: str, ed: str, *, check: int = 0, input: str | None = None,
         tmpdir: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "KVMRT_FSROOT": str(host), "LIBVIRT_DEFAULT_URI": uri,
           "EDITOR": ed, "TMPDIR": str(tmpdir or cfg.parent)}
    env.pop("VISUAL", None)
    proc = subprocess.run([str(BIN / "kvmrt-edit-config"), "-f", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=60, input=input)
    assert proc.returncode == check, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def copies(directory: Path) -> list[Path]:
    return sorted(directory.glob("kvmrt-edit-*"))


@pytest.fixture
def root(threadripper, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("kvmrt-edit-config needs root")
    return threadripper


# -- issue 9.5: editing one VM does not revert another ---------------------

def test_only_the_vms_the_edit_changed_are_synced(root, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    # vm-b got a title with virsh edit; the config does not know it.
    uri = node_file(tmp_path, root, TWO, titles={"vm-b": "set with virsh"})
    # The edit changes vm-a, moves vm-b's section first and respells its
    # autostart: vm-b's values are the same, so it is not synced.
    ed = tmp_path / "swap"
    ed.write_text(f"#!/bin/sh\nprintf '[{B}]\\nname = vm-b\\nnr_vcpus = 1\\nautostart = false\\n\\n"
                  f"[{A}]\\nname = vm-a\\nnr_vcpus = 2\\nautostart = no\\n' > \"$1\"\n")
    ed.chmod(0o755)
    out = edit(root, cfg, uri, str(ed))
    assert cfg.read_text().startswith(f"[{B}]")
    assert "vm-a: updated" in out.stdout
    assert "vm-b: updated" not in out.stdout
    assert ("vm-b: not changed by this edit, out of step with libvirt and left as it is: "
            "'kvmrt-sync-config -r vm-b' takes libvirt's side, 'kvmrt-sync-config vm-b' "
            "the config's") in out.stdout
    assert copies(tmp_path) == []


def test_renaming_a_running_vm_is_refused_before_saving(root, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    uri = node_file(tmp_path, root, TWO, shut_off=("vm-b",))      # vm-a runs
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = vm-a$/name = vm-new/"),
               check=1, input="q\n")
    assert cfg.read_text() == TWO
    copy = copies(tmp_path)[0]
    assert (f"{copy}:2: error: vm-new: name: cannot rename domain 'vm-a' to 'vm-new': the "
            "domain is running; shut it down first") in out.stderr
    assert "Errors found. Edit again (e) or quit without saving (q)?" in out.stderr
    assert f"your edited copy is kept at {copy}" in out.stderr
    # A shut-off domain may be renamed.
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = vm-b$/name = vm-c/"))
    assert "vm-c: updated" in out.stdout and "name = vm-c\n" in cfg.read_text()


def test_a_vm_whose_domain_was_deleted_says_how_to_remove_or_disable_it(root, tmp_path):
    gone = str(uuid.uuid4())
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO + f"\n[{gone}]\nname = gone\n")
    uri = node_file(tmp_path, root, TWO)
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = vm-a$/&\\ntitle = A/"))
    assert "vm-a: updated" in out.stdout
    assert (f"warning: gone: libvirt has no domain with UUID {gone} (deleted, or not "
            f"defined yet); define it, or remove its section [{gone}] or set disabled = true "
            f"in it (kvmrt-edit-config -f {cfg})") in out.stderr
    # The same VM, changed by the edit, fails its sync with the same advice.
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = gone$/&\\ntitle = G/"), check=1)
    assert f"gone: failed: libvirt has no domain with UUID {gone}" in out.stderr
    assert "set disabled = true in it" in out.stderr and f"{cfg}: saved" in out.stdout
    # Removing the section is the way out; no domain is touched.
    out = edit(root, cfg, uri, editor(tmp_path, f"/^\\[{gone}\\]$/,$d"))
    assert "gone: removed from the config\n" in out.stdout and "gone" not in out.stderr


# -- issue 9.6: a disabled VM never blocks a save ---------------------------

STALE = f"\n[{uuid.UUID(int=7)}]\nname = stale\nrt = true\ncpuset = 200-203\ndisabled = true\n"


def test_a_stale_disabled_vm_does_not_block_a_save(root, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO + STALE)
    uri = node_file(tmp_path, root, TWO)
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = vm-a$/&\\ntitle = A/"), input="q\n")
    assert f"{cfg}: saved" in out.stdout and "vm-a: updated" in out.stdout
    assert "stale:" not in out.stdout + out.stderr       # hidden: the edit left it alone
    # Editing the disabled VM itself shows its problems as notes, and saves.
    out = edit(root, cfg, uri, editor(tmp_path, "s/^name = stale$/&\\ntitle = S/"), input="q\n")
    assert f"{cfg}: saved" in out.stdout and "stale: updated" not in out.stdout
    assert ": note: stale: cpuset: CPU 200 does not exist" in out.stderr
    assert "a disabled VM does not block the save" in out.stderr
    # Enabling it makes the same problem an error again.
    out = edit(root, cfg, uri, editor(tmp_path, "s/^disabled = true$/disabled = false/"),
               check=1, input="q\n")
    assert ": error: stale: cpuset: CPU 200 does not exist" in out.stderr
    assert "disabled = true" in cfg.read_text()


# -- issue 11: bad $EDITOR, full $TMPDIR, full disk -------------------------

def test_an_unparsable_editor_is_one_clear_line(root, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    out = edit(root, cfg, node_file(tmp_path, root, TWO), 'vi "', check=1)
    assert out.stderr == ("kvmrt-edit-config: cannot read the editor command $EDITOR='vi \"': "
                          "No closing quotation (quote as in a shell); nothing changed\n")
    assert copies(tmp_path) == [] and cfg.read_text() == TWO


def test_an_editor_that_cannot_run_leaves_no_copy(root, tmp_path):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    out = edit(root, cfg, node_file(tmp_path, root, TWO), "/nonexistent/editor", check=1)
    assert "cannot run editor '/nonexistent/editor'" in out.stderr
    assert "the copy is removed" in out.stderr and copies(tmp_path) == []


@pytest.mark.parametrize("script, fault", [("printf '# caf\\351\\n' >> \"$1\"",
                                             "not a text file (invalid UTF-8 at offset"),
                                            ('rm "$1"', "no such file")],
                         ids=["invalid-UTF-8", "removed"])
def test_an_edited_copy_that_does_not_read_says_nothing_was_saved(root, tmp_path, script,
                                                                  fault):
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    ed = tmp_path / "editor"
    ed.write_text(f"#!/bin/sh\n{script}\n")
    ed.chmod(0o755)
    out = edit(root, cfg, node_file(tmp_path, root, TWO), str(ed), check=1)
    copy = out.stderr.split(": ")[1]
    assert out.stderr.startswith(f"kvmrt-edit-config: {tmp_path}/kvmrt-edit-")
    assert out.stderr.startswith(f"kvmrt-edit-config: {copy}: {fault}")
    assert f"; nothing saved, {cfg} is unchanged; " in out.stderr
    kept = fault != "no such file"
    assert out.stderr.endswith(f"your copy is kept at {copy}\n" if kept
                               else f"the copy {copy} is gone\n")
    assert copies(tmp_path) == ([Path(copy)] if kept else [])
    assert out.stderr.count("\n") == 1 and cfg.read_text() == TWO


@pytest.fixture
def tiny_fs(tmp_path):
    """A 16 KiB tmpfs, mounted for the test and unmounted after it."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=16k,mode=0755", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_full_tmpdir_is_one_line_and_leaves_no_copy(root, tmp_path, tiny_fs):
    cfg = tmp_path / "kvmrt.cfg"
    big = TWO + "".join(f"# comment line {i:05d} that fills the copy\n" for i in range(1000))
    cfg.write_text(big)
    out = edit(root, cfg, node_file(tmp_path, root, TWO), editor(tmp_path, "s/x/y/"),
               check=1, tmpdir=tiny_fs)
    assert out.stderr == (f"kvmrt-edit-config: cannot write the copy to edit in {tiny_fs}: "
                          "No space left on device; nothing changed (set TMPDIR to a "
                          "directory with room)\n")
    assert copies(tiny_fs) == [] and cfg.read_text() == big


def test_a_save_on_a_full_disk_says_where_the_edit_is(root, tmp_path, tiny_fs):
    cfg = tiny_fs / "kvmrt.cfg"
    cfg.write_text(TWO)
    filler = "x" * 3000
    ed = editor(tmp_path, *[f"$a# {filler}"] * 5)       # 15 KB more: no room for the new file
    uri = node_file(tmp_path, root, TWO)
    out = edit(root, cfg, uri, ed, check=1, tmpdir=tmp_path)
    copy = copies(tmp_path)[0]
    assert out.stderr.startswith(f"kvmrt-edit-config: not saved: {cfg}: cannot write")
    assert "no space left on device" in out.stderr.lower(), out.stderr
    assert out.stderr.endswith(f"; {cfg} is unchanged and your edited copy is kept at {copy}\n")
    assert cfg.read_text() == TWO and copy.read_text().count(filler) == 5
    assert [p.name for p in tiny_fs.iterdir() if p.name != ".kvmrt.cfg.lock"] == ["kvmrt.cfg"]


def test_ctrl_c_in_the_editor_belongs_to_the_editor(root, tmp_path):
    """vi cancels a command with Ctrl-C: the terminal sends SIGINT to the
    whole foreground group, kvmrt-edit-config included. It must not kill the
    editor (and the edit) but wait for it, as git does."""
    cfg = tmp_path / "kvmrt.cfg"
    cfg.write_text(TWO)
    uri = node_file(tmp_path, root, TWO)
    ed = tmp_path / "ctrl-c"
    ed.write_text("#!/bin/sh\ntrap '' INT QUIT\nkill -INT 0\nkill -QUIT 0\nsleep 0.5\n"
                  "sed -i 's/^nr_vcpus = 1$/nr_vcpus = 2/' \"$1\"\n")
    ed.chmod(0o755)
    env = {**os.environ, "KVMRT_FSROOT": str(root), "LIBVIRT_DEFAULT_URI": uri,
           "EDITOR": str(ed), "TMPDIR": str(tmp_path)}
    env.pop("VISUAL", None)
    # its own session, as a terminal's foreground job: kill 0 reaches only it
    proc = subprocess.run([str(BIN / "kvmrt-edit-config"), "-f", str(cfg)], env=env,
                          capture_output=True, text=True, timeout=60, start_new_session=True)
    assert proc.returncode == 0, proc.stderr
    assert "nr_vcpus = 2" in cfg.read_text()
    assert "vm-a: updated" in proc.stdout
