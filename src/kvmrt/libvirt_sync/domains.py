"""libvirt's domains, as kvmrt needs them: looked up by UUID, their
persistent XML, autostart and state; define and rename.

A kvmrt VM is tied to its libvirt domain by UUID (the section header), so a
rename in either place never loses the link. libvirt errors become
:class:`LibvirtError` naming the domain.

The XML is read with its secure parts (``VIR_DOMAIN_XML_SECURE``: the
``passwd`` of ``<graphics>``), as ``virsh edit`` and virt-manager do, so
that a define from it keeps them. A connection that may not read them (a
read-only one, or an ACL without ``read_secure``) gets the XML without them
and a :class:`Domain` whose ``secure`` is False: kvmrt compares such XML
but never defines from it (:func:`kvmrt.libvirt_sync.sync.apply_change`).
"""

from __future__ import annotations

from dataclasses import dataclass

import libvirt

from kvmrt.libvirt_sync.connection import LibvirtError

# libvirt's words for domain states, as virsh prints them.
STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state",
    libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "idle",
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "in shutdown",
    libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "pmsuspended",
}

# The XML a define must start from: the persistent definition, passwords included.
XML_SECURE_INACTIVE = libvirt.VIR_DOMAIN_XML_SECURE | libvirt.VIR_DOMAIN_XML_INACTIVE
# What libvirt answers a read-only connection, and an ACL without read_secure.
SECRETS_DENIED = (libvirt.VIR_ERR_OPERATION_DENIED, libvirt.VIR_ERR_ACCESS_DENIED)


@dataclass(frozen=True)
class Domain:
    """A snapshot of one libvirt domain."""

    uuid: str
    name: str
    xml: str          # persistent (inactive) XML
    autostart: bool
    state: str
    persistent: bool
    secure: bool = True   # the XML has its secure parts (passwords)

    @property
    def shut_off(self) -> bool:
        return self.state == "shut off"


@dataclass(frozen=True)
class Runtime:
    """What a running domain runs with now (libvirt's public API, readable
    on a read-only connection): its online vCPUs and live pins."""

    vcpus: int
    vcpu_pins: tuple[frozenset[int], ...]
    emulator_pin: frozenset[int]
    iothread_pins: dict[int, frozenset[int]]


