"""The INI text layer: syntax rules, problems with their lines, canonical
form, and the file operations on real files and real processes."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kvmrt.config.inifile import Entry, Problem, format, locked, parse, read_config, write_atomic
from kvmrt.errors import ConfigFileError, IniFormatError

SRC = str(Path(__file__).resolve().parent.parent / "src")
IS_ROOT = os.geteuid() == 0

SPEC_EXAMPLE = """\
[fde74e84-0e1b-404e-90e7-72101e79c48a]
name = RedHawk-8.4-RT
title = Real-Time RedHawk 8.4
cpuset = n1,n2
rt = True
pcidevs = 0000:21:00.0 0000:22:00.0 0000:22:00.1
comments = remember to change autostart to true after testing

[aeec46cc-0638-4949-ac04-146b233194a9]
name = RedHawk-8.4
disabled = True
comments = This VM is not used anymore; kept for reference
    a second comment line is indented
"""


def ok(text: str) -> list[tuple[str, int, list[tuple[str, str, int]]]]:
    """Parse text that must have no problems; sections as plain tuples."""
    sections, problems = parse(text)
    assert problems == []
    return [(s.name, s.line, [(e.key, e.value, e.line) for e in s.entries]) for s in sections]


def plain(sections) -> list[tuple[str, list[tuple[str, str]]]]:
    return [(s.name, [(e.key, e.value) for e in s.entries]) for s in sections]


def values(text: str) -> dict[str, str]:
    [(_, _, entries)] = ok(text)
    return {key: value for key, value, _ in entries}


# --- parse: the rules --------------------------------------------------------


def test_spec_example_sections_entries_and_lines():
    parsed = ok(SPEC_EXAMPLE)
    assert [(name, line) for name, line, _ in parsed] == [
        ("fde74e84-0e1b-404e-90e7-72101e79c48a", 1),
        ("aeec46cc-0638-4949-ac04-146b233194a9", 9),
    ]
    assert parsed[0][2][1] == ("title", "Real-Time RedHawk 8.4", 3)
    assert parsed[1][2][-1] == (
        "comments",
        "This VM is not used anymore; kept for reference\na second comment line is indented",
        12,
    )


def test_entry_is_a_frozen_value():
    [section], _ = parse("[a]\nk = v\n")
    assert section.entries == [Entry("k", "v", 2)]
    with pytest.raises(AttributeError):
        section.entries[0].value = "w"


def test_header_name_is_stripped_and_trailing_space_allowed():
    assert ok("[  my vm  ]   \n") == [("my vm", 1, [])]


def test_header_name_keeps_inner_brackets():
    assert ok("[a]b]\n[[c]\n") == [("a]b", 1, []), ("[c", 2, [])]


def test_keys_are_kept_as_written_and_case_matters():
    assert values("[s]\nName = A\nname = b\nNAME x = c\n") == {
        "Name": "A", "name": "b", "NAME x": "c"}


def test_only_the_first_equals_sign_separates():
    assert values("[s]\na=b = c==d\nkey  =  spaced value  \n") == {
        "a": "b = c==d", "key": "spaced value"}


def test_colon_is_not_a_separator():
    _, problems = parse("[s]\nname: x\n")
    assert problems == [
        Problem(2, "expected '[section]', 'key = value' or a comment, got 'name: x'")]


def test_empty_value_is_allowed():
    assert values("[s]\na =\nb =   \nc=\n") == {"a": "", "b": "", "c": ""}


def test_continuation_lines_with_spaces_and_tab_are_stripped_and_joined():
    text = "[s]\nk = one\n    two  \n\tthree\n \t four\nnext = x\n"
    assert values(text) == {"k": "one\ntwo\nthree\nfour", "next": "x"}


def test_continuation_after_empty_first_line():
    assert values("[s]\nk =\n    one\n    two\n") == {"k": "\none\ntwo"}


def test_blank_lines_inside_a_value_are_kept_trailing_ones_dropped():
    text = "[s]\nk = one\n\n   \n    two\n\n \t\n\nnext = x\n"
    assert values(text) == {"k": "one\n\n\ntwo", "next": "x"}


def test_blank_lines_at_end_of_file_are_dropped_from_the_value():
    assert values("[s]\nk = one\n    two\n\n\n") == {"k": "one\ntwo"}


def test_unindented_line_ends_the_value():
    [(_, _, entries)] = ok("[s]\nk = one\n  two\nj = three\n")
    assert entries == [("k", "one\ntwo", 2), ("j", "three", 4)]


def test_comments_in_column_0_are_ignored():
    text = "# top\n; top too\n[s]\n# c\nk = v\n;c\nj = w\n"
    assert values(text) == {"k": "v", "j": "w"}


def test_no_inline_comments():
    assert values("[s]\nk = a # b ; c\n") == {"k": "a # b ; c"}


def test_indented_hash_after_key_is_continuation_not_comment():
    assert values("[s]\nk = a\n    # b\n\t; c\n") == {"k": "a\n# b\n; c"}


def test_comment_ends_the_value():
    sections, problems = parse("[s]\nk = a\n# note\n    b\n")
    assert plain(sections) == [("s", [("k", "a")])]
    assert [p.line for p in problems] == [4]


def test_crlf_line_ends():
    text = SPEC_EXAMPLE.replace("\n", "\r\n")
    assert ok(text) == ok(SPEC_EXAMPLE)


def test_empty_text_and_only_comments():
    assert parse("") == ([], [])
    assert parse("# nothing\n\n; here\n") == ([], [])


def test_section_without_entries():
    assert ok("[a]\n[b]\nk = v\n") == [("a", 1, []), ("b", 2, [("k", "v", 3)])]


# --- parse: problems ---------------------------------------------------------

PROBLEMS = [
    pytest.param(
        "[a]\nk = 1\n[b]\n[a]\nk = 2\n",
        [(4, "duplicate section [a] (first at line 1)")],
        [("a", [("k", "1")]), ("b", [])],
        id="duplicate-section-not-merged",
    ),
    pytest.param(
        "[a]\nk = 1\nj = 2\nk = 3\n    more\nl = 4\n",
        [(4, "duplicate key 'k' in section [a] (first at line 2)")],
        [("a", [("k", "1"), ("j", "2"), ("l", "4")])],
        id="duplicate-key-first-kept-continuation-swallowed",
    ),
    pytest.param(
        '[a]\nk = "b\\x"\nk = 2\n',
        [(2, "bad quoted line '\"b\\\\x\"': not a JSON string (Invalid \\escape at column 3)")],
        [("a", [("k", "2")])],
        id="key-after-a-dropped-entry-is-no-duplicate",
    ),
    pytest.param(
        "[a]\nk = 1\n[b]\nk = 2\n[a]\nk = 3\n",
        [(5, "duplicate section [a] (first at line 1)")],
        [("a", [("k", "1")]), ("b", [("k", "2")])],
        id="same-key-in-another-section",
    ),
    pytest.param(
        "k = 1\n    more\n[a]\nj = 2\n",
        [(1, "key 'k' before the first section header")],
        [("a", [("j", "2")])],
        id="key-before-section",
    ),
    pytest.param(
        "[a]\n= 1\n  = 2\nj = 3\n",
        [(2, "missing key before '='")],
        [("a", [("j", "3")])],
        id="empty-key",
    ),
    pytest.param(
        "[a]\nk = 1\n[abc\nj = 2\n[b]\nl = 3\n",
        [(3, "malformed section header '[abc': it must end with ']'")],
        [("a", [("k", "1")]), ("b", [("l", "3")])],
        id="malformed-header-entries-not-attached-to-previous",
    ),
    pytest.param(
        "[a]\n[b] # comment\nk = 1\n",
        [(2, "malformed section header '[b] # comment': it must end with ']'")],
        [("a", [])],
        id="text-after-header",
    ),
    pytest.param(
        "[ ]\nk = 1\n[a]\n",
        [(1, "empty section name '[]'")],
        [("a", [])],
        id="empty-section-name",
    ),
    pytest.param(
        "[a]\n    orphan\n    block\n\n    same block\nk = 1\n",
        [(2, "indented line with no entry before it "
             "(headers and keys start in the first column)")],
        [("a", [("k", "1")])],
        id="continuation-without-key-reported-once-per-block",
    ),
    pytest.param(
        "    [a]\n    k = 1\n",
        [(1, "indented line with no entry before it "
             "(headers and keys start in the first column)")],
        [],
        id="indented-file",
    ),
    pytest.param(
        "[a]\njust some words\nk = 1\n",
        [(2, "expected '[section]', 'key = value' or a comment, got 'just some words'")],
        [("a", [("k", "1")])],
        id="garbage-line",
    ),
]


@pytest.mark.parametrize("text, problems, sections", PROBLEMS)
def test_problem_kinds_with_their_lines(text, problems, sections):
    got_sections, got_problems = parse(text)
    assert [(p.line, p.message) for p in got_problems] == problems
    assert plain(got_sections) == sections


def test_all_problems_are_collected_and_parsing_goes_on():
    text = textwrap.dedent("""\
        stray = 1
        [a]
        name = one
        name = two
        what is this
        [a]
        name = three
        [b
        = v
        [c]
        k = v
            continued
        # comment
            orphan
        k = again
        [d]
        name = last
        """)
    sections, problems = parse(text)
    assert [p.line for p in problems] == [1, 4, 5, 6, 8, 9, 14, 15]
    assert [p.message.split()[0] for p in problems] == [
        "key", "duplicate", "expected", "duplicate", "malformed", "missing",
        "indented", "duplicate"]
    assert plain(sections) == [
        ("a", [("name", "one")]),
        ("c", [("k", "v\ncontinued")]),
        ("d", [("name", "last")]),
    ]


def test_duplicate_section_has_its_own_duplicate_keys_reported():
    _, problems = parse("[a]\n[a]\nk = 1\nk = 2\n")
    assert [(p.line, p.message) for p in problems] == [
        (2, "duplicate section [a] (first at line 1)"),
        (4, "duplicate key 'k' in section [a] (first at line 3)"),
    ]


# --- format ------------------------------------------------------------------


def test_format_canonical_text():
    text = format([
        ("vm1", [("name", "one"), ("empty", ""), ("comments", "a\n\nb # x")]),
        ("vm2", []),
        ("vm3", [("k", "\nlater")]),
    ])
    assert text == (
        "[vm1]\nname = one\nempty =\ncomments = a\n\n    b # x\n"
        "\n[vm2]\n"
        "\n[vm3]\nk =\n    later\n"
    )


def test_format_nothing_is_empty_text():
    assert format([]) == ""


def test_format_then_parse_spec_example():
    sections, _ = parse(SPEC_EXAMPLE)
    assert format(plain(sections)) == SPEC_EXAMPLE


@pytest.mark.parametrize("sections, kind", [
    ([("", [])], "section name"),
    ([(" a", [])], "section name"),
    ([("a\nb", [])], "section name"),
    ([("a", []), ("a", [])], "section name"),
    ([("a", [("", "v")])], "key"),
    ([("a", [("k=", "v")])], "key"),
    ([("a", [("#k", "v")])], "key"),
    ([("a", [(";k", "v")])], "key"),
    ([("a", [("[k", "v")])], "key"),
    ([("a", [("k ", "v")])], "key"),
    ([("a", [("k\nj", "v")])], "key"),
    ([("a", [("k", "v"), ("k", "w")])], "key"),
    ([("a", [("k", "v\ud800")])], "value"),
])
def test_format_rejects_what_would_not_read_back(sections, kind):
    with pytest.raises(IniFormatError) as info:
        format(sections)
    assert info.value.kind == kind
    assert isinstance(info.value, ValueError)


def _stripped_line(alphabet):
    return st.text(alphabet).map(str.strip)


ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\n")
NAMES = st.text(ANY_CHAR, min_size=1).map(str.strip).filter(bool)
KEYS = NAMES.filter(lambda k: "=" not in k and k[0] not in "#;[")
VALUES = st.lists(_stripped_line(ANY_CHAR), min_size=1, max_size=5).filter(
    lambda lines: len(lines) == 1 or lines[-1]).map("\n".join)
CONFIGS = st.lists(
    st.tuples(NAMES, st.lists(st.tuples(KEYS, VALUES), max_size=5, unique_by=lambda kv: kv[0])),
    max_size=5, unique_by=lambda s: s[0])


@settings(max_examples=300)
@given(CONFIGS)
def test_parse_gives_back_what_format_wrote(config):
    sections, problems = parse(format(config))
    assert problems == []
    assert plain(sections) == config


ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",)))


@settings(max_examples=300)
@given(st.lists(st.tuples(ANY_TEXT, st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=3)),
                max_size=3))
def test_format_either_refuses_or_round_trips(config):
    try:
        text = format(config)
    except IniFormatError:
        return
    sections, problems = parse(text)
    assert problems == []
    assert plain(sections) == config


@settings(max_examples=300)
@given(st.text(st.sampled_from(list("[]=#; \t\nab\r"))) | ANY_TEXT)
def test_parse_never_raises_and_problems_point_at_real_lines(text):
    sections, problems = parse(text)
    lines = text.split("\n")
    assert all(1 <= p.line <= len(lines) for p in problems)
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert len({s.name for s in sections}) == len(sections)
    for section in sections:
        assert len({e.key for e in section.entries}) == len(section.entries)
        assert lines[section.line - 1].startswith("[")


# --- read_config -------------------------------------------------------------


def read_error(path) -> str:
    with pytest.raises(ConfigFileError) as info:
        read_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert info.value.path == str(path)
    return info.value.reason


def test_read_text(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_bytes("[vm]\ntitle = Größe\r\n".encode())
    assert read_config(path) == "[vm]\ntitle = Größe\r\n"
    assert read_config(str(path)) == read_config(path)


def test_read_ignores_byte_order_mark(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_bytes(b"\xef\xbb\xbf[vm]\n")
    assert ok(read_config(path)) == [("vm", 1, [])]


def test_read_empty_file(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_bytes(b"")
    assert read_config(path) == ""


def test_read_missing_file(tmp_path):
    assert read_error(tmp_path / "nope.cfg") == "no such file"


def test_read_directory(tmp_path):
    assert read_error(tmp_path) == "is a directory"


def test_read_path_through_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    assert read_error(tmp_path / "file" / "x") == "a component of the path is not a directory"


def test_read_fifo_does_not_hang(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert read_error(fifo) == "not a regular file"


def test_read_binary_garbage_with_nul(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)))
    assert read_error(path) == "not a text file (NUL byte at offset 7, line 1)"


def test_read_invalid_utf8(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_bytes(b"[vm]\n\ntitle = caf\xe9\n")
    assert read_error(path) == "not a text file (invalid UTF-8 at offset 17, line 3)"


def test_read_unreadable_file(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("[vm]\n")
    path.chmod(0)
    if not IS_ROOT:
        assert read_error(path) == "permission denied"
        return
    # Root reads any file, so read it as user nobody in a child process.
    # The child starts in the file's directory (entered while still root) so
    # that only the file's own mode matters, not pytest's 0700 parents.
    tmp_path.chmod(0o755)
    script = textwrap.dedent("""\
        import os, sys
        from kvmrt.config.inifile import read_config
        from kvmrt.errors import ConfigFileError
        os.setgid(65534); os.setuid(65534)
        try:
            read_config("kvmrt.cfg")
        except ConfigFileError as exc:
            print(exc.reason)
        """)
    result = run_child(script, cwd=tmp_path)
    assert result.stdout == "permission denied\n", result.stderr


# --- write_atomic ------------------------------------------------------------


def run_child(script: str, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, **kwargs)


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_write_new_file_mode_0644_whatever_the_umask(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    old_umask = os.umask(0o077)
    try:
        write_atomic(path, "[vm]\ntitle = Größe\n")
    finally:
        os.umask(old_umask)
    assert read_config(path) == "[vm]\ntitle = Größe\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert listing(tmp_path) == ["kvmrt.cfg"]


def test_write_replaces_the_file_not_its_content(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    before = path.stat().st_ino
    write_atomic(str(path), "new\n")
    assert path.read_text() == "new\n"
    assert path.stat().st_ino != before
    assert listing(tmp_path) == ["kvmrt.cfg"]


def test_write_keeps_mode(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    path.chmod(0o640)
    write_atomic(path, "new\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.skipif(not IS_ROOT, reason="changing a file's owner needs root")
def test_write_keeps_owner_and_mode(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    os.chown(path, 1234, 5678)
    path.chmod(0o604)
    write_atomic(path, "new\n")
    st_ = path.stat()
    assert (st_.st_uid, st_.st_gid, stat.S_IMODE(st_.st_mode)) == (1234, 5678, 0o604)
    assert path.read_text() == "new\n"


def test_write_through_symlink_keeps_the_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "kvmrt.cfg"
    target.write_text("old\n")
    target.chmod(0o600)
    link = tmp_path / "kvmrt.cfg"
    link.symlink_to(Path("real") / "kvmrt.cfg")
    write_atomic(link, "new\n")
    assert link.is_symlink()
    assert os.readlink(link) == "real/kvmrt.cfg"
    assert target.read_text() == "new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert listing(tmp_path) == ["kvmrt.cfg", "real"]
    assert listing(tmp_path / "real") == ["kvmrt.cfg"]


def write_error(path, text) -> str:
    with pytest.raises(ConfigFileError) as info:
        write_atomic(path, text)
    assert "\n" not in str(info.value)
    return info.value.reason


def test_write_unencodable_text_leaves_original(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    reason = write_error(path, "[vm]\ntitle = \udcff\n")
    assert reason.startswith("text cannot be written as UTF-8")
    assert path.read_text() == "old\n"
    assert listing(tmp_path) == ["kvmrt.cfg"]


def test_write_into_vanished_directory(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    gone.rmdir()
    reason = write_error(gone / "kvmrt.cfg", "x\n")
    assert reason == f"cannot create a temporary file in {gone}: no such file"
    assert listing(tmp_path) == []


def test_write_over_a_directory(tmp_path):
    (tmp_path / "kvmrt.cfg").mkdir()
    assert write_error(tmp_path / "kvmrt.cfg", "x\n") == "is a directory"
    assert listing(tmp_path) == ["kvmrt.cfg"]


def test_write_failing_midway_removes_temp_and_leaves_original(tmp_path):
    """A real failure after the temporary file exists: the file size limit
    (RLIMIT_FSIZE) of a child process makes write(2) fail with EFBIG."""
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    script = textwrap.dedent(f"""\
        import resource, signal
        from kvmrt.config.inifile import write_atomic
        from kvmrt.errors import ConfigFileError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomic({str(path)!r}, "x" * 100000)
        except ConfigFileError as exc:
            print(exc.reason)
        """)
    result = run_child(script)
    assert result.stdout.startswith(f"cannot write {tmp_path}/.kvmrt.cfg."), result.stderr
    assert result.stdout.endswith(": file too large\n")
    assert path.read_text() == "old\n"
    assert listing(tmp_path) == ["kvmrt.cfg"]


# --- locked ------------------------------------------------------------------

HOLD = """\
import sys
from kvmrt.config.inifile import locked
with locked(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.read()
"""

WAIT = """\
import sys
from kvmrt.config.inifile import locked
print("waiting", flush=True)
with locked(sys.argv[1]):
    print("locked", flush=True)
"""


def start_child(script: str, path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.Popen([sys.executable, "-c", script, str(path)], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def next_line(child: subprocess.Popen, timeout: float) -> str | None:
    ready, _, _ = select.select([child.stdout], [], [], timeout)
    return child.stdout.readline() if ready else None


@pytest.fixture
def holder(tmp_path):
    """A second process that holds the lock on tmp_path/kvmrt.cfg."""
    child = start_child(HOLD, tmp_path / "kvmrt.cfg")
    assert next_line(child, 30) == "locked\n"
    yield child
    child.stdin.close()
    assert child.wait(30) == 0


def test_lock_file_beside_config_mode_0600(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    with locked(path):
        lock = tmp_path / ".kvmrt.cfg.lock"
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert lock.read_text() == f"{os.getpid()}\n"
    assert listing(tmp_path) == [".kvmrt.cfg.lock"]


def test_lock_held_by_another_process_times_out(tmp_path, holder):
    start = time.monotonic()
    with pytest.raises(ConfigFileError) as info:
        with locked(tmp_path / "kvmrt.cfg", timeout=0.3):
            pytest.fail("got a lock that another process holds")
    assert time.monotonic() - start >= 0.3
    # who holds it: pid and command line, as package managers say
    assert info.value.reason.startswith(f"locked by pid {holder.pid} (-c import sys ")
    assert "gave up after 0.3 s" in info.value.reason and "--wait SECONDS" in info.value.reason


def test_lock_try_once(tmp_path, holder):
    with pytest.raises(ConfigFileError):
        with locked(tmp_path / "kvmrt.cfg", timeout=0):
            pytest.fail("got a lock that another process holds")


def test_lock_through_symlink_is_the_same_lock(tmp_path, holder):
    link = tmp_path / "link.cfg"
    link.symlink_to("kvmrt.cfg")
    with pytest.raises(ConfigFileError):
        with locked(link, timeout=0):
            pytest.fail("got a lock that another process holds")


def test_second_process_blocks_until_lock_is_released(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    with locked(path):
        child = start_child(WAIT, path)
        assert next_line(child, 30) == "waiting\n"
        assert next_line(child, 1.0) is None, "child got the lock while we hold it"
    assert next_line(child, 30) == "locked\n"
    assert child.wait(30) == 0


def test_lock_is_released_after_an_error_in_the_block(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    with pytest.raises(KeyError):
        with locked(path):
            raise KeyError("boom")
    result = run_child(f"from kvmrt.config.inifile import locked\n"
                       f"with locked({str(path)!r}, timeout=0): print('ok')\n")
    assert result.stdout == "ok\n", result.stderr


def test_lock_in_missing_directory(tmp_path):
    with pytest.raises(ConfigFileError) as info:
        with locked(tmp_path / "gone" / "kvmrt.cfg"):
            pytest.fail("locked in a directory that does not exist")
    assert info.value.reason.endswith(": no such file")


# --- comments holding '=' and quoted lines (issue 11) ------------------------


@pytest.mark.parametrize("comment", ["# cpuset = 1", ";nr_vcpus=4", "#=", "# a = b = c"])
def test_whole_line_comment_with_equals_is_a_comment(comment):
    sections, problems = parse(f"[a]\n{comment}\nk = v\n")
    assert problems == []
    assert plain(sections) == [("a", [("k", "v")])]


@pytest.mark.parametrize("text, value", [
    ('k = "Lab VM "', "Lab VM "),
    ('k = ""', ""),
    ('k = "say \\"hi\\""', 'say "hi"'),
    ('k = "tab\tand \\u00e9"', "tab\tand \u00e9"),
    ('k = "a" and "b', '"a" and "b'),  # does not end with a quote: as written
    ('k = first\n    "  indented"\n\n    ""', "first\n  indented\n\n"),
    ('k =\n    ""', "\n"),
])
def test_quoted_lines_keep_whitespace(text, value):
    sections, problems = parse(f"[a]\n{text}\n")
    assert problems == []
    assert plain(sections) == [("a", [("k", value)])]


@pytest.mark.parametrize("line", ['k = "C:\\VMs"', 'k = "a" "b"', 'k = "\\ud800"',
                                  'k = x\n    "\\q"'])
def test_bad_quoted_line_is_an_error_and_the_entry_is_not_used(line):
    sections, problems = parse(f"[a]\n{line}\nj = 1\n")
    assert [p.line for p in problems] == [2 + line.count("\n")]
    assert problems[0].message.startswith("bad quoted line")
    assert plain(sections) == [("a", [("j", "1")])]


@pytest.mark.parametrize("value", ["title ", " lead", "a\n  indented\n", "\n", '"quoted"',
                                   "x\n\n", "tab\t", "\u3000wide\u3000"])
def test_format_writes_any_text_so_that_it_reads_back(value):
    sections, problems = parse(format([("a", [("k", value)])]))
    assert problems == []
    assert plain(sections) == [("a", [("k", value)])]


def test_waiting_is_bounded_by_the_process_wait_and_says_for_whom(tmp_path, holder):
    """Without a timeout of its own, locked() waits as long as the command's
    --wait says (kvmrt.lockfile.set_wait), and says once whom it waits for."""
    script = textwrap.dedent(f"""\
        from kvmrt import lockfile
        from kvmrt.config.inifile import locked
        from kvmrt.errors import ConfigFileError
        lockfile.set_wait(0.5, notify=print)
        try:
            with locked({str(tmp_path / "kvmrt.cfg")!r}):
                print("locked")
        except ConfigFileError as exc:
            print(exc.reason)
        """)
    start = time.monotonic()
    result = run_child(script)
    assert 0.5 <= time.monotonic() - start < 30
    waiting, gave_up = result.stdout.splitlines()
    assert waiting.startswith(f"waiting up to 0.5 s for {tmp_path}/.kvmrt.cfg.lock, "
                              f"locked by pid {holder.pid} (")
    assert gave_up.startswith(f"locked by pid {holder.pid} (") and "after 0.5 s" in gave_up


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_lock_removes_the_copies_of_killed_writers_only(tmp_path):
    path = tmp_path / "kvmrt.cfg"
    path.write_text("old\n")
    dead = f".kvmrt.cfg.{dead_pid()}.abcd1234"          # its writer is gone
    legacy = ".kvmrt.cfg.x7k2_q9z"                     # kvmrt before PIDs in names
    alive = f".kvmrt.cfg.{os.getpid()}.abcd1234"        # a writer that still runs
    others = [".kvmrt.cfg.swp", ".kvmrt.cfg.orig", "kvmrt.cfg.x7k2_q9z"]
    for name in [dead, legacy, alive, *others]:
        (tmp_path / name).write_text("copy\n")
    with locked(path):
        pass
    assert listing(tmp_path) == sorted([".kvmrt.cfg.lock", "kvmrt.cfg", alive, *others])


WRITER = """\
import sys
from kvmrt.config.inifile import locked, write_atomic
n = 0
print("go", flush=True)
while True:
    n += 1
    with locked(sys.argv[1]):
        write_atomic(sys.argv[1], (f"# {n}\\n" + "x = " + "y" * 4000 + "\\n") * 4000)
"""


@dataclass
class WriteKills:
    """What the kills of :func:`kill_writers` left: configs that were not one
    whole version, copies more readable than the config, copies the next
    lock did not remove."""

    kills: int = 0
    not_whole: int = 0
    copies: int = 0
    lax_copies: int = 0
    copies_kept: int = 0


def kill_writers(directory: Path, seed: int, kills: int, seconds: float) -> WriteKills:
    """Kill harness: a writer rewriting a 0640 config (16 MB) in a loop is
    SIGKILLed at random moments, ``kills`` times or for ``seconds``."""
    import random
    rng = random.Random(seed)
    path = directory / "kvmrt.cfg"
    path.write_text("old\n")
    path.chmod(0o640)
    found, deadline = WriteKills(), time.monotonic() + seconds
    while found.kills < kills and time.monotonic() < deadline:
        child = start_child(WRITER, path)
        assert next_line(child, 30) == "go\n"
        time.sleep(rng.uniform(0, 0.2))
        child.kill()
        child.wait()
        found.kills += 1
        text = path.read_text()
        found.not_whole += not (text == "old\n" or (text.startswith("# ")
                                                    and len(text.splitlines()) == 8000))
        copies = [p for p in directory.iterdir() if p.name.startswith(".kvmrt.cfg.")
                  and p.name != ".kvmrt.cfg.lock"]
        found.copies += len(copies)
        found.lax_copies += sum(stat.S_IMODE(p.stat().st_mode) & ~0o640 != 0 for p in copies)
        with locked(path, timeout=5):
            pass
        found.copies_kept += listing(directory) != [".kvmrt.cfg.lock", "kvmrt.cfg"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    return found


def test_sigkill_during_writes_leaves_the_old_or_new_file_and_no_lax_copy(tmp_path):
    """The config is always one whole version; a copy a kill leaves is never
    more readable than the config (0600 from mkstemp until the config's
    0640 is set, never 0644), and the next lock removes it."""
    found = kill_writers(tmp_path, seed=11, kills=25, seconds=20)
    assert found.kills >= 5
    assert (found.not_whole, found.lax_copies, found.copies_kept) == (0, 0, 0), found
