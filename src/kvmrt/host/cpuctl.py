"""CPU hotplug: ``sys/devices/system/cpu/cpuN/online``.

A CPU the kernel cannot unplug has no ``online`` file (cpu0 on most x86
machines); the global ``online`` list is then the truth. Writing ``0``
fails with EBUSY for the last online CPU or one the kernel needs, EPERM
while hotplug is disabled, EINVAL on some platforms: each is an
:class:`OfflineRefused`, found by the caller before anything else changed.
With cgroup v1, a CPU going offline also leaves every non-root cpuset (see
:mod:`kvmrt.host.cgroups`).
"""

from __future__ import annotations

import errno

from kvmrt.errors import HostReadError, HostWriteError, OfflineRefused
from kvmrt.host.fs import HostFS, host_read_errors

CPU_DIR = "sys/devices/system/cpu"   # the one name of the sysfs CPU directory
_REFUSALS = frozenset({errno.EBUSY, errno.EPERM, errno.EINVAL})


def online_file(cpu: int) -> str:
    return f"{CPU_DIR}/cpu{cpu}/online"


def is_online(fs: HostFS, cpu: int, *, online_list: frozenset[int] | None = None) -> bool:
    """``cpuN/online``, or for a CPU without one the global ``online`` list
    (``online_list``, when the caller has read it already)."""
    with host_read_errors():
        state = fs.read(online_file(cpu), default=None)
        if state is None:
            if online_list is None:
                online_list = fs.read_cpulist(f"{CPU_DIR}/online")
            return cpu in online_list
    if state not in ("0", "1"):
        raise HostReadError(str(fs.path(online_file(cpu))), f"not 0 or 1: {state!r}")
    return state == "1"


def set_online(fs: HostFS, cpu: int, online: bool) -> None:
    """Bring ``cpu`` online or take it offline, and check that it happened.

    Raises :class:`OfflineRefused` when the CPU has no ``online`` file (for
    ``online=True`` that is only an error if it is offline) or the kernel
    refuses; :class:`HostWriteError` for other failures and when the file
    reads back otherwise.
    """
    rel = online_file(cpu)
    if not fs.exists(rel):
        if not online:
            raise OfflineRefused(cpu, f"the kernel cannot take it offline (no {rel})")
        if not is_online(fs, cpu):
            raise OfflineRefused(cpu, f"it is offline and has no {rel} to bring it back")
        return
    try:
        fs.write(rel, "1" if online else "0")
    except OSError as err:
        if err.errno in _REFUSALS:
            verb = "bring it online" if online else "take it offline"
            raise OfflineRefused(cpu, f"the kernel refuses to {verb}: {err.strerror}") from err
        raise HostWriteError(str(fs.path(rel)), err.strerror or str(err)) from err
    with host_read_errors():
        state = fs.read(rel)
    if state != str(int(online)):
        raise HostWriteError(str(fs.path(rel)), f"wrote {int(online)}, reads back {state!r}")
