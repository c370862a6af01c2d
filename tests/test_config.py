"""The config model: attributes, defaults, strict loading, saving."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmrt.config.file import UnknownVm, load_config, parse_config, save_config
from kvmrt.config.model import AUTO, ATTRIBUTES
from kvmrt.sets import CpuSpec, IdSet, PciSet

EXAMPLES = Path(__file__).parent.parent / "examples"
UUID1 = "fde74e84-0e1b-404e-90e7-72101e79c48a"
UUID2 = "aeec46cc-0638-4949-ac04-146b233194a9"


@pytest.mark.parametrize("header, ok", [
    (UUID1, True), (UUID1.upper(), True),
    ("{" + UUID1 + "}", False), ("urn:uuid:" + UUID1, False), (UUID1.replace("-", ""), False),
    (UUID1[:-1] + "\u0663", False), (UUID1[:-1] + "g", False), (UUID1.replace("-", "_", 1), False),
    (UUID1[:8] + UUID1[9:13] + "-" + UUID1[8] + UUID1[13:], False)])
def test_section_header_is_a_uuid_as_libvirt_spells_it(header, ok):
    """Hex digits in 8-4-4-4-12 groups, either letter case; no other
    spelling Python's uuid module would accept."""
    problems = parse_config(f"[{header}]\nname = a\n").problems
    assert [p.code for p in problems] == ([] if ok else ["bad-uuid"])


def test_spec_example_loads_with_every_attribute():
    config = load_config(str(EXAMPLES / "threadripper-5975wx.cfg"))
    assert config.problems == []
    rt, old = config.vms
    assert (rt.uuid, rt.name, rt.title) == (UUID1, "RedHawk-8.4-RT", "Real-Time RedHawk 8.4")
    assert rt.nr_vcpus is AUTO and rt.cpu_topology is AUTO and rt.numatune is AUTO
    assert rt.cpuset == CpuSpec.parse("n1-2")
    assert rt.rt is True and rt.rt_memory is AUTO and rt.autostart is True
    assert str(rt.pcidevs) == "0000:21:00.0 0000:22:00.0 0000:22:00.1"
    assert old.comments == ("This VM is not used anymore; kept for reference\n"
                            "a second comment line is indented")
    assert old.disabled is True and old.nr_vcpus == 2


def test_defaults_for_absent_attributes():
    vm = parse_config(f"[{UUID1}]\nname = a\n").vms[0]
    assert {k: getattr(vm, k) for k in ATTRIBUTES} == {
        "name": "a", "title": "", "description": "", "nr_vcpus": 1,
        "cpu_topology": AUTO, "cpuset": CpuSpec(), "rt": False, "rt_memory": AUTO,
        "numatune": AUTO, "hide_kvm": False, "guest_services": False, "autostart": False,
        "disabled": False,
        "pcidevs": PciSet(), "comments": ""}


@pytest.mark.parametrize("spelling, value", [
    ("true", True), ("True", True), ("ON", True), ("yes", True), ("1", True),
    ("false", False), ("Off", False), ("NO", False), ("0", False),
])
def test_bool_spellings(spelling, value):
    vm = parse_config(f"[{UUID1}]\nname = a\nrt = {spelling}\nrt_memory = {spelling}\n").vms[0]
    assert vm.rt is value and vm.rt_memory is value


def test_typed_values():
    vm = parse_config(f"[{UUID1}]\nname = a\nnr_vcpus = 4\ncpu_topology = 1,2,2\n"
                      "numatune = 0,2-3\nrt_memory = AUTO\n").vms[0]
    assert vm.nr_vcpus == 4 and vm.cpu_topology == (1, 2, 2)
    assert vm.numatune == IdSet({0, 2, 3}) and vm.rt_memory is AUTO


