"""The guest services channel (``guest_services``, kvmrt-gs(7)).

kvmrt owns one ``<channel>`` of ``<devices>``: the one whose
``<target type='virtio' name='org.kvmrt.gs.0'/>`` carries kvmrt's port
name. With ``guest_services`` on it is::

    <channel type='unix'>
      <source mode='bind' path='STATE_DIR/gs/UUID.sock'/>
      <target type='virtio' name='org.kvmrt.gs.0'/>
    </channel>

QEMU (through libvirt) listens on the socket; the host side
(:mod:`kvmrt.guestsvc.host`) connects to it. The socket is named by the
domain's UUID, never by its name, so a rename changes nothing. Other
channels (the QEMU guest agent's, spice's) are the user's. With
``guest_services`` off kvmrt's channel is removed. An existing channel
keeps its other attributes and children (libvirt adds an ``<address>``).
"""

from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from kvmrt.libvirt_sync import domxml_tree as tree

PORT_NAME = "org.kvmrt.gs.0"
STATE_ENV = "KVMRT_STATE_DIR"           # the journal's state directory rule
DEFAULT_STATE_DIR = "/run/kvmrt"


def socket_dir() -> Path:
    """Where the channel sockets live: ``$KVMRT_STATE_DIR/gs``, else
    ``/run/kvmrt/gs`` (kvmrt's state directory, as for the journal)."""
    return Path(os.environ.get(STATE_ENV) or DEFAULT_STATE_DIR) / "gs"


def socket_path(uuid: str, directory: Path | None = None) -> Path:
    """The channel socket of the VM with ``uuid``."""
    return (directory or socket_dir()) / f"{uuid.lower()}.sock"


def find_channel(domain: etree._Element) -> etree._Element | None:
    """kvmrt's ``<channel>``, or None."""
    for channel in domain.iterfind("devices/channel"):
        target = channel.find("target")
        if target is not None and target.get("name") == PORT_NAME:
            return channel
    return None


def set_channel(domain: etree._Element, uuid: str, *, on: bool,
                devices_order: tuple[str, ...], top_order: tuple[str, ...]) -> None:
    """kvmrt's channel present (socket of ``uuid``) when ``on``, else absent."""
    channel = find_channel(domain)
    if not on:
        if channel is not None:
            tree.remove(channel)
        return
    if channel is None:
        devices = tree.ensure_child(domain, "devices", top_order)
        channel = tree.new_element(devices, "channel", {"type": "unix"})
        etree.SubElement(channel, "source")
        etree.SubElement(channel, "target", {"type": "virtio", "name": PORT_NAME})
        tree.insert_child(devices, channel, devices_order)
    tree.set_attr(channel, "type", "unix")
    source = channel.find("source")
    if source is None:
        source = etree.Element("source")
        channel.insert(0, source)
    tree.set_attr(source, "mode", "bind")
    tree.set_attr(source, "path", str(socket_path(uuid)))
    tree.set_attr(channel.find("target"), "type", "virtio")


def channel_text(domain: etree._Element) -> str | None:
    """kvmrt's channel as one comparable line (for owned_differences)."""
    channel = find_channel(domain)
    if channel is None:
        return None
    source = channel.find("source")
    mode, path = (None, None) if source is None else (source.get("mode"), source.get("path"))
    return f"type={channel.get('type')} mode={mode} path={path}"
