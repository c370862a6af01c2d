"""libvirt's runtime status of a running QEMU domain:
``run/libvirt/qemu/NAME.xml`` (and ``NAME.pid``).

libvirtd writes the status file while the domain runs and removes it when
the domain stops. Its root is ``<domstatus state='running' pid='QEMU PID'>``;
``<vcpus><vcpu id='0' pid='TID'/>...`` maps each online vCPU to its
``CPU n/KVM`` thread. This is how kvmrt finds a VM's threads (SPEC 3: by
QEMU PID, never by thread name across the host).

The status file is root's alone (mode 0600). Without it (an ordinary user
runs kvmrt-stat) the QEMU process is the one whose command line carries
``-uuid UUID`` (``/proc/PID/cmdline`` is readable by all), and its vCPU
threads are the ones QEMU names ``CPU N/KVM`` (``CPU N/TCG`` without KVM):
libvirt always starts QEMU with ``debug-threads=on``. Only that process is
looked at, never thread names across the host.

libvirt (9.0 here) keeps no iothread thread ids in the status file; it
asks QEMU with ``query-iothreads``. An ``<iothreads><iothread id pid/>``
element is read if a libvirt writes one; otherwise the ids come from the
QEMU process's own threads, which QEMU names ``IO iothread<id>`` after the
objects libvirt creates (``-object iothread,id=iothread<id>``, threads
named by ``-name ...,debug-threads=on``). Only that process is looked at.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from kvmrt.errors import HostReadError
from kvmrt.host.fs import HostFS, host_read_errors
from kvmrt.host.tasks import read_tasks

STATUS_DIR = "run/libvirt/qemu"
_IOTHREAD_COMM = re.compile(r"IO iothread(\d+)\Z")
_VCPU_COMM = re.compile(r"CPU (\d+)/\w+\Z")


@dataclass(frozen=True)
class QemuStatus:
    """QEMU's PID and thread ids: vCPU id -> tid, iothread id -> tid."""

    pid: int
    vcpus: dict[int, int]
    iothreads: dict[int, int]


def read_qemu_status(fs: HostFS, domain_name: str, uuid: str | None = None) -> QemuStatus | None:
    """The status of running domain ``domain_name``, or ``None`` when it is not
    running (no status file, or its QEMU process is gone).

    When the status file cannot be read (it is root's) and ``uuid`` is
    given, the QEMU process is found by its ``-uuid`` argument instead.
    Raises :class:`HostReadError` naming the file when it does not parse.
    """
    if not isinstance(domain_name, str) or "/" in domain_name or domain_name in ("", ".", ".."):
        raise HostReadError(STATUS_DIR, f"{domain_name!r} is not a libvirt domain name; "
                            "no status file is built from it (fix the VM's name)")
    rel = f"{STATUS_DIR}/{domain_name}.xml"
    try:
        with host_read_errors():
            text = fs.read(rel, default=None)
    except HostReadError as err:
        if uuid is None or not isinstance(err.__cause__, PermissionError):
            raise
        return _by_uuid(fs, uuid)
    if text is None:
        return None
    try:
        return _status(fs, etree.fromstring(text.encode()))
    except (etree.XMLSyntaxError, TypeError, ValueError) as err:
        raise HostReadError(str(fs.path(rel)), f"not a libvirt status file: {err}") from err


def _by_uuid(fs: HostFS, uuid: str) -> QemuStatus | None:
    """The QEMU process started with ``-uuid UUID``, its vCPUs by their names."""
    pid = next((pid for pid in _pids(fs) if _has_uuid(fs, pid, uuid.lower())), None)
    if pid is None:
        return None
    vcpus, iothreads = {}, {}
    for task in read_tasks(fs, [pid]):
        vcpu, io = _VCPU_COMM.match(task.comm), _IOTHREAD_COMM.match(task.comm)
        if vcpu and not (task.kernel or task.worker):
            vcpus[int(vcpu.group(1))] = task.tid
        elif io:
            iothreads[int(io.group(1))] = task.tid
    return QemuStatus(pid=pid, vcpus=dict(sorted(vcpus.items())), iothreads=iothreads)


def _pids(fs: HostFS) -> list[int]:
    return sorted(int(n) for n in fs.listdir("proc", default=[]) if n.isdigit())


def _has_uuid(fs: HostFS, pid: int, uuid: str) -> bool:
    try:
        args = fs.path(f"proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:   # gone, or not ours to read
        return False
    return any(a == b"-uuid" and b.decode(errors="replace").lower() == uuid
               for a, b in zip(args, args[1:]))


def _status(fs: HostFS, root: etree._Element) -> QemuStatus | None:
    if root.tag != "domstatus":
        raise ValueError(f"root element <{root.tag}>, not <domstatus>")
    pid = int(root.get("pid"))
    if not fs.is_dir(f"proc/{pid}"):
        return None
    vcpus = _ids(root, "vcpus/vcpu")
    iothreads = _ids(root, "iothreads/iothread") or _named_iothreads(fs, pid)
    return QemuStatus(pid=pid, vcpus=vcpus, iothreads=iothreads)


def _ids(root: etree._Element, path: str) -> dict[int, int]:
    """``{id: pid}`` of the elements at ``path`` (``<vcpu id='0' pid='1234'/>``)."""
    return {int(e.get("id")): int(e.get("pid")) for e in root.iterfind(path)}


def _named_iothreads(fs: HostFS, pid: int) -> dict[int, int]:
    """Iothread id -> tid from the QEMU process's ``IO iothread<id>`` threads."""
    found = {}
    for task in read_tasks(fs, [pid]):
        m = _IOTHREAD_COMM.match(task.comm)
        if m:
            found[int(m.group(1))] = task.tid
    return found
