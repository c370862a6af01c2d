"""The one way kvmrt reaches libvirt: a connection opened from a URI.

Without a URI, ``LIBVIRT_DEFAULT_URI`` applies, else ``qemu:///system``
(SPEC 5). Failures to connect become
:class:`LibvirtUnreachable` with a line that says what to do.
"""

from __future__ import annotations

import os

import libvirt

from kvmrt.errors import KvmrtError

DEFAULT_URI = "qemu:///system"


class LibvirtError(KvmrtError):
    """A libvirt call failed; ``reason`` is libvirt's own message."""

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class LibvirtUnreachable(LibvirtError):
    """No connection could be opened to ``uri``."""

    def __init__(self, uri: str, reason: str, hint: str) -> None:
        self.uri = uri
        self.hint = hint
        super().__init__(f"cannot connect to libvirt at {uri}", f"{reason} ({hint})")


def _quiet(_ctx, _err) -> None:
    """libvirt prints every error on stderr by default; kvmrt reports them itself."""


libvirt.registerErrorHandler(_quiet, None)


def default_uri() -> str:
    return os.environ.get("LIBVIRT_DEFAULT_URI") or DEFAULT_URI


def connect(uri: str | None = None, *, read_only: bool = False) -> libvirt.virConnect:
    """Open a connection to ``uri`` (libvirt's default when None).

    ``read_only`` is for the tools that only look: any user may open one
    to qemu:///system, and it never sees the domains' passwords.
    """
    target = uri or default_uri()
    try:
        return libvirt.openReadOnly(target) if read_only else libvirt.open(target)
    except libvirt.libvirtError as exc:
        raise LibvirtUnreachable(target, _first_line(exc), _hint(exc)) from exc


def _hint(exc: libvirt.libvirtError) -> str:
    message = str(exc).lower()
    if "system bus" in message:   # libvirtd asks polkit over D-Bus whether a user may connect
        return ("libvirtd cannot ask polkit (no D-Bus system bus) whether this user may "
                "connect: run as root, or start D-Bus and polkit")
    if "no such file" in message or "connection refused" in message:
        return "is libvirtd running? start it with 'systemctl start libvirtd' or 'libvirtd -d'"
    if "permission denied" in message or "authentication" in message:
        return "run as root, or join the 'libvirt' group"
    if exc.get_error_code() == libvirt.VIR_ERR_NO_CONNECT or "no connection driver" in message:
        return "check the URI, e.g. qemu:///system"
    return "check the URI and that libvirtd is running"


def _first_line(exc: libvirt.libvirtError) -> str:
    return (str(exc).splitlines() or ["unknown libvirt error"])[0]
