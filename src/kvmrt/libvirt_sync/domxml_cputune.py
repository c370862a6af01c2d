"""``<cputune>``: the vCPU, emulator and iothread pins kvmrt owns.

kvmrt owns every ``<vcpupin>``, ``<emulatorpin>`` and ``<iothreadpin>``:
one ``vcpupin`` per pinned vCPU, the emulator and every iothread of the
domain on the emulator CPUs. The other children of ``<cputune>`` (shares,
period, quota, ``vcpusched``…) are the user's and stay where they are. A pin
whose CPU set already means the wanted set keeps its spelling; pins are
written in libvirt's order, and ``<cputune>`` goes when nothing is left.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from kvmrt.sets import format_ids
from kvmrt.libvirt_sync import domxml_tree as tree
from kvmrt.libvirt_sync.domxml_values import cpuset_of, parse_cpuset, uint_of

# libvirt's dumpxml order of <cputune> children (virDomainCputuneDefFormat).
CPUTUNE_ORDER = (
    "shares", "period", "quota", "global_period", "global_quota",
    "emulator_period", "emulator_quota", "iothread_period", "iothread_quota",
    "vcpupin", "emulatorpin", "iothreadpin",
    "emulatorsched", "vcpusched", "iothreadsched", "cachetune", "memorytune",
)
# Pin element → the attribute that says which thread it pins.
PIN_KEYS = {"vcpupin": "vcpu", "emulatorpin": None, "iothreadpin": "iothread"}


@dataclass(frozen=True)
class Pin:
    tag: str
    thread: int | None
    cpus: frozenset[int]


def wanted_pins(domain: etree._Element, vcpu_cpus: tuple[frozenset[int], ...],
                emulator_cpus: frozenset[int]) -> list[Pin]:
    """The pins of a placement, in libvirt's order."""
    pins = [Pin("vcpupin", i, cpus) for i, cpus in enumerate(vcpu_cpus) if cpus]
    if emulator_cpus:
        pins.append(Pin("emulatorpin", None, emulator_cpus))
        pins += [Pin("iothreadpin", k, emulator_cpus) for k in iothread_ids(domain)]
    return pins


def iothread_ids(domain: etree._Element) -> list[int]:
    """The domain's iothread ids: ``<iothreadids>``, completed as libvirt
    does up to ``<iothreads>N</iothreads>`` with the lowest free ids."""
    ids = [uint_of(t, t.get("id"), "id") for t in domain.findall("iothreadids/iothread")]
    count_el = domain.find("iothreads")
    count = uint_of(count_el, count_el.text, "count") if count_el is not None else 0
    free = (i for i in range(1, count + len(ids) + 1) if i not in ids)
    while len(ids) < count:
        ids.append(next(free))
    return ids


def set_pins(domain: etree._Element, pins: list[Pin], *, order: tuple[str, ...],
             prune: frozenset[str]) -> None:
    """Make the pins of ``<cputune>`` exactly ``pins``.

    ``order`` is the order of ``<domain>``'s children (to create
    ``<cputune>``); ``prune`` the containers removed when left empty.
    """
    cputune = domain.find("cputune")
    if cputune is None and not pins:
        return
    if cputune is None:
        cputune = tree.ensure_child(domain, "cputune", order)
    existing = {}
    for el in [el for el in cputune if el.tag in PIN_KEYS]:
        existing.setdefault((el.tag, _thread_of(el)), el)
        tree.detach(el)
    for pin in pins:
        el = existing.get((pin.tag, pin.thread))
        if el is None:
            el = _new_pin(cputune, pin)
        _set_cpuset(el, pin.cpus)
        tree.insert_child(cputune, el, CPUTUNE_ORDER)
    if tree.is_empty(cputune):
        tree.remove(cputune, prune)


def _thread_of(el: etree._Element) -> int | None:
    key = PIN_KEYS[el.tag]
    text = el.get(key) if key else None
    return int(text) if text is not None and text.strip().isdigit() else None


def _new_pin(parent: etree._Element, pin: Pin) -> etree._Element:
    key = PIN_KEYS[pin.tag]
    attrib = {key: str(pin.thread)} if key else {}
    return tree.new_element(parent, pin.tag, {**attrib, "cpuset": format_ids(pin.cpus)})


def _set_cpuset(el: etree._Element, cpus: frozenset[int]) -> None:
    """Write ``cpus`` unless the attribute already means that set."""
    if parse_cpuset(el.get("cpuset") or "") != cpus:
        el.set("cpuset", format_ids(cpus))


def read_pins(domain: etree._Element) -> dict[tuple[str, int | None], frozenset[int]]:
    """Every pin of ``<cputune>``: (tag, thread) → CPUs."""
    pins = {}
    for el in domain.iterfind("cputune/*"):
        if el.tag in PIN_KEYS:
            pins[(el.tag, _thread_of(el))] = cpuset_of(el, "cpuset")
    return pins
