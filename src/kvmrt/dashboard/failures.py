"""How the dashboard shows a failure: one line, never a traceback.

Workers read libvirt, /proc and /sys in threads; whatever they raise (a
:class:`~kvmrt.errors.KvmrtError` with the CLI's text, or anything else, an
``OSError`` of a broken host tree, a bug) ends as one line on the screen,
and the dashboard keeps running.
"""

from __future__ import annotations

from kvmrt.errors import KvmrtError


def error_line(exc: BaseException) -> str:
    """``error: TEXT``: a kvmrt error in the tools' words, anything else
    with its type (``error: unexpected OSError: ...``), on one line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KvmrtError):
        return f"error: {text}"
    return f"error: unexpected {type(exc).__name__}" + (f": {text}" if text else "")
