r"""The text layer of the kvmrt configuration file: INI syntax, no meaning.

SYNTAX

The file is UTF-8 text (a leading byte-order mark is ignored); lines end
with LF, a CR before it is ignored.

* A *section header* is a line that starts with ``[`` in the first column
  and ends with ``]`` (trailing whitespace allowed, nothing else). The name
  is the text between the outer brackets without surrounding whitespace.
* An *entry* is a line ``key = value`` that starts in the first column. The
  first ``=`` separates key and value (``:`` does not); whitespace around
  both is removed. The value may be empty, the key may not. Keys are kept as
  written: letter case matters. An entry belongs to the section above it.
* A value continues on the following lines that are indented with spaces
  or a TAB. Each *continuation line* is stripped and added to the value
  after a line break; blank lines between continuation lines are kept as
  empty lines of the value, blank lines at its end are dropped. The first
  line that is neither indented nor blank ends the value. An indented line
  starting with ``#`` or ``;`` is part of the value.
* A *comment* is a line whose first character is ``#`` or ``;``, even when
  it holds a ``=`` (``# cpuset = 1`` keeps an old value); it ends the value
  before it. There are no inline comments: ``#`` or ``;`` after other text
  is part of the value.
* A *quoted line*: a value line (the text after ``=`` or a continuation
  line), once stripped, that starts and ends with ``"`` is a JSON string
  (RFC 8259: ``\\``, ``\"``, ``\n``, ``\t``, ``\uXXXX``...; a literal TAB
  is allowed) and stands for the text it encodes, so that a line can keep
  surrounding whitespace: ``title = "Lab VM "``, ``    "    indented"``, and
  ``    ""`` as the last line gives a value ending with a line break. A
  quoted line that is not a valid JSON string, or encodes a lone surrogate,
  is an error. Any other line is taken as written.
* Blank lines outside of values are ignored.

Each error is reported with its line, and reading goes on after it, so that
all errors are reported at once: a repeated section header (naming the line
of the first; entries under the repeat are not used); a key repeated within
a section (the first is used); an entry before the first section header; an
empty key (``= value``); a malformed header (``[abc``, ``[abc] x``, ``[]``;
entries under it are not used); an indented line with no entry before it,
once per block (an indented line right after a comment is one); a bad
quoted line (the entry is not used); any other line (``key: value``).

CANONICAL FORM

kvmrt writes ``[name]``, then ``key = value`` per entry in order (``key =``
when empty), further lines of a value indented by four spaces (an empty
value line as an empty line), one blank line between sections and a line
break at the end. A value line that would not read back as written (one
with surrounding whitespace, one that starts and ends with ``"``, an empty
last line) is written as a quoted line. Every text can be written, except a
name or key that is empty, has surrounding whitespace or a line break, and
a text with a lone surrogate.

ROUND TRIP

:func:`rewrite` edits a text that was read so that it holds new sections,
and keeps every other byte: the lines of an entry whose value changed are
replaced by the new entry (its own lines only, continuation lines
included; the ``key =`` spelling of the old first line is kept); a removed
entry's lines are deleted; a new entry goes right after the last line of
its section's last entry (or after the header), that is before the
comments and blank lines that end the section; a removed section loses its
header and everything up to its last entry's last line; new sections go at
the end of the text, after one blank line, in canonical form. New lines end
with CR LF when the first line of the text does. Unchanged text gives the
same text back, byte for byte.

WRITING AND LOCKING

:func:`write_atomic` writes ``.NAME.PID.XXXXXXXX`` (with the file's mode
and owner from the start) beside the file and renames it over the file:
readers see the old or the new file, never a mix. A symbolic link is
followed and survives; mode and owner are kept (a new file gets 0644).
:func:`locked` serialises read-modify-write cycles with ``flock`` on
``.NAME.lock`` beside the file (mode 0600, left in place, holding the pid
of the last holder); a held lock is waited for as :mod:`kvmrt.lockfile`
says, and under it the copies of killed writers are removed.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from kvmrt import lockfile
from kvmrt.errors import ConfigFileError, IniFormatError

_INDENT = (" ", "\t")
_COMMENT = ("#", ";")
BOM = "\ufeff"


@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int  # 1-based line of the ``key = value`` line
    last_line: int = field(default=0, compare=False)  # its last line (continuations)


@dataclass
class Section:
    name: str
    line: int  # 1-based line of the header
    entries: list[Entry] = field(default_factory=list)


@dataclass(frozen=True)
class Problem:
    line: int
    message: str


@dataclass(slots=True)
class _Value:
    """The entry being read. ``target`` None: read, but not used."""

    key: str
    line: int
    lines: list[str]
    target: Section | None
    blanks: int = 0
    last_line: int = 0


class _Parser:
    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.problems: list[Problem] = []
        self.first_line: dict[str, int] = {}
        self.section: Section | None = None  # may be one that is not used
        self.keys: dict[str, int] = {}  # the line of each entry of the section
        self.value: _Value | None = None

    def feed(self, number: int, line: str) -> None:
        if not line.strip():
            if self.value is not None:
                self.value.blanks += 1
        elif line[0] in _INDENT:
            self._continuation(number, line.strip())
        else:
            self.end_value()
            if line[0] == "[":
                self._header(number, line.rstrip())
            elif line[0] in _COMMENT:
                pass
            elif "=" in line:
                self._entry(number, line)
            else:
                self._problem(number, "expected '[section]', 'key = value' or a "
                              f"comment, got {line.strip()!r}")

    def end_value(self) -> None:
        value, self.value = self.value, None
        if value is not None and value.target is not None:
            lines = value.lines
            text = lines[0] if len(lines) == 1 else "\n".join(lines)
            value.target.entries.append(Entry(value.key, text, value.line, value.last_line))
            self.keys[value.key] = value.line

    def _problem(self, number: int, message: str) -> None:
        self.problems.append(Problem(number, message))

    def _continuation(self, number: int, text: str) -> None:
        if self.value is None:
            self._problem(number, "indented line with no entry before it "
                          "(headers and keys start in the first column)")
            self.value = _Value("", number, [], target=None)
        value = self.value
        value.lines.extend([""] * value.blanks)
        value.blanks = 0
        value.lines.append(self._unquoted(number, text, value))
        value.last_line = number

    def _unquoted(self, number: int, text: str, value: _Value) -> str:
        """The text a value line stands for; a bad quoted line drops the entry."""
        if text[:1] != '"':
            return text
        try:
            return unquote(text)
        except ValueError as exc:
            if value.target is not None:
                self._problem(number, f"bad quoted line {shorten(text)}: {exc}")
                value.target = None
            return text

    def _header(self, number: int, text: str) -> None:
        closed = text.endswith("]")
        name = (text[1:-1] if closed else text[1:]).strip()
        self.section = Section(name, number, [])
        self.keys = {}
        if not closed:
            self._problem(number, f"malformed section header {text!r}: "
                          "it must end with ']'")
        elif not name:
            self._problem(number, "empty section name '[]'")
        elif name in self.first_line:
            self._problem(number, f"duplicate section [{name}] "
                          f"(first at line {self.first_line[name]})")
        else:
            self.first_line[name] = number
            self.sections.append(self.section)

    def _entry(self, number: int, line: str) -> None:
        key, _, rest = line.partition("=")
        key = key.strip()
        value = self.value = _Value(key, number, [], self._target(number, key), 0, number)
        value.lines.append(self._unquoted(number, rest.strip(), value))

    def _target(self, number: int, key: str) -> Section | None:
        """The section a new entry goes to, or None after reporting why not."""
        if not key:
            self._problem(number, "missing key before '='")
            return None
        if self.section is None:
            self._problem(number, f"key {key!r} before the first section header")
            return None
        first = self.keys.get(key)
        if first is not None:
            self._problem(number, f"duplicate key {key!r} in section "
                          f"[{self.section.name}] (first at line {first})")
            return None
        return self.section


def parse(text: str) -> tuple[list[Section], list[Problem]]:
    """Split config text into sections and entries; never raises.

    The sections returned have unique names and each has unique keys;
    everything that is wrong is in the problems, in line order.
    """
    parser = _Parser()
    for number, line in enumerate(text.removeprefix(BOM).split("\n"), 1):
        parser.feed(number, line)
    parser.end_value()
    return parser.sections, parser.problems


def _fault(kind: str, text: str, seen: set[str]) -> str | None:
    if not text:
        return "is empty"
    if "\n" in text:
        return "contains a line break"
    if text != text.strip():
        return "has leading or trailing whitespace"
    if kind == "key" and "=" in text:
        return "contains '='"
    if kind == "key" and text[0] in "#;[":
        return "starts with '#', ';' or '['"
    return f"is a duplicate {kind}" if text in seen else None


def _check(kind: str, text: str, seen: set[str]) -> None:
    """Raise IniFormatError unless a name or key would parse back as is."""
    fault = _fault(kind, text, seen)
    if fault:
        raise IniFormatError(kind, text, fault)
    seen.add(text)


def unquote(text: str) -> str:
    """The text a stripped value line stands for (see QUOTED LINES above).

    Raises ValueError for a quoted line that is not a JSON string or
    encodes a lone surrogate.
    """
    if not _is_quoted(text):
        return text
    try:
        decoded = json.loads(text, strict=False)
    except ValueError as exc:  # json.JSONDecodeError
        raise ValueError(f"not a JSON string ({exc.msg} at column {exc.colno})") from None
    if not isinstance(decoded, str):
        raise ValueError("not a JSON string")
    if _has_surrogate(decoded):
        raise ValueError("encodes a lone surrogate, which is not a character")
    return decoded


def _is_quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == '"' and text[-1] == '"'


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def shorten(text: str, width: int = 60) -> str:
    """``repr`` of ``text``, cut in the middle when long (for messages)."""
    if len(text) <= width:
        return repr(text)
    return repr(text[:width // 2]) + f"...({len(text)} characters)..." + repr(text[-10:])


def _written(line: str, *, last: bool) -> str:
    """How one line of a value is written so that it reads back as ``line``."""
    if line != line.strip() or _is_quoted(line) or (last and not line):
        return json.dumps(line, ensure_ascii=False)
    return line


def value_lines(value: str) -> list[str]:
    """The value's lines as written after ``key =``: the first line, then
    the continuation lines without their indent ("" for a blank line)."""
    if _has_surrogate(value):
        raise IniFormatError("value", value, "it contains a lone surrogate")
    lines = value.split("\n")
    end = len(lines) - 1
    return [_written(line, last=i == end and i > 0) for i, line in enumerate(lines)]


def entry_lines(key: str, value: str, separator: str = " = ") -> list[str]:
    """The lines of one entry; ``separator`` is what goes between key and value."""
    first, *more = value_lines(value)
    head = f"{key}{separator}{first}" if first else f"{key}{separator}".rstrip()
    return [head] + [f"    {line}" if line else "" for line in more]


def section_lines(name: str, entries: Iterable[tuple[str, str]]) -> list[str]:
    """One section in canonical form; IniFormatError for a bad key."""
    lines = [f"[{name}]"]
    keys: set[str] = set()
    for key, value in entries:
        _check("key", key, keys)
        lines.extend(entry_lines(key, value))
    return lines


def checked_names(sections: Iterable[tuple[str, Iterable[tuple[str, str]]]]
                  ) -> list[tuple[str, list[tuple[str, str]]]]:
    """The sections as lists; IniFormatError for a bad or repeated name."""
    names: set[str] = set()
    out = []
    for name, entries in sections:
        _check("section name", name, names)
        out.append((name, list(entries)))
    return out


def format(sections: Iterable[tuple[str, Iterable[tuple[str, str]]]]) -> str:
    """Write sections in the canonical form; ``parse(format(x))`` gives x.

    Raises IniFormatError for a name or key that would not read back
    unchanged (empty or duplicate names and keys, line breaks in names and
    keys, surrounding whitespace) and for a lone surrogate in a value.
    """
    blocks = ["\n".join(section_lines(name, entries)) + "\n"
              for name, entries in checked_names(sections)]
    return "\n".join(blocks)


_REASONS = {
    FileNotFoundError: "no such file",
    IsADirectoryError: "is a directory",
    NotADirectoryError: "a component of the path is not a directory",
    PermissionError: "permission denied",
}


def _reason(exc: OSError) -> str:
    for kind, reason in _REASONS.items():
        if isinstance(exc, kind):
            return reason
    return (exc.strerror or str(exc)).lower()


def _require_regular(name: str, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ConfigFileError(name, "is a directory")
    if not stat.S_ISREG(mode):
        raise ConfigFileError(name, "not a regular file")


def _read_regular(path: str | os.PathLike, name: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _require_regular(name, os.fstat(fd).st_mode)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_config(path: str | os.PathLike) -> str:
    """The text of the config file; ConfigFileError if it is not readable text."""
    name = os.fsdecode(path)
    try:
        data = _read_regular(path, name)
    except OSError as exc:
        raise ConfigFileError(name, _reason(exc)) from exc
    nul = data.find(b"\0")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise ConfigFileError(name, f"not a text file (NUL byte at offset {nul}, line {line})")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(
            name, f"not a text file (invalid UTF-8 at offset {exc.start}, line {line})"
        ) from exc
    return text.removeprefix("\ufeff")


def _existing_meta(name: str, target: str) -> tuple[int, int, int]:
    """Mode, uid and gid for the new file: the existing file's, or 0644."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return 0o644, -1, -1
    except OSError as exc:
        raise ConfigFileError(name, _reason(exc)) from exc
    _require_regular(name, st.st_mode)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def _set_meta(fd: int, meta: tuple[int, int, int]) -> None:
    """Give the new file the config's owner and mode before any byte of it
    is written, so that no copy is ever more readable than the config."""
    mode, uid, gid = meta
    st = os.fstat(fd)
    if (uid, gid) != (-1, -1) and (uid, gid) != (st.st_uid, st.st_gid):
        os.fchown(fd, uid, gid)
    os.fchmod(fd, mode)  # after fchown, which may clear set-id bits


