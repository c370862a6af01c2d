"""libvirt: the daemon answers at the URI, and its QEMU driver can use KVM.

Uses :func:`kvmrt.libvirt_sync.connection.connect` (``-c URI``, default
libvirt's default), ``getLibVersion()``, ``getType()``/``getVersion()`` and
the ``<guest>`` entries of ``getCapabilities()`` (emulator binary, domain
types) for the host architecture.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, fail, ok, skipped, warn
from kvmrt.libvirt_sync.connection import LibvirtUnreachable


def version(number: int) -> str:
    """libvirt's packed ``major * 1e6 + minor * 1e3 + micro`` as ``9.0.0``."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def reason(err: LibvirtUnreachable) -> str:
    """libvirt's own words, without the hint (the remedy gives it)."""
    return err.reason.removesuffix(f" ({err.hint})")


def _refused(err: LibvirtUnreachable) -> bool:
    """The daemon is there but will not take this user: permission denied,
    authentication (polkit, which needs the system bus) failed. A missing
    socket means no daemon, whoever asks."""
    text = reason(err).lower()
    if "failed to connect socket" in text:
        return "permission denied" in text
    return any(w in text for w in ("permission denied", "authentication", "polkit",
                                   "system bus"))


@check("libvirt")
def libvirt_daemon(ctx: Context) -> Finding:
    """The libvirt daemon answers at the URI; its version and hypervisor."""
    try:
        conn = ctx.libvirt.connection()
    except LibvirtUnreachable as err:
        if _refused(err) and not ctx.machine.is_root:
            return skipped(f"uid {ctx.machine.euid} may not connect to {err.uri}: "
                           f"{reason(err)}", "run kvmrt-validate-host as root (or join the "
                           "'libvirt' group) to check libvirt")
        return fail(f"libvirt is unreachable at {err.uri}: {reason(err)}", err.hint)
    hv = conn.getType()
    return ok(f"libvirt {version(conn.getLibVersion())} answers at {ctx.libvirt.uri} "
              f"({hv} driver, version {version(conn.getVersion())})")


@dataclass(frozen=True)
class Guest:
    arch: str
    emulator: str | None
    domain_types: frozenset[str]


def guests(caps_xml: str) -> tuple[str | None, list[Guest]]:
    """The host architecture and the hvm guests of a capabilities document."""
    root = etree.fromstring(caps_xml.encode())
    host_arch = root.findtext("host/cpu/arch")
    found = []
    for guest in root.iterfind("guest"):
        if guest.findtext("os_type") != "hvm":
            continue
        arch = guest.find("arch")
        found.append(Guest(arch.get("name"), arch.findtext("emulator"),
                           frozenset(d.get("type") for d in arch.iterfind("domain"))))
    return host_arch, found


@check("qemu")
def qemu(ctx: Context) -> Finding:
    """The QEMU binary libvirt uses for this architecture, and KVM acceleration."""
    try:
        conn = ctx.libvirt.connection()
    except LibvirtUnreachable:
        return skipped("libvirt is unreachable (see libvirt)")
    if conn.getType() != "QEMU":
        return warn(f"{ctx.libvirt.uri} is libvirt's {conn.getType()} driver, not QEMU",
                    "connect to the QEMU driver: -c qemu:///system")
    arch, found = guests(conn.getCapabilities())
    native = [g for g in found if g.arch == arch]
    if not native:
        return fail(f"libvirt knows no QEMU binary for {arch}",
                    f"install QEMU for {arch} (Debian/Ubuntu: qemu-system-x86) and "
                    "restart libvirtd")
    guest = native[0]
    qemu_version = version(conn.getVersion())
    if "kvm" not in guest.domain_types:
        return fail(f"QEMU {qemu_version} ({guest.emulator}) can only emulate {arch}: "
                    "libvirt sees no KVM", "make /dev/kvm usable (see kvm), then restart "
                    "libvirtd so that it probes QEMU again")
    return ok(f"QEMU {qemu_version} ({guest.emulator}) runs {arch} guests with KVM")
