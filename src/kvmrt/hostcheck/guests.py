"""Who else starts and stops the VMs kvmrt manages: libvirt-guests and
libvirt's own autostart flag.

Both act outside kvmrt-boot and kvmrt-shutdown: a VM they start runs
untuned (and makes ``kvmrt-boot --clean`` refuse), a VM libvirt-guests
suspends (managedsave) at host shutdown comes back, untuned, at the next
boot. Reads ``/etc/default/libvirt-guests`` (``/etc/sysconfig/libvirt-guests``
on RHEL), whether ``libvirt-guests.service`` is enabled (its
``multi-user.target.wants`` link) and each managed VM's ``autostart()``.
Only with a config: without managed VMs neither matters.
"""

from __future__ import annotations

import os
import shlex

import libvirt

from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, skipped, warn
from kvmrt.libvirt_sync.connection import LibvirtUnreachable

GUESTS_FILES = ("etc/default/libvirt-guests", "etc/sysconfig/libvirt-guests")
GUESTS_WANTS = "etc/systemd/system/multi-user.target.wants/libvirt-guests.service"
# libvirt-guests(8): by default it suspends running guests at host
# shutdown and restores them at the next boot.
DEFAULTS = {"ON_BOOT": "start", "ON_SHUTDOWN": "suspend"}
WANTED = {"ON_BOOT": "ignore", "ON_SHUTDOWN": "shutdown"}


def parse_settings(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a shell variables file (quotes removed,
    comments and other lines ignored)."""
    settings = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:   # an unbalanced quote: libvirt-guests would fail on it too
            continue
        if len(words) == 1 and "=" in words[0]:
            key, _, value = words[0].partition("=")
            settings[key] = value
    return settings


def _managed(ctx: Context) -> list:
    return ctx.config.active() if ctx.config is not None else []


@check("libvirt-guests")
def libvirt_guests(ctx: Context) -> Finding | None:
    """libvirt-guests neither starts managed VMs at boot nor suspends them at shutdown."""
    if not _managed(ctx):
        return None
    if not os.path.lexists(ctx.fs.path(GUESTS_WANTS)):   # a dangling link counts
        return ok("libvirt-guests.service is not enabled")
    path = next((p for p in GUESTS_FILES if ctx.fs.exists(p)), GUESTS_FILES[0])
    settings = {**DEFAULTS, **parse_settings(ctx.fs.read(path, default=""))}
    problems = []
    if settings["ON_BOOT"] == "start":
        problems.append("ON_BOOT=start starts the VMs that ran at the last shutdown, "
                        "untuned, before kvmrt-boot")
    if settings["ON_SHUTDOWN"] == "suspend":
        problems.append("ON_SHUTDOWN=suspend saves running VMs (managedsave) instead of "
                        "shutting them down, and they resume untuned")
    if not problems:
        return ok(f"libvirt-guests leaves the managed VMs to kvmrt (/{path})")
    lines = " and ".join(f"{k}={v}" for k, v in WANTED.items()
                         if settings[k] == DEFAULTS[k])
    return warn("libvirt-guests.service is enabled and " + "; ".join(problems),
                f"set {lines} in /{path} (or systemctl disable libvirt-guests.service)")


@check("libvirt-autostart")
def libvirt_autostart(ctx: Context) -> Finding | None:
    """No managed VM has libvirt's own autostart flag (libvirtd would start it untuned)."""
    vms = _managed(ctx)
    if not vms:
        return None
    try:
        conn = ctx.libvirt.connection()
    except LibvirtUnreachable:
        return skipped("libvirt is unreachable (see libvirt)")
    flagged = [name for name in (_autostarted(conn, vm.uuid) for vm in vms) if name]
    if not flagged:
        return ok("no managed VM has libvirt's autostart flag (kvmrt-boot starts them)")
    return warn(f"libvirtd starts {', '.join(flagged)} by itself when it starts "
                "(libvirt's autostart flag), untuned, before kvmrt-boot",
                "; ".join(f"virsh autostart --disable {shlex.quote(n)}" for n in flagged)
                + " (kvmrt's autostart = true boots it tuned)")


def _autostarted(conn: libvirt.virConnect, uuid: str) -> str | None:
    """The domain's name when its autostart flag is set; None otherwise or undefined."""
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as err:
        if err.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    return dom.name() if dom.autostart() else None
