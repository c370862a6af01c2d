"""Round-trip editing of the config file (issue 9 item 2): a rewrite changes
only the lines of the entries whose values change; everything a person
wrote elsewhere stays byte for byte."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmrt.config.file import config_text, editing, load_config, parse_config, write_config
from kvmrt.config.iniedit import rewrite
from kvmrt.config.inifile import entry_lines, parse
from kvmrt.config.model import VmConfig
from kvmrt.host import HostFS, read_host
from kvmrt.sets import CpuSpec, IdSet
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.importer import import_domains, sync_from_libvirt

DATA = Path(__file__).parent / "data"
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"

CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r")
TEXT = st.text(CHAR, max_size=12)
# Any text a value may hold: several lines, surrounding spaces, quotes,
# empty lines anywhere (also at the end).
VALUES = st.lists(TEXT | st.sampled_from(["", " ", '"q"', "  x", "x\t"]),
                  min_size=1, max_size=4).map("\n".join)
KEYS = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="_-."),
               min_size=1, max_size=8)
NAMES = st.uuids().map(str)
COMMENTS = st.lists(
    st.tuples(st.sampled_from(["#", ";"]), TEXT | st.just(" cpuset = 1")).map("".join)
    | st.sampled_from(["", "", "   ", "\t"]),
    max_size=3)
SEPARATORS = st.sampled_from([" = ", "=", " =", "=  ", "\t=\t"])


@st.composite
def documents(draw):
    """(text, sections, line spans): a hand-written-looking config."""
    lines: list[str] = draw(COMMENTS)
    sections = []
    for name in draw(st.lists(NAMES, max_size=3, unique=True)):
        lines.append(f"[{name}]")
        entries = []
        for key in draw(st.lists(KEYS, max_size=4, unique=True)):
            lines.extend(draw(COMMENTS))
            value = draw(VALUES)
            lines.extend(entry_lines(key, value, draw(SEPARATORS)))
            entries.append((key, value))
        lines.extend(draw(COMMENTS))
        sections.append((name, entries))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""])), sections


@settings(max_examples=300)
@given(documents())
def test_rewrite_without_change_is_byte_identical(doc):
    text, sections = doc
    assert parse(text)[1] == []
    assert rewrite(text, sections) == text


@settings(max_examples=300)
@given(documents(), VALUES, st.data())
def test_rewrite_of_one_value_changes_only_its_lines(doc, new_value, data):
    text, sections = doc
    parsed, _ = parse(text)
    candidates = [(i, e) for i, s in enumerate(parsed) for e in s.entries]
    if not candidates:
        return
    index, entry = data.draw(st.sampled_from(candidates))
    name, entries = sections[index]
    changed = [(k, new_value if k == entry.key else v) for k, v in entries]
    wanted = sections[:index] + [(name, changed)] + sections[index + 1:]
    out = rewrite(text, wanted).split("\n")
    old = text.split("\n")
    before, after = old[:entry.line - 1], old[entry.last_line:]
    assert out[:len(before)] == before
    assert out[len(out) - len(after):] == after
    middle = out[len(before):len(out) - len(after)]
    if new_value == entry.value:
        assert middle == old[entry.line - 1:entry.last_line]
    else:
        assert middle[0].startswith(entry.key)
        assert len(middle) == len(entry_lines(entry.key, new_value))
    reread, problems = parse("\n".join(out))
    assert problems == []
    assert [(s.name, [(e.key, e.value) for e in s.entries]) for s in reread] == wanted


def test_removed_and_new_attributes_and_sections():
    text = ("# head\n[a]\nk = 1\n    more\n# about j\nj = 2\n\n# tail of a\n"
            "[b]\nx = 1\n; end\n")
    out = rewrite(text, [("a", [("j", "2"), ("new", "v")]), ("c", [("y", "3")])])
    assert out == ("# head\n[a]\n# about j\nj = 2\nnew = v\n\n# tail of a\n"
                   "; end\n\n[c]\ny = 3\n")


def test_crlf_file_gets_crlf_lines_and_the_byte_order_mark_stays():
    text = "\ufeff[a]\r\nk = 1\r\n# c\r\n"
    out = rewrite(text, [("a", [("k", "2"), ("n", "x\n")]), ("b", [])])
    assert out == '\ufeff[a]\r\nk = 2\r\nn = x\r\n    ""\r\n# c\r\n\r\n[b]\r\n'


HAND_WRITTEN = f"""\
# kvmrt config of lab host 3 -- ask Ann before changing
; rt VMs first

