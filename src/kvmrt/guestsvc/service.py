"""Guest services around boot and shutdown: the socket directory, the
host-side daemon (:mod:`kvmrt.guestsvc.daemon`), the VMs' sockets.

- :func:`prepare` before VMs start: ``STATE_DIR/gs`` exists, so that
  libvirt/QEMU can create the channel sockets in it;
- :func:`start_for` after boot: the daemon runs while any VM of the config
  with ``guest_services`` runs;
- :func:`stop_for` after shutdown: the sockets of stopped VMs are removed,
  and the daemon stops when no such VM runs any more.
"""

from __future__ import annotations

from kvmrt.config.file import Config
from kvmrt.config.model import VmConfig
from kvmrt.errors import KvmrtError
from kvmrt.guestsvc import daemon
from kvmrt.libvirt_sync.domxml_channel import socket_dir


class GuestServicesError(KvmrtError):
    pass


def prepare(vms: list[VmConfig]) -> None:
    """Create the socket directory when a VM of ``vms`` has guest services.

    0755 root: libvirtd (root) creates the listening socket there and
    hands it to QEMU; QEMU never creates files in it (kvmrt-gs(7))."""
    if any(vm.guest_services for vm in vms):
        directory = socket_dir()
        try:
            directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise GuestServicesError(f"cannot create {directory}: {exc.strerror}") from exc


def _with_services(config: Config, running: set[str]) -> list[VmConfig]:
    return [vm for vm in config.vms if vm.guest_services and vm.uuid.lower() in running]


def start_for(config: Config, config_path: str | None, running: set[str]) -> list[str]:
    """Start the daemon if a running VM has guest services; notes to show."""
    if not _with_services(config, {u.lower() for u in running}):
        return []
    if daemon.start_background(config_path) is None:
        return ["guest services: the host side (kvmrt-gsd) did not start"]
    return []


def _channels_of_running(running: set[str]) -> list[str]:
    """The running domains (of any config) whose channel socket is there."""
    return [p.name.removesuffix(".sock") for p in socket_dir().glob("*.sock")
            if p.name.removesuffix(".sock").lower() in running]


def stop_for(config: Config, running: set[str]) -> list[str]:
    """Remove the sockets of stopped VMs; stop the daemon when no running
    domain has a channel any more, whichever config it belongs to (the
    daemon serves every socket of the directory). Notes to show."""
    running = {u.lower() for u in running}
    if not any(vm.guest_services for vm in config.vms):
        return []     # none of this config's business
    stopped = [vm.uuid for vm in config.vms if vm.guest_services and vm.uuid.lower() not in running]
    daemon.remove_sockets(stopped)
    if _with_services(config, running) or _channels_of_running(running):
        return []
    if daemon.stop():
        return ["guest services: stopped the host side (kvmrt-gsd)"]
    return []
