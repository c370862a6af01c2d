"""The registry of host checks, in the order they are run and printed.

An area module declares its checks with :func:`check` (one finding, or
``None`` when the check does not apply, e.g. a config-aware check without
a config) or :func:`check_each` (one finding per item, each with its own
id ``prefix:item``). Importing the area modules fills :data:`REGISTRY`;
:func:`kvmrt.hostcheck.runner.checks` orders it by
:data:`kvmrt.hostcheck.runner.AREAS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from kvmrt.hostcheck.result import Finding

if TYPE_CHECKING:  # pragma: no cover
    from kvmrt.hostcheck.context import Context

Found = Iterator[tuple[str, Finding]]


@dataclass(frozen=True)
class Check:
    id: str
    run: Callable[["Context"], Found]
    doc: str
    module: str  # the area module that registered it


REGISTRY: list[Check] = []


def _register(check_id: str, run: Callable[["Context"], Found], fn: Callable) -> None:
    if any(c.id == check_id for c in REGISTRY):
        raise ValueError(f"duplicate host check id {check_id!r}")
    doc = (fn.__doc__ or "").strip().splitlines()
    REGISTRY.append(Check(check_id, run, doc[0] if doc else "", fn.__module__))


def check(check_id: str) -> Callable:
    """Register ``fn(ctx) -> Finding | None`` under ``check_id``."""

    def decorate(fn: Callable[["Context"], Finding | None]) -> Callable:
        def run(ctx: "Context") -> Found:
            finding = fn(ctx)
            if finding is not None:
                yield check_id, finding

        _register(check_id, run, fn)
        return fn

    return decorate


def check_each(prefix: str) -> Callable:
    """Register ``fn(ctx) -> Iterable[(item, Finding)]``; ids are ``prefix:item``."""

    def decorate(fn: Callable[["Context"], Iterable[tuple[str, Finding]]]) -> Callable:
        def run(ctx: "Context") -> Found:
            for item, finding in fn(ctx):
                yield f"{prefix}:{item}", finding

        _register(prefix, run, fn)
        return fn

    return decorate
