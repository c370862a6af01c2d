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


def deliver(show: Callable[..., Any], *args: Any) -> None:
    """Hand a worker's result to ``show`` on the UI thread; ``show`` is a
    method of the screen (or the app) that started the worker.

    Every worker reaches the UI through here: a result that arrives after
    its screen was closed (Esc, Close, Skip) or while the app exits is
    dropped, since its widgets are gone and nobody waits for it; it must
    not end the app as a worker failure."""
    owner = show.__self__
    app = owner.app

    def on_ui_thread() -> Any:
        if not owner.is_attached:
            return None
        try:
            return show(*args)   # an awaitable (dismiss) is awaited by Textual
        except NoMatches:        # a widget of it went meanwhile
            return None

    if not app.is_running:
        return
    try:
        app.call_from_thread(on_ui_thread)
    except RuntimeError:
        if app.is_running:      # not the app stopping under us: a real error
            raise