def _fill(fd: int, data: bytes) -> None:
    """Write all of ``data``, fsync, close."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_directory(name: str, directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigFileError(
            name, f"replaced, but syncing directory {directory} failed: {_reason(exc)}"
        ) from exc


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Replace the file's content with ``text`` (UTF-8) in one step.

    The new content goes to ``.NAME.PID.XXXXXXXX`` beside the file (with the
    file's mode and owner from the start), which is renamed over the file.
    On failure the original file is untouched, no temporary file is left,
    and ConfigFileError is raised; one left by a writer that was killed is
    removed by the next :func:`locked`.
    """
    name = os.fsdecode(path)
    target = os.path.realpath(path)
    _write_complete(name, target, text, _existing_meta(name, target),
                    lambda temp: os.replace(temp, target))
    _sync_directory(name, os.path.dirname(target))


def write_new(path: str | os.PathLike, text: str, mode: int) -> None:
    """Create the file ``path`` with ``text`` and ``mode``, complete before
    it has its name (link(2) of a finished copy); an existing file is never
    replaced: ConfigFileError "exists already"."""
    name = os.fsdecode(path)
    target = os.path.abspath(path)

    def link(temp: str) -> None:
        try:
            os.link(temp, target)
        finally:
            os.unlink(temp)

    try:
        _write_complete(name, target, text, (mode, -1, -1), link)
    except FileExistsError:
        raise ConfigFileError(name, "exists already; not overwritten") from None
    _sync_directory(name, os.path.dirname(target))


