"""JSON as the commands print it: ``json.dumps(data, indent=2)``, sooner.

With ``indent`` the standard library leaves its C encoder for a Python
generator per nesting level, which takes a second for the 7 MB that
``kvmrt-show-config --json`` prints for 10,000 VMs. :func:`dumps` writes the
same bytes for what the commands print (dicts with string keys, lists,
tuples, strings, integers, booleans, None), most of it lists of CPU
numbers, and hands anything else to ``json.dumps``.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any


class _Unusual(Exception):
    """A value this module does not write itself (float, odd keys...)."""


def dumps(data: Any) -> str:
    """Exactly ``json.dumps(data, indent=2)``."""
    parts: list[str] = []
    try:
        _write(data, "\n", parts)
    except _Unusual:
        return json.dumps(data, indent=2)
    return "".join(parts)


_CONSTANTS = {None: "null", True: "true", False: "false"}


def _write(value: Any, newline: str, parts: list[str]) -> None:
    """Append ``value`` as JSON; ``newline`` is a line break plus the
    indentation of the line the value starts on."""
    kind = type(value)
    if kind is str:
        parts.append(encode_basestring_ascii(value))
    elif kind is int:
        parts.append(int.__repr__(value))
    elif value is None or kind is bool:
        parts.append(_CONSTANTS[value])
    elif kind is list or kind is tuple:
        _write_list(value, newline, parts)
    elif kind is dict:
        _write_dict(value, newline, parts)
    else:
        raise _Unusual


def _write_list(items: list | tuple, newline: str, parts: list[str]) -> None:
    if not items:
        parts.append("[]")
        return
    inner = newline + "  "
    if all(type(i) is int for i in items):  # a CPU list: the bulk of the output
        parts.append("[" + inner + ("," + inner).join(map(int.__repr__, items)) + newline + "]")
        return
    separator = "[" + inner
    for item in items:
        parts.append(separator)
        _write(item, inner, parts)
        separator = "," + inner
    parts.append(newline + "]")


def _write_dict(items: dict, newline: str, parts: list[str]) -> None:
    if not items:
        parts.append("{}")
        return
    inner = newline + "  "
    separator = "{" + inner
    for key, item in items.items():
        if type(key) is not str:
            raise _Unusual
        parts.append(separator + encode_basestring_ascii(key) + ": ")
        _write(item, inner, parts)
        separator = "," + inner
    parts.append(newline + "}")
