"""The adapter for what a root directory cannot redirect.

Almost every host check reads files through :class:`HostFS`, so a fixture
tree stands in for ``/``. Three things belong to the running process or
to a daemon instead, and sit here:

- the process's privileges (``geteuid``) and its ``RLIMIT_MEMLOCK``, read
  from ``proc/self/limits`` below the root (on ``/`` the kernel's own view
  of this process, the values ``getrlimit`` returns);
- opening ``dev/kvm`` read-write below the root and asking it its KVM API
  version (a file in a tree is no device: it has no version);
- libvirt, reached through :func:`kvmrt.libvirt_sync.connection.connect`.

Expected failures are named outcomes, never bare errno numbers.
"""

from __future__ import annotations

import enum
import fcntl
import os
from dataclasses import dataclass

import libvirt
from lxml import etree

from kvmrt.errors import KvmrtError
from kvmrt.host.fs import HostFS
from kvmrt.hostcheck.kernel import parse_memlock
from kvmrt.libvirt_sync.connection import (LibvirtError, LibvirtUnreachable, connect,
                                           default_uri)

KVM_DEVICE = "dev/kvm"
KVM_GET_API_VERSION = 0xAE00  # _IO(KVMIO, 0x00)


class Undetermined(KvmrtError):
    """A fact that this host does not expose. ``reason`` says why and
    ``remedy`` how to make it visible; the runner reports a WARN."""

    def __init__(self, reason: str, remedy: str = "") -> None:
        self.reason = reason
        self.remedy = remedy
        super().__init__(reason)


class KvmState(enum.Enum):
    USABLE = "usable"
    MISSING = "missing"
    DENIED = "denied"
    BROKEN = "broken"


@dataclass(frozen=True)
class KvmAccess:
    state: KvmState
    path: str
    detail: str = ""
    api_version: int | None = None


class Machine:
    """The running process as the checks see it, beside a :class:`HostFS`."""

    def __init__(self, fs: HostFS, *, euid: int | None = None) -> None:
        self.fs = fs
        self.euid = os.geteuid() if euid is None else euid

    @property
    def is_root(self) -> bool:
        return self.euid == 0

    def memlock_limit(self) -> int | None:
        """The soft RLIMIT_MEMLOCK in bytes; ``None`` means unlimited."""
        text = self.fs.read("proc/self/limits", default=None)
        if text is None:
            raise Undetermined(f"/proc/self/limits is missing below {self.fs.root}",
                               f"mount procfs below {self.fs.root}, or capture "
                               "/proc/self/limits too")
        try:
            return parse_memlock(text)
        except ValueError as err:
            raise Undetermined(f"{self.fs.path('proc/self/limits')}: {err}") from err

    def open_kvm(self) -> KvmAccess:
        """Open ``dev/kvm`` read-write, as QEMU does, and close it again."""
        path = str(self.fs.path(KVM_DEVICE))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return KvmAccess(KvmState.MISSING, path)
        except PermissionError as err:
            return KvmAccess(KvmState.DENIED, path, err.strerror or "permission denied")
        except OSError as err:  # ENXIO/ENODEV: a device node without its module
            return KvmAccess(KvmState.BROKEN, path, err.strerror or str(err))
        try:
            return KvmAccess(KvmState.USABLE, path, api_version=self._api_version(fd))
        finally:
            os.close(fd)

    def _api_version(self, fd: int) -> int | None:
        try:
            return fcntl.ioctl(fd, KVM_GET_API_VERSION)
        except OSError:  # not a KVM device (ENOTTY: a file in a tree): no version
            return None


@dataclass(frozen=True)
class DomainMemory:
    name: str
    memory: int  # bytes
    active: bool
    hugepages: bool


class LibvirtSession:
    """One lazily opened libvirt connection, shared by the libvirt checks."""

    def __init__(self, uri: str | None) -> None:
        self.uri = uri or default_uri()
        self._conn: libvirt.virConnect | None = None
        self._error: LibvirtUnreachable | None = None

    def connection(self) -> libvirt.virConnect:
        """The connection; raises :class:`LibvirtUnreachable` (every time) if none."""
        if self._conn is None and self._error is None:
            try:
                self._conn = connect(self.uri)
            except LibvirtUnreachable as err:
                self._error = err
        if self._error is not None:
            raise self._error
        return self._conn

    def domain_memory(self, uuid: str, name: str | None) -> DomainMemory | None:
        """The memory of the domain with ``uuid`` (else ``name``); None if undefined."""
        conn = self.connection()
        try:
            dom = _lookup(conn, uuid, name)
            if dom is None:
                return None
            xml = etree.fromstring(dom.XMLDesc(0).encode())
            return DomainMemory(dom.name(), dom.maxMemory() * 1024, bool(dom.isActive()),
                                xml.find("memoryBacking/hugepages") is not None)
        except libvirt.libvirtError as err:
            raise LibvirtError(f"domain {name or uuid}", str(err)) from err

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _lookup(conn: libvirt.virConnect, uuid: str, name: str | None) -> libvirt.virDomain | None:
    for lookup, key in ((conn.lookupByUUIDString, uuid), (conn.lookupByName, name)):
        if not key:
            continue
        try:
            return lookup(key)
        except libvirt.libvirtError as err:
            if err.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise
    return None
