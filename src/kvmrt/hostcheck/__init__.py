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

from kvmrt.hostcheck.registry import REGISTRY
from kvmrt.hostcheck.result import Finding, Report, Result, Status
from kvmrt.hostcheck.runner import validate_host
from kvmrt.hostcheck.text import format_report

__all__ = ["REGISTRY", "Finding", "Report", "Result", "Status", "format_report",
           "validate_host"]