[{RT_UUID}]
# the RT guest
name = RedHawk-8.4-RT
Title = typo kept as written
cpuset = 8-23  # cores 8-23 (comment is part of the value? no: it is a bad value)
rt = Yes
nr_vcpus = 3
# cpuset = 4-7   the old value

[6a9b8eb6-3c57-4a2e-8d39-1f0cb5d1ab20]
name = other
description = two
    lines
"""


def _vm(config, uuid):
    return next(vm for vm in config.vms if vm.uuid == uuid)


def test_write_config_changes_only_the_changed_entry(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text(HAND_WRITTEN.replace("  # cores 8-23 (comment is part of the value? no: "
                                         "it is a bad value)", ""))
    original = path.read_text()
    with editing(str(path)) as config:
        write_config(config)
    assert path.read_text() == original
    with editing(str(path)) as config:
        vm = _vm(config, RT_UUID)
        config.vms[config.vms.index(vm)] = vm.with_values(nr_vcpus=6)
        config.vms.append(VmConfig("0b3ae5a4-2a51-4bd9-9d87-4e4a0d6f3b0c").with_values(
            name="fresh", title="ends with a space "))
        write_config(config)
    assert path.read_text() == original.replace("nr_vcpus = 3", "nr_vcpus = 6") + (
        "\n[0b3ae5a4-2a51-4bd9-9d87-4e4a0d6f3b0c]\nname = fresh\n"
        'title = "ends with a space "\n')
    assert _vm(load_config(str(path)), "0b3ae5a4-2a51-4bd9-9d87-4e4a0d6f3b0c").title == \
        "ends with a space "


def test_unknown_and_malformed_entries_stay_as_written():
    config = parse_config(HAND_WRITTEN, "k.cfg")
    assert {d.code for d in config.problems} == {"unknown-attribute", "bad-value"}
    vm = _vm(config, RT_UUID)
    config.vms[0] = vm.with_values(nr_vcpus=4)
    assert config_text(config) == HAND_WRITTEN.replace("nr_vcpus = 3", "nr_vcpus = 4")


@pytest.fixture
def domains():
    conn = libvirt.open(f"test://{(DATA / 'node.xml').resolve()}")
    yield Domains(conn)
    conn.close()


def test_sync_from_libvirt_and_import_keep_comments(tmp_path, domains, threadripper):
    host = read_host(HostFS(threadripper))
    path = tmp_path / "kvmrt.cfg"
    text = (f"# keep me\n[{RT_UUID}]\n; and me\nname = RedHawk-8.4-RT\ncpuset = 8-23\n"
            "rt = on\n\n# trailing words\n")
    path.write_text(text)
    with editing(str(path)) as config:
        sync_from_libvirt(config, config.vms, host, domains, query=False)
        import_domains(config, domains.all(), host, update=False)
        write_config(config)
    out = path.read_text()
    head = out[:out.index("# trailing words\n") + len("# trailing words\n")]
    # libvirt pins the VM to 8-15: that value changes in its own line.
    assert head.startswith(f"# keep me\n[{RT_UUID}]\n; and me\nname = RedHawk-8.4-RT\n"
                           "cpuset = 8-15\nrt = on\n")
    assert head.endswith("\n\n# trailing words\n")
    assert "nr_vcpus = 6" in head  # libvirt's value, added after the last entry
    # Two other domains appended; rhel8-gpu (a device this host lacks) is skipped.
    assert out.count("\n[") == 3


# -- the whole chain, on valid kvmrt configs ---------------------------------
# Each attribute in spellings a person writes (case, "yes" for True, ranges
# or lists, "auto"), and a value of another meaning a command may set.
SPELLINGS = {
    "title": ["Lab VM", "  padded  ", "it's #1 ; really"],
    "description": ["two\n    lines", "one"],
    "nr_vcpus": ["2", "AUTO", " 4"],
    "cpu_topology": ["1,2,1", "auto"],
    "cpuset": ["8-11", "8,9,10,11", "11,8-10"],
    "rt": ["Yes", "on", "1", "FALSE"],
    "rt_memory": ["auto", "no"],
    "numatune": ["0", "auto"],
    "hide_kvm": ["off", "True"],
    "autostart": ["yes", "0"],
    "disabled": ["No"],
}
NEW_VALUES = {"title": "set by a command", "description": "new\nlines", "nr_vcpus": 7,
              "cpu_topology": (1, 7, 1), "cpuset": CpuSpec.parse("2-5"),
              "numatune": IdSet.parse_nodes("1"), "rt": None, "rt_memory": True,
              "hide_kvm": None, "autostart": None, "disabled": True}


@st.composite
def kvmrt_configs(draw):
    """(text, uuid of each section): a valid hand-written kvmrt config."""
    lines: list[str] = draw(COMMENTS)
    uuids = []
    for n, uid in enumerate(draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))):
        uid = uid.upper() if draw(st.booleans()) else uid
        uuids.append(uid)
        lines.append(f"[{uid}]")
        keys = draw(st.permutations(list(SPELLINGS)))[:draw(st.integers(0, len(SPELLINGS)))]
        for key in ["name", *keys]:
            lines.extend(draw(COMMENTS))
            value = f"vm-{n}" if key == "name" else draw(st.sampled_from(SPELLINGS[key]))
            head, *more = value.split("\n")
            lines.append(f"{key}{draw(SEPARATORS)}{head}")
            lines.extend(more)
        lines.extend(draw(COMMENTS))
    return "\n".join(lines) + draw(st.sampled_from(["\n", ""])), uuids


@settings(max_examples=300)
@given(kvmrt_configs(), st.data())
def test_a_command_changing_one_value_changes_only_its_lines(doc, data):
    """What import, import -u, sync-config -r and write_config do: parse,
    set one attribute of one VM to a value of another meaning, write."""
    text, uuids = doc
    config = parse_config(text, "k.cfg")
    assert config.problems == [] and config_text(config) == text
    vm = config.find(data.draw(st.sampled_from(uuids)))
    key = data.draw(st.sampled_from(sorted(NEW_VALUES)))
    value = NEW_VALUES[key] if NEW_VALUES[key] is not None else not getattr(vm, key)
    config.vms[config.vms.index(vm)] = vm.with_values(**{key: value})
    old, out = text.split("\n"), config_text(config).split("\n")
    section = next(s for s in parse(text)[0] if s.name == vm.uuid)
    entry = next((e for e in section.entries if e.key == key), None)
    if entry is None:    # a new entry, right after the section's last entry
        end, added = max(e.last_line for e in section.entries), len(out) - len(old)
        assert out[:end] == old[:end] and out[end + added:] == old[end:]
        assert added > 0 and out[end].startswith(f"{key} = ")
    else:
        before, after = old[:entry.line - 1], old[entry.last_line:]
        assert out[:len(before)] == before and out[len(out) - len(after):] == after
        spelled = old[entry.line - 1][:old[entry.line - 1].index("=") + 1]
        assert out[len(before)].startswith(spelled)     # "key =" as it was written
    assert getattr(_vm(parse_config("\n".join(out)), vm.uuid), key) == value
