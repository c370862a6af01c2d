"""Run every registered check against one host and collect a :class:`Report`.

Expected failures of a single check become a finding of that check, so
that one unreadable file never hides the other checks: a SKIP for
:class:`Undetermined` (the host does not expose the fact) and a
``PermissionError`` (as an ordinary user: "needs root"); a WARN for
:class:`HostReadError` (a kernel file that does not parse) and a libvirt
call that fails after the connection was opened.
"""

from __future__ import annotations

import libvirt

from kvmrt.config.file import Config
from kvmrt.errors import HostReadError
from kvmrt.host import HostFS, read_host
from kvmrt.hostcheck import (cpus, guests, interference, iommu, kernelknobs,  # noqa: F401
                             libvirtd, memory, pcidevs, rtkernel, timesync, virt, vmconfig)
from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.machine import LibvirtSession, Machine, Undetermined
from kvmrt.hostcheck.registry import REGISTRY, Check
from kvmrt.hostcheck.result import Finding, Report, Result, skipped, warn

# The areas, in the order their checks are printed. Importing a module
# registers its checks, in the order they are written there.
AREAS = (vmconfig, virt, iommu, pcidevs, libvirtd, guests, rtkernel, interference,
         kernelknobs, memory, cpus, timesync)


def checks() -> list[Check]:
    """Every registered check, area by area."""
    order = [m.__name__ for m in AREAS]
    return sorted(REGISTRY, key=lambda c: order.index(c.module))


def validate_host(fs: HostFS | None = None, *, config: Config | None = None,
                  uri: str | None = None, machine: Machine | None = None) -> Report:
    """Every check on the host below ``fs`` (default: ``HostFS()``).

    Raises :class:`HostReadError` when the root has no sysfs. Changes nothing.
    """
    fs = fs if fs is not None else HostFS()
    host = read_host(fs)
    session = LibvirtSession(uri)
    try:
        ctx = Context(fs, machine or Machine(fs), host, config=config, libvirt=session)
        return Report(tuple(r for check in checks() for r in run_check(check, ctx)))
    finally:
        session.close()


def run_check(check: Check, ctx: Context) -> list[Result]:
    try:
        return [Result(i, f) for i, f in check.run(ctx)]
    except Undetermined as err:
        found = skipped(err.reason, err.remedy or "check it by hand")
    except PermissionError as err:
        found = _denied(ctx, err)
    except HostReadError as err:
        found = warn(f"cannot be determined: {err}", "look at that file: the kernel "
                     "normally writes it in the form kvmrt expects")
    except libvirt.libvirtError as err:
        found = warn(f"a libvirt call failed: {str(err).splitlines()[0]}",
                     "look at libvirtd's log (journalctl -u libvirtd)")
    return [Result(check.id, found)]


def _denied(ctx: Context, err: PermissionError) -> Finding:
    path = err.filename or "a file"
    if not ctx.machine.is_root:
        return skipped(f"uid {ctx.machine.euid} may not read {path}",
                       "run kvmrt-validate-host as root for this check")
    return warn(f"root may not read {path}", "look for SELinux or AppArmor denials")
