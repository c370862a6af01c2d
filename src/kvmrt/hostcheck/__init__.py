"""Is this machine fit to be a real-time KVM host? (``kvmrt-validate-host``)

One module per area registers its checks (:mod:`.registry`); each check
reads the host through :class:`~kvmrt.host.fs.HostFS` and returns a
:class:`~.result.Finding` (PASS, WARN or FAIL, a message, a remedy). What
a root directory cannot redirect (the process's privileges and memlock
limit, ``/dev/kvm``, libvirt) sits behind :mod:`.machine`.
:func:`validate_host` runs them all and returns a :class:`~.result.Report`;
:func:`format_report` renders it for a terminal. Nothing is ever changed.
"""

from __future__ import annotations

import importlib

# The names below are loaded on first use: importing one helper module of
# the package (kvmrt.hostcheck.kernel's mount parser, say, which guest
# services use) must not load and register every check (0.2 s).
_WHERE = {"REGISTRY": "runner",   # the runner imports (so registers) every check
          "Finding": "result", "Report": "result", "Result": "result", "Status": "result",
          "validate_host": "runner", "format_report": "text"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> object:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