class Domains:
    """The domains of one libvirt connection."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn = conn

    def all(self) -> list[Domain]:
        """Every persistent domain, sorted by name."""
        found = [self._snapshot(d) for d in self._call("list domains", self.conn.listAllDomains)]
        return sorted((d for d in found if d.persistent), key=lambda d: d.name)

    def by_uuid(self, uuid: str) -> Domain | None:
        dom = self._lookup(uuid)
        return self._snapshot(dom) if dom is not None else None

    def by_name(self, name: str) -> Domain | None:
        try:
            return self._snapshot(self.conn.lookupByName(name))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise LibvirtError(f"domain {name}", str(exc)) from exc

    def define(self, xml: str, name: str) -> Domain:
        dom = self._call(f"define domain {name}", self.conn.defineXML, xml)
        return self._snapshot(dom)

    def rename(self, uuid: str, new_name: str) -> None:
        dom = self._must(uuid)
        self._call(f"rename domain {dom.name()} to {new_name}", dom.rename, new_name, 0)

    def start(self, uuid: str) -> None:
        self._call(f"start domain {self._name(uuid)}", self._must(uuid).create)

    def shutdown(self, uuid: str) -> None:
        """Ask the guest to shut down (ACPI); it may take its time or ignore it."""
        self._call(f"shut down domain {self._name(uuid)}", self._must(uuid).shutdown)

    def destroy(self, uuid: str) -> None:
        """Power the domain off at once."""
        self._call(f"power off domain {self._name(uuid)}", self._must(uuid).destroy)

    def pin_live(self, uuid: str, vcpu_cpus: tuple[frozenset[int], ...],
                 emulator_cpus: frozenset[int]) -> None:
        """Pin a running domain's vCPU and emulator threads now (the XML's
        pins apply only at its next start)."""
        dom = self._must(uuid)
        wanted = frozenset().union(emulator_cpus, *vcpu_cpus)
        ncpus = max(self._call("host CPU map", self.conn.getCPUMap)[0],
                    max(wanted, default=-1) + 1)
        live = libvirt.VIR_DOMAIN_AFFECT_CURRENT   # = live, as the domain runs
        for vcpu, cpus in enumerate(vcpu_cpus):
            if cpus:
                self._call(f"pin vCPU {vcpu} of {dom.name()}", dom.pinVcpuFlags, vcpu,
                           _cpumap(cpus, ncpus), live)
        if emulator_cpus:
            self._call(f"pin the emulator of {dom.name()}", dom.pinEmulator,
                       _cpumap(emulator_cpus, ncpus), live)

    def resume(self, uuid: str) -> None:
        """Let a paused domain run again."""
        self._call(f"resume domain {self._name(uuid)}", self._must(uuid).resume)

    def runtime(self, uuid: str) -> Runtime | None:
        """The vCPU count and pins a running domain runs with; None when it
        does not run."""
        dom = self._lookup(uuid)
        if dom is None or not self._call(f"state of domain {uuid}", dom.isActive):
            return None
        name, live = dom.name(), libvirt.VIR_DOMAIN_AFFECT_LIVE
        info, _maps = self._call(f"vCPUs of {name}", dom.vcpus)
        pins = self._call(f"vCPU pins of {name}", dom.vcpuPinInfo, live)
        emulator = self._call(f"emulator pin of {name}", dom.emulatorPinInfo, live)
        iothreads = self._call(f"iothreads of {name}", dom.ioThreadInfo, live)
        return Runtime(vcpus=len(info), vcpu_pins=tuple(_cpus(m) for m in pins),
                       emulator_pin=_cpus(emulator),
                       iothread_pins={n: _cpus(m) for n, m in iothreads})

    def state(self, uuid: str) -> str:
        dom = self._lookup(uuid)
        if dom is None:
            return "undefined"
        state, _reason = self._call(f"state of domain {dom.name()}", dom.state)
        return STATES.get(state, "unknown")

    def running_uuids(self) -> set[str]:
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE
        return {d.UUIDString().lower()
                for d in self._call("list running domains", self.conn.listAllDomains, flags)}

    def _must(self, uuid: str) -> libvirt.virDomain:
        dom = self._lookup(uuid)
        if dom is None:
            raise LibvirtError(f"domain {uuid}", "no longer defined in libvirt")
        return dom

    def _name(self, uuid: str) -> str:
        dom = self._lookup(uuid)
        return dom.name() if dom is not None else uuid

    def _lookup(self, uuid: str) -> libvirt.virDomain | None:
        try:
            return self.conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_INVALID_ARG):
                return None
            raise LibvirtError(f"domain {uuid}", str(exc)) from exc

    def _snapshot(self, dom: libvirt.virDomain) -> Domain:
        name = dom.name()
        state, _reason = self._call(f"state of domain {name}", dom.state)
        xml, secure = self._persistent_xml(dom, name)
        return Domain(
            uuid=dom.UUIDString(), name=name, xml=xml,
            autostart=bool(self._call(f"autostart of domain {name}", dom.autostart)),
            state=STATES.get(state, "unknown"), persistent=bool(dom.isPersistent()),
            secure=secure)

    def _persistent_xml(self, dom: libvirt.virDomain, name: str) -> tuple[str, bool]:
        """The persistent XML with its secure parts; without them (False)
        where libvirt denies them to this connection."""
        what = f"XML of domain {name}"
        try:
            return dom.XMLDesc(XML_SECURE_INACTIVE), True
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in SECRETS_DENIED:
                raise LibvirtError(what, _first_line(exc)) from exc
        return self._call(what, dom.XMLDesc, libvirt.VIR_DOMAIN_XML_INACTIVE), False

    @staticmethod
    def _call(what: str, fn, *args):
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise LibvirtError(what, _first_line(exc)) from exc


def _first_line(exc: libvirt.libvirtError) -> str:
    return str(exc).splitlines()[0] if str(exc) else "failed"


def _cpumap(cpus: frozenset[int], ncpus: int) -> tuple[bool, ...]:
    return tuple(c in cpus for c in range(ncpus))


def _cpus(cpumap) -> frozenset[int]:
    return frozenset(c for c, on in enumerate(cpumap) if on)
