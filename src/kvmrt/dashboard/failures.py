"""How the dashboard shows a failure: one line, never a traceback.

Workers read libvirt, /proc and /sys in threads; whatever they raise (a
:class:`~kvmrt.errors.KvmrtError` with the CLI's text, or anything else, an
``OSError`` of a broken host tree, a bug) ends as one line on the screen,
and the dashboard keeps running.
"""

from __future__ import annotations

from typing import Any, Callable

from textual.css.query import NoMatches

from kvmrt.errors import KvmrtError


def error_line(exc: BaseException) -> str:
    """``error: TEXT``: a kvmrt error in the tools' words, anything else
    with its type (``error: unexpected OSError: ...``), on one line."""
    text = " ".join(str(exc).split())
    if isinstance(exc, KvmrtError):
        return f"error: {text}"
    return f"error: unexpected {type(exc).__name__}" + (f": {text}" if text else "")


def deliver(app, show: Callable[..., Any], *args: Any) -> None:
    """Hand a worker's reading to the UI thread. A screen closed meanwhile
    (Esc, quit: its widgets are gone) drops it instead of failing."""
    try:
        app.call_from_thread(show, *args)
    except NoMatches:
        pass
