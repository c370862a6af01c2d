"""Round-trip editing of config text: change only the lines that must change.

In the spirit of configupdater and ruamel.yaml, :func:`rewrite` takes the
text a person wrote and the sections it should now hold, and edits the text
line by line, so that comments, blank lines, order, letter case and the
spelling of every untouched value stay byte for byte (the rules are in
:mod:`kvmrt.config.inifile`, ROUND TRIP). A new file gets the canonical
form of :func:`kvmrt.config.inifile.format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from kvmrt.config.inifile import (BOM, Entry, Section, checked_names, entry_lines, parse,
                                  section_lines)

Sections = Iterable[tuple[str, Iterable[tuple[str, str]]]]


@dataclass(frozen=True)
class _Edit:
    """Replace lines ``start`` to ``end`` (0-based, end excluded) by ``lines``."""

    start: int
    end: int
    lines: list[str]


def rewrite(text: str, sections: Sections) -> str:
    """``text`` changed so that it parses to ``sections``, and nothing else.

    Raises IniFormatError like :func:`~kvmrt.config.inifile.format`.
    """
    wanted = checked_names(sections)
    bom = BOM if text.startswith(BOM) else ""
    lines = text.removeprefix(bom).split("\n")
    eol = "\r" if lines[0].endswith("\r") else ""
    old = {s.name: s for s in parse(text)[0]}
    edits = [_remove_section(s) for name, s in old.items()
             if name not in {n for n, _ in wanted}]
    for name, entries in wanted:
        if name in old:
            edits.extend(_section_edits(old[name], entries, lines))
    for edit in sorted(edits, key=lambda e: (e.start, e.end), reverse=True):
        lines[edit.start:edit.end] = [line + eol for line in edit.lines]
    added = [(n, e) for n, e in wanted if n not in old]
    kept = [n for n, _ in wanted if n in old]
    if kept != [n for n in old if n in kept]:
        lines = _reorder(lines, kept)
    return bom + _append_sections(lines, added, eol)


def _reorder(lines: list[str], order: list[str]) -> list[str]:
    """The sections of ``lines`` in ``order``, each with the comment lines
    right above its header; what comes before the first header (the file's
    own comments) stays first.
    Blank lines at the end of a moved block become one blank line between
    sections."""
    sections = parse("\n".join(lines))[0]
    starts = []
    for section in sections:
        start = section.line - 1
        while starts and lines[start - 1].strip()[:1] in ("#", ";"):
            start -= 1
        starts.append(start)
    bounds = dict(zip((s.name for s in sections), zip(starts, starts[1:] + [len(lines)])))
    blocks = []
    for name in order:
        block = lines[slice(*bounds[name])]
        while block and not block[-1].strip():
            block.pop()
        blocks.append(block)
    out = lines[:starts[0]] if starts else []
    for block in blocks:
        out += block + [""]
    return out


def _remove_section(section: Section) -> _Edit:
    return _Edit(section.line - 1, _end(section), [])


def _end(section: Section) -> int:
    """Index of the line after the section's last entry (or its header)."""
    return max([section.line] + [e.last_line for e in section.entries])


def _section_edits(section: Section, entries: list[tuple[str, str]],
                   lines: list[str]) -> list[_Edit]:
    new = dict(entries)
    edits = []
    for entry in section.entries:
        if entry.key not in new:
            edits.append(_Edit(entry.line - 1, entry.last_line, []))
        elif new[entry.key] != entry.value:
            written = entry_lines(entry.key, new[entry.key], _separator(entry, lines))
            edits.append(_Edit(entry.line - 1, entry.last_line, written))
    old_keys = {e.key for e in section.entries}
    appended = section_lines(section.name, [(k, v) for k, v in entries if k not in old_keys])
    if len(appended) > 1:
        end = _end(section)
        edits.append(_Edit(end, end, appended[1:]))
    return edits


def _separator(entry: Entry, lines: list[str]) -> str:
    """The ``=`` of the entry's first line with the whitespace around it."""
    first = lines[entry.line - 1].rstrip("\r")
    key_part, _, rest = first.partition("=")
    before = key_part[len(key_part.rstrip()):]
    after = rest[:len(rest) - len(rest.lstrip())] or " "
    return f"{before}={after}"


def _append_sections(lines: list[str], added: list[tuple[str, list[tuple[str, str]]]],
                     eol: str) -> str:
    if not added:
        return "\n".join(lines)
    body = lines[:-1] if lines and lines[-1] in ("", "\r") else lines
    out = [line + "\n" for line in body]
    for name, entries in added:
        if out and out[-1].strip():
            out.append(eol + "\n")
        out.extend(line + eol + "\n" for line in section_lines(name, entries))
    return "".join(out)
