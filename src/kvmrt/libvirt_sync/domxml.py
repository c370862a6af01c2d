"""kvmrt's part of a libvirt domain XML: set it, read it back, compare it.

Pure functions, strings in and out:

- :func:`apply_config` sets what kvmrt owns from a VM's placement and
  leaves the rest of the XML as it was, comments and layout included;
- :func:`read_facts` takes what ``kvmrt-import`` and ``sync -r`` need;
- :func:`owned_differences` says what libvirt lost or changed of kvmrt's
  part after a define, tolerant of libvirt's own normalisations;
  :func:`owned_changes` is the same comparison as data (what a sync would
  remove or change, what an import cannot express).

What kvmrt owns: ``name``, ``title``, ``description``; the ``<vcpu>``
count; ``<cpu><topology>``; the pins of ``<cputune>``
(:mod:`~kvmrt.libvirt_sync.domxml_cputune`); ``<numatune><memory>``;
``<memoryBacking><locked/>``; ``<features><kvm><hidden>``; and the PCI
``<hostdev>`` elements (USB, SCSI and mdev hostdevs are not touched).
A value that already means what kvmrt wants keeps its spelling
(``nodeset='1,2'`` is not rewritten to ``1-2``), so applying twice changes
nothing. Containers kvmrt empties (``cputune``, ``numatune``,
``memoryBacking``, ``kvm``, ``features``) are removed.

Malformed XML, a root other than ``<domain>`` or an unreadable owned value
raises :class:`~kvmrt.errors.DomainXmlError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from kvmrt.sets import PciAddress, PciSet, format_ids
from kvmrt.errors import DomainXmlError
from kvmrt.libvirt_sync import domxml_channel, domxml_tree as tree
from kvmrt.libvirt_sync.domxml_cputune import (
    CPUTUNE_ORDER, read_pins, set_pins, wanted_pins,
)
from kvmrt.libvirt_sync.domxml_values import (
    cpuset_of, parse_cpuset, pci_address_attrib, pci_address_of, uint_of,
)
from kvmrt.placement import Placement

__all__ = ["DomainFacts", "apply_config", "read_facts", "owned_differences", "owned_changes"]

# libvirt's dumpxml order of the children of each element kvmrt creates in
# (virDomainDefFormatInternal and the formatters it calls).
TOP_ORDER = (
    "name", "uuid", "genid", "title", "description", "metadata", "maxMemory", "memory",
    "currentMemory", "blkiotune", "memtune", "memoryBacking", "vcpu", "vcpus", "iothreads",
    "iothreadids", "defaultiothread", "cputune", "numatune", "resource", "sysinfo",
    "bootloader", "bootloader_args", "os", "idmap", "features", "cpu", "clock",
    "on_poweroff", "on_reboot", "on_crash", "on_lockfailure", "pm", "perf", "devices",
    "seclabel", "keywrap", "launchSecurity",
)
FEATURES_ORDER = (
    "acpi", "apic", "pae", "hap", "viridian", "privnet", "hyperv", "kvm", "xen",
    "pvspinlock", "capabilities", "pmu", "vmport", "gic", "smm", "ioapic", "hpt",
    "vmcoreinfo", "htm", "nested-hv", "msrs", "ccf-assist", "cfpc", "sbbc", "ibs", "tcg",
    "async-teardown", "ras",
)
DEVICES_ORDER = (
    "emulator", "disk", "controller", "lease", "filesystem", "interface", "smartcard",
    "serial", "parallel", "console", "channel", "input", "tpm", "graphics", "sound",
    "audio", "video", "hostdev", "redirdev", "redirfilter", "hub", "watchdog",
    "memballoon", "rng", "nvram", "panic", "shmem", "memory", "iommu", "vsock", "crypto",
)
ORDERS = {
    "domain": TOP_ORDER,
    "features": FEATURES_ORDER,
    "kvm": ("hidden", "hint-dedicated", "poll-control", "pv-ipi", "dirty-ring"),
    "cpu": ("model", "vendor", "topology", "cache", "maxphysaddr", "feature", "numa"),
    "numatune": ("memory", "memnode"),
    "memoryBacking": ("hugepages", "nosharepages", "locked", "source", "access",
                      "allocation", "discard"),
    "cputune": CPUTUNE_ORDER,
    "devices": DEVICES_ORDER,
}
# Containers that go when kvmrt removes the last thing in them.
PRUNE = frozenset({"cputune", "numatune", "memoryBacking", "kvm", "features"})


@dataclass(frozen=True)
class DomainFacts:
    """What kvmrt takes from libvirt into the config (import, ``sync -r``).

    ``pinned_cpus`` is the union of the CPUs of every ``<vcpupin>``,
    ``<emulatorpin>``, ``<iothreadpin>`` and of ``<vcpu cpuset>``: the
    cpuset that makes kvmrt pin to the same CPUs.
    ``cpu_topology`` is (sockets, cores per socket, threads) with libvirt's
    dies and clusters folded into the cores; None without ``<topology>``.
    """

    uuid: str | None
    name: str
    title: str
    description: str
    nr_vcpus: int
    cpu_topology: tuple[int, int, int] | None
    pcidevs: PciSet
    pinned_cpus: frozenset[int] = frozenset()   # every pin's CPUs and <vcpu cpuset>
    numatune: frozenset[int] | None = None      # <numatune><memory nodeset>
    locked: bool = False                        # <memoryBacking><locked/>
    kvm_hidden: bool = False                    # <features><kvm><hidden state='on'/>
    guest_services: bool = False                # kvmrt's <channel> (org.kvmrt.gs.0)


# -- apply ----------------------------------------------------------------------
def apply_config(xml: str, p: Placement) -> str:
    """The domain XML with everything kvmrt owns set from the VM and its
    placement; the rest unchanged."""
    doc = tree.parse_domain(xml)
    domain, vm = doc.root, p.vm
    _set_text_child(domain, "name", vm.name, optional=False)
    _set_text_child(domain, "title", vm.title, optional=True)
    _set_text_child(domain, "description", vm.description, optional=True)
    _set_vcpu(domain, p.nr_vcpus)
    pins = wanted_pins(domain, p.vcpu_cpus, p.emulator_cpus)
    set_pins(domain, pins, order=TOP_ORDER, prune=PRUNE)
    _set_numatune(domain, p.numatune)
    _set_flag(domain, ("memoryBacking", "locked"), on=p.rt_memory)
    _set_flag(domain, ("features", "kvm", "hidden"), on=bool(vm.hide_kvm), state="on")
    _set_topology(domain, p.cpu_topology)
    _set_hostdevs(domain, vm.pcidevs)
    domxml_channel.set_channel(domain, vm.uuid, on=bool(vm.guest_services),
                               devices_order=DEVICES_ORDER, top_order=TOP_ORDER)
    return doc.serialize()


def _ensure_path(domain: etree._Element, path: tuple[str, ...]) -> etree._Element:
    el = domain
    for tag in path:
        el = tree.ensure_child(el, tag, ORDERS[el.tag])
    return el


def _remove_path(domain: etree._Element, path: tuple[str, ...]) -> None:
    el = domain.find("/".join(path))
    if el is not None:
        tree.remove(el, PRUNE)


def _set_text_child(domain: etree._Element, tag: str, text: str | None, *,
                    optional: bool) -> None:
    """Set the text of ``<tag>``; an empty optional one is removed."""
    if optional and not text:
        _remove_path(domain, (tag,))
        return
    tree.set_text(_ensure_path(domain, (tag,)), text or "")


def _set_vcpu(domain: etree._Element, count: int) -> None:
    vcpu = tree.ensure_child(domain, "vcpu", TOP_ORDER, {"placement": "static"})
    if (vcpu.text or "").strip() != str(count):
        vcpu.text = str(count)
    current = vcpu.get("current")
    if current is not None and (not current.strip().isdigit() or int(current) > count):
        tree.drop_attr(vcpu, "current")
    # <vcpu cpuset=...> is a default pinning: kvmrt owns pinning (an empty
    # cpuset means not pinned at all), so it goes.
    if vcpu.get("cpuset") is not None:
        tree.drop_attr(vcpu, "cpuset")


def _set_numatune(domain: etree._Element, nodes: frozenset[int] | None) -> None:
    if nodes is None:
        if not _numad_placed(domain):
            _remove_path(domain, ("numatune", "memory"))
        return
    memory = _ensure_path(domain, ("numatune", "memory"))
    tree.set_attr(memory, "mode", "strict")
    if memory.get("placement") == "auto":  # libvirt refuses a nodeset with it
        tree.drop_attr(memory, "placement")
    if parse_cpuset(memory.get("nodeset") or "") != nodes:
        memory.set("nodeset", format_ids(nodes))


def _numad_placed(domain: etree._Element) -> bool:
    """``<numatune><memory placement='auto'/>`` (no nodeset) beside ``<vcpu
    placement='auto'>``: libvirt derives it from the vCPU placement and puts
    it back after every define that removes it, so kvmrt leaves it."""
    memory, vcpu = domain.find("numatune/memory"), domain.find("vcpu")
    return (memory is not None and memory.get("placement") == "auto"
            and memory.get("nodeset") is None
            and vcpu is not None and vcpu.get("placement") == "auto")


def _set_flag(domain: etree._Element, path: tuple[str, ...], *, on: bool,
              state: str | None = None) -> None:
    """``<…><flag/>`` (with ``state=``) present when ``on``, else removed."""
    if not on:
        _remove_path(domain, path)
        return
    el = _ensure_path(domain, path)
    if state is not None:
        tree.set_attr(el, "state", state)


def _set_topology(domain: etree._Element, topology: tuple[int, int, int]) -> None:
    topo = _ensure_path(domain, ("cpu", "topology"))
    for attr, value in zip(("sockets", "cores", "threads"), topology):
        tree.set_attr(topo, attr, str(value))
    for attr in ("dies", "clusters"):  # kvmrt's S,C,T multiply only with these at 1
        if attr in topo.attrib:
            tree.set_attr(topo, attr, "1")


def _set_hostdevs(domain: etree._Element, pcidevs: PciSet) -> None:
    """One PCI hostdev per address of ``pcidevs``; existing ones are kept
    exactly as they are, the others removed."""
    wanted, kept = set(pcidevs), set()
    for hostdev, address in _pci_hostdevs(domain):
        if address in wanted and address not in kept:
            kept.add(address)
        else:
            tree.remove(hostdev)
    missing = sorted(wanted - kept)
    if missing:
        devices = tree.ensure_child(domain, "devices", TOP_ORDER)
        for address in missing:
            tree.insert_child(devices, _new_hostdev(devices, address), DEVICES_ORDER)


def _pci_hostdevs(domain: etree._Element) -> list[tuple[etree._Element, PciAddress]]:
    found = []
    for hostdev in domain.iterfind("devices/hostdev"):
        if hostdev.get("mode", "subsystem") == "subsystem" and hostdev.get("type") == "pci":
            found.append((hostdev, pci_address_of(hostdev.find("source/address"), hostdev)))
    return found


def _new_hostdev(devices: etree._Element, address: PciAddress) -> etree._Element:
    hostdev = tree.new_element(devices, "hostdev",
                               {"mode": "subsystem", "type": "pci", "managed": "yes"})
    source = etree.SubElement(hostdev, "source")
    etree.SubElement(source, "address", pci_address_attrib(address))
    return hostdev


# -- read -----------------------------------------------------------------------
def read_facts(xml: str) -> DomainFacts:
    """What kvmrt takes from libvirt (import / ``sync -r``)."""
    domain = tree.parse_domain(xml).root
    name = domain.find("name")
    if name is None or not (name.text or "").strip():
        raise DomainXmlError("the domain has no <name>", domain.sourceline)
    vcpu = domain.find("vcpu")
    topology = _topology_of(domain)
    return DomainFacts(
        uuid=(domain.findtext("uuid") or "").strip() or None,
        name=name.text,
        title=domain.findtext("title") or "",
        description=domain.findtext("description") or "",
        nr_vcpus=uint_of(vcpu, vcpu.text, "count") if vcpu is not None else 1,
        cpu_topology=None if topology is None else (
            topology[0], topology[1] * topology[2] * topology[3], topology[4]),
        pcidevs=PciSet(address for _, address in _pci_hostdevs(domain)),
        pinned_cpus=_pinned_cpus(domain),
        numatune=_nodeset_of(domain.find("numatune/memory")),
        locked=domain.find("memoryBacking/locked") is not None,
        kvm_hidden=_hidden_state(domain) == "on",
        guest_services=domxml_channel.find_channel(domain) is not None,
    )


def _pinned_cpus(domain: etree._Element) -> frozenset[int]:
    cpus = frozenset().union(*read_pins(domain).values())
    vcpu = domain.find("vcpu")
    if vcpu is not None and vcpu.get("cpuset") is not None:
        cpus |= cpuset_of(vcpu, "cpuset")
    return cpus


def _nodeset_of(memory: etree._Element | None) -> frozenset[int] | None:
    if memory is None or memory.get("nodeset") is None:
        return None
    return cpuset_of(memory, "nodeset")


def _hidden_state(domain: etree._Element) -> str | None:
    hidden = domain.find("features/kvm/hidden")
    return None if hidden is None else hidden.get("state")


def _topology_of(domain: etree._Element) -> tuple[int, int, int, int, int] | None:
    """(sockets, dies, clusters, cores, threads); dies and clusters default to 1."""
    topo = domain.find("cpu/topology")
    if topo is None:
        return None
    values = []
    for attr in ("sockets", "dies", "clusters", "cores", "threads"):
        default = "1" if attr in ("dies", "clusters") else None
        values.append(uint_of(topo, topo.get(attr, default), attr))
    s, d, cl, c, t = values
    return s, d, cl, c, t


# -- compare --------------------------------------------------------------------
def owned_differences(wanted: str, actual: str) -> list[str]:
    """What kvmrt set in ``wanted`` that ``actual`` (libvirt's read-back
    after a define) lost or changed: kvmrt's part only, compared by meaning
    (sets as sets, numbers as numbers, libvirt's dies/clusters of 1 and a
    hostdev's guest address ignored)."""
    return [_difference(label, want, have)
            for label, want, have in owned_changes(wanted, actual)]


def owned_changes(before: str, after: str) -> list[tuple[str, str | None, str | None]]:
    """Each element of kvmrt's part that differs between two XMLs, by
    meaning: (label, its value in ``before``, in ``after``), None where absent."""
    old = _owned_items(tree.parse_domain(before).root)
    new = _owned_items(tree.parse_domain(after).root)
    labels = list(old) + [label for label in new if label not in old]
    return [(label, old.get(label), new.get(label))
            for label in labels if old.get(label) != new.get(label)]


def _difference(label: str, wanted: str | None, actual: str | None) -> str:
    if actual is None:
        return f"{label}: libvirt dropped it (kvmrt wrote {wanted})"
    if wanted is None:
        return f"{label}: libvirt has {actual}, which kvmrt did not write"
    return f"{label}: kvmrt wrote {wanted}, libvirt has {actual}"


def _owned_items(domain: etree._Element) -> dict[str, str]:
    """kvmrt's part of a domain, as label → canonical value (absent: no key)."""
    items: dict[str, str] = {}
    for tag in ("name", "title", "description"):
        text = domain.findtext(tag)
        if text:
            items[f"<{tag}>"] = repr(text)
    vcpu = domain.find("vcpu")
    if vcpu is not None:
        items["<vcpu> count"] = str(uint_of(vcpu, vcpu.text, "count"))
        if vcpu.get("cpuset") is not None:
            items["<vcpu cpuset>"] = f"CPUs {format_ids(cpuset_of(vcpu, 'cpuset'))}"
    topology = _topology_of(domain)
    if topology is not None:
        items["<cpu><topology>"] = _topology_text(topology)
    for (tag, thread), cpus in read_pins(domain).items():
        key = {"vcpupin": " vcpu='{}'", "iothreadpin": " iothread='{}'"}.get(tag, "")
        items[f"<cputune><{tag}{key.format(thread)}>"] = f"CPUs {format_ids(cpus) or 'none'}"
    memory = domain.find("numatune/memory")
    if memory is not None:
        items["<numatune><memory>"] = _numatune_text(memory)
    if domain.find("memoryBacking/locked") is not None:
        items["<memoryBacking><locked/>"] = "<locked/>"
    hidden = _hidden_state(domain)
    if domain.find("features/kvm/hidden") is not None:
        items["<features><kvm><hidden>"] = f"state={hidden}"
    for _, address in _pci_hostdevs(domain):
        items[f"PCI <hostdev> {address}"] = "the device"
    if (channel := domxml_channel.channel_text(domain)) is not None:
        items[f"<channel> {domxml_channel.PORT_NAME}"] = channel
    return items


def _topology_text(topology: tuple[int, int, int, int, int]) -> str:
    s, d, cl, c, t = topology
    extra = "".join(f" {attr}={v}" for attr, v in (("dies", d), ("clusters", cl)) if v != 1)
    return f"sockets={s}{extra} cores={c} threads={t}"


def _numatune_text(memory: etree._Element) -> str:
    text = f"mode={memory.get('mode', 'strict')}"
    if memory.get("nodeset") is not None:
        text += f" nodeset={format_ids(cpuset_of(memory, 'nodeset'))}"
    if memory.get("placement", "static") != "static":
        text += f" placement={memory.get('placement')}"
    return text