def test_every_problem_is_collected_with_its_line():
    text = "\n".join([
        "[not-a-uuid]",                 # 1
        "name = a",                     # 2
        "cpus = 1",                     # 3  unknown (did you mean cpuset?)
        "rt = maybe",                   # 4
        f"[{UUID1}]",                   # 5  no name
        "cpuset = n1-c3",               # 6
        "nr_vcpus = two",               # 7
        f"[{UUID2}]",                   # 8
        "name = a",                     # 9  duplicate name
        "pcidevs = 0000:21:00.0 21:00.1",  # 10
        "cpu_topology = 1,2",           # 11
        "numatune = x",                 # 12
    ]) + "\n"
    problems = parse_config(text, "k.cfg").problems
    got = [(p.line, p.code, p.attribute) for p in problems]
    assert got == [
        (1, "bad-uuid", None), (3, "unknown-attribute", "cpus"), (4, "bad-value", "rt"),
        (5, "missing-name", "name"), (6, "bad-value", "cpuset"), (7, "bad-value", "nr_vcpus"),
        (9, "duplicate-name", "name"), (10, "bad-value", "pcidevs"),
        (11, "bad-value", "cpu_topology"), (12, "bad-value", "numatune")]
    assert all(p.is_error and p.file == "k.cfg" for p in problems)
    by_line = {p.line: p.format() for p in problems}
    assert by_line[3] == ("k.cfg:3: error: a: cpus: unknown attribute 'cpus' "
                          "(did you mean 'cpuset'?)")
    assert by_line[6].startswith(f"k.cfg:6: error: [{UUID1}]: cpuset: bad value 'n1-c3'")
    assert "'21:00.1'" in by_line[10]
    assert "already used by [not-a-uuid] (line 2)" in by_line[9]


def test_names_and_titles_are_one_line():
    problems = parse_config(f"[{UUID1}]\nname = x\n    cpuset = 1\ntitle = a\n  b\n").problems
    assert [(p.line, p.code, p.attribute) for p in problems] == [
        (2, "bad-value", "name"), (4, "bad-value", "title")]
    assert all("must be on one line" in p.message for p in problems)


def test_syntax_problems_become_diagnostics():
    text = f"[{UUID1}]\nname = a\nname = b\n[{UUID1}]\nname = c\ngarbage line\n"
    problems = parse_config(text, "k.cfg").problems
    assert [(p.line, p.code) for p in problems if p.code == "syntax"] == [
        (3, "syntax"), (4, "syntax"), (6, "syntax")]


def test_select_by_name_or_uuid_and_disabled():
    config = load_config(str(EXAMPLES / "threadripper-5975wx.cfg"))
    assert [vm.name for vm in config.select(())] == ["RedHawk-8.4-RT"]
    assert [vm.name for vm in config.select((), include_disabled=True)] == [
        "RedHawk-8.4-RT", "RedHawk-8.4"]
    assert [vm.name for vm in config.select((UUID2.upper(), "RedHawk-8.4-RT"))] == [
        "RedHawk-8.4-RT", "RedHawk-8.4"]
    with pytest.raises(UnknownVm, match="no VM named 'nope'"):
        config.select(("nope",))


def test_save_keeps_order_spelling_and_multiline_comments(tmp_path):
    src = (EXAMPLES / "threadripper-5975wx.cfg").read_text()
    path = tmp_path / "kvmrt.cfg"
    path.write_text(src)
    os.chmod(path, 0o640)
    os.chown(path, 1234, 5678)
    config = load_config(str(path))
    save_config(config)
    assert path.read_text() == src
    st_ = path.stat()
    assert (st_.st_mode & 0o777, st_.st_uid, st_.st_gid) == (0o640, 1234, 5678)


def test_save_writes_changed_values_canonically(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text(f"[{UUID1}]\nname = a\ncpuset = n1,n2\n")
    config = load_config(str(path))
    vm = config.vms[0]
    config.vms[0] = vm.with_values(cpuset=CpuSpec.parse("n1,n2,n3"), rt=True)
    save_config(config)
    assert path.read_text() == f"[{UUID1}]\nname = a\ncpuset = n1-3\nrt = True\n"


names = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="[]"),
                min_size=1, max_size=12)