def _write_complete(name: str, target: str, text: str, meta: tuple[int, int, int],
                    publish: Callable[[str], None]) -> None:
    """Write ``text`` to a new ``.NAME.PID.XXXXXXXX`` beside ``target``
    (mode and owner ``meta`` before any byte, fsynced), then ``publish(temp)``
    gives it its name. On failure no temporary file is left."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigFileError(name, f"text cannot be written as UTF-8 ({exc.reason} "
                              f"at character {exc.start})") from exc
    directory, base = os.path.split(target)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", dir=directory)
    except OSError as exc:
        raise ConfigFileError(name, f"cannot create a temporary file in "
                              f"{directory}: {_reason(exc)}") from exc
    try:
        try:
            _set_meta(fd, meta)
        except BaseException:
            os.close(fd)
            raise
        _fill(fd, data)
        publish(temp)
    except BaseException as exc:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        if isinstance(exc, OSError) and not isinstance(exc, FileExistsError):
            raise ConfigFileError(name, f"cannot write {temp}: {_reason(exc)}") from exc
        raise


def _stale_copies(directory: str, base: str) -> Iterator[str]:
    """Temporary copies of :func:`write_atomic` whose writer is dead: one
    named with a PID that no longer runs, or one of a kvmrt that did not
    name them so (``.NAME.XXXXXXXX``), which only a killed writer leaves
    behind, since writers hold the lock."""
    pattern = re.compile(re.escape(f".{base}.") + r"(?:(\d+)\.)?[a-z0-9_]{8}")
    for entry in os.scandir(directory):
        found = pattern.fullmatch(entry.name)
        if (found and entry.is_file(follow_symlinks=False)
                and not (found[1] and lockfile.pid_alive(int(found[1])))):
            yield entry.path


def _remove_stale_copies(name: str, directory: str, base: str) -> None:
    try:
        for path in _stale_copies(directory, base):
            with suppress(FileNotFoundError):
                os.unlink(path)
    except OSError as exc:
        raise ConfigFileError(name, f"cannot remove a stale temporary copy in "
                              f"{directory}: {_reason(exc)}") from exc


@contextmanager
def locked(path: str | os.PathLike, *, timeout: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock for a read-modify-write of the config file.

    A lock held by another process is waited for up to ``timeout`` seconds
    (0 = try once; None = as long as the command's ``--wait`` says, see
    :mod:`kvmrt.lockfile`); then ConfigFileError names the holder. Under the
    lock, temporary copies that killed writers left are removed. The lock
    file is not inherited by child processes.
    """
    name = os.fsdecode(path)
    directory, base = os.path.split(os.path.realpath(path))
    lock_path = os.path.join(directory, f".{base}.lock")
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(lock_path, flags, 0o600)
    except OSError as exc:
        raise ConfigFileError(name, f"cannot open lock file {lock_path}: "
                              f"{_reason(exc)}") from exc
    try:
        try:
            lockfile.acquire(fd, lock_path, wait=timeout)
        except lockfile.LockBusy as exc:
            raise ConfigFileError(name, exc.reason) from None
        except OSError as exc:
            raise ConfigFileError(name, f"cannot lock {lock_path}: {_reason(exc)}") from exc
        _remove_stale_copies(name, directory, base)
        yield
    finally:
        os.close(fd)