lines = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=20).map(
    str.strip)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.uuids().map(str), names, st.lists(lines, min_size=1, max_size=3),
                          st.sampled_from(["", "n0", "~c1,3-4", "p0"]), st.booleans(),
                          st.sampled_from(["auto", "", "0-1"])),
                max_size=4, unique_by=lambda t: t[0]))
def test_load_save_load_gives_the_same_model(tmp_path_factory, vms):
    path = tmp_path_factory.mktemp("cfg") / "kvmrt.cfg"
    text = "".join(
        f"[{u}]\nname = {n}\ncomments = " + "\n    ".join(c) + f"\ncpuset = {cs}\n"
        f"rt = {rt}\nnumatune = {nt}\n\n" for u, n, c, cs, rt, nt in vms)
    path.write_text(text)
    first = load_config(str(path))
    save_config(first)
    second = load_config(str(path))
    assert [(v.uuid, v.values) for v in first.vms] == [(v.uuid, v.values) for v in second.vms]


# --- hostile values are rejected at load, with file:line (issue 11) -----------


def _load_one(line: str):
    config = parse_config(f"[{UUID1}]\nname = vm\n{line}\n", "k.cfg")
    return [d.format() for d in config.problems]


@pytest.mark.parametrize("line, message", [
    ("title = a\x01b", "k.cfg:3: error: vm: title: bad value 'a\\x01b': character U+0001 at "
                       "position 2 cannot be stored in libvirt's XML"),
    ("title = x\ufffe", "character U+FFFE at position 2"),
    ("description = ok\n    bad\uffff", "character U+FFFF at position 7"),
    ("description = \"\\u001b[31m\"", "character U+001B at position 1"),
    ("nr_vcpus = 100000000", "k.cfg:3: error: vm: nr_vcpus: bad value '100000000': "
                             "100000000 vCPUs: QEMU accepts at most 4096"),
    ("nr_vcpus = " + "9" * 5000, "number too large (5000 digits)"),
    ("cpu_topology = 1,4097,1", "at most 4096 (QEMU's vCPU limit)"),
    ("cpu_topology = 1," + "2" * 4400 + ",1", "number too large (4400 digits)"),
    ("numatune = 0-4294967295", "k.cfg:3: error: vm: numatune: bad value '0-4294967295': "
                                "NUMA node 4294967295 cannot exist"),
    ("cpuset = 0-4294967295", "CPU 4294967295 cannot exist"),
])
def test_hostile_values_are_one_error_line(line, message):
    problems = _load_one(line)
    assert len(problems) == 1 and message in problems[0]
    assert len(problems[0]) < 300


@pytest.mark.parametrize("name, why", [
    ("a/b", "cannot contain '/'"),
    ("/etc/passwd", "cannot contain '/'"),
    (".", "cannot be '.' or '..'"),
    ("..", "cannot be '.' or '..'"),
    ('"web "', "cannot start or end with whitespace"),
    ("we\x7fb\x00", "character U+0000"),
])
def test_libvirt_name_rules(name, why):
    config = parse_config(f"[{UUID1}]\nname = {name}\n", "k.cfg")
    assert [d.code for d in config.problems] == ["bad-value"]
    assert config.problems[0].line == 2 and why in config.problems[0].message


def test_title_and_description_libvirt_accepts_are_stored_and_round_trip(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    vm = parse_config(f"[{UUID1}]\nname = vm\n").vms[0]
    text = "  line one\n\tindented\n\ntrailing newline\n"
    config = parse_config("", str(path))
    config.vms.append(vm.with_values(title="Lab VM ", description=text))
    save_config(config)
    loaded = load_config(str(path))
    assert loaded.problems == []
    assert (loaded.vms[0].title, loaded.vms[0].description) == ("Lab VM ", text)
