"""Boot and shut down VMs with their host tuning (SPEC 3 and 5).

Boot, per VM in config order: for an rt VM tune the host (siblings
offline, shielding, vfio IRQs), sync the domain XML, start the domain (a
running one is not an error: its tuning is re-applied, which repairs it),
then check the pinning of its running threads. A VM that fails to start
gets its host changes undone; VMs already started stay up and tuned.

Shutdown: ask every selected running VM to shut down (concurrently, or one
after another), wait up to a timeout, power off with ``force``, then
release their tuning: what no other running rt VM needs goes back exactly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from kvmrt.config.model import VmConfig
from kvmrt.config.sets import format_ids
from kvmrt.errors import KvmrtError
from kvmrt.host import qemu, tasks
from kvmrt.host.fs import HostFS
from kvmrt.host.model import Topology
from kvmrt.libvirt_sync.domains import Domains
from kvmrt.libvirt_sync.sync import sync_to_libvirt
from kvmrt.placement import Placement, place
from kvmrt.tuning import engine
from kvmrt.tuning.model import Action, TunedVm

Say = Callable[[str], None]


@dataclass
class VmResult:
    name: str
    status: str                       # started, retuned, stopped, powered off, failed, would ...
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


def boot_vm(fs: HostFS, domains: Domains, vm: VmConfig, topology: Topology, *,
            dry_run: bool) -> VmResult:
    p = place(vm, topology)
    running = domains.state(vm.uuid) == "running"
    result = VmResult(vm.name, "retuned" if running else "started")
    tuned = engine.tune(fs, TunedVm.of(p), dry_run=dry_run) if vm.rt else engine.Result()
    _collect(result, tuned)
    try:
        (synced,) = sync_to_libvirt([vm], topology, domains, query=dry_run)
        if synced.status == "failed":
            raise KvmrtError("; ".join(synced.messages))
        if not running and not dry_run:
            domains.start(vm.uuid)
    except KvmrtError as exc:
        result.status, result.error = "failed", str(exc)
        if vm.rt and not dry_run and not running:   # a running VM keeps its tuning
            _collect(result, engine.release(fs, [p.vm.uuid.lower()]))
        return result
    if dry_run:
        result.status = "would be " + ("retuned" if running else "started")
    else:
        result.notes += check_pinning(fs, p)
    return result


def check_pinning(fs: HostFS, p: Placement, *, wait: float = 5.0) -> list[str]:
    """Compare the running threads with the placement; [] when all is right."""
    status = _wait_for_status(fs, p.vm.name, wait)
    if status is None:
        return [f"no QEMU status for {p.vm.name} under run/libvirt/qemu; pinning not checked"]
    problems = []
    for vcpu, tid in sorted(status.vcpus.items()):
        want = p.vcpu_cpus[vcpu] if vcpu < len(p.vcpu_cpus) else frozenset()
        try:
            have = tasks.read_task(fs, status.pid, tid).affinity
        except KvmrtError:
            continue
        if want and have != want:
            problems.append(f"vCPU {vcpu} (thread {tid}) runs on CPUs {format_ids(have)}, "
                            f"planned {format_ids(want)}")
    return problems


def _wait_for_status(fs: HostFS, name: str, wait: float) -> qemu.QemuStatus | None:
    deadline = time.monotonic() + wait
    while True:
        status = qemu.read_qemu_status(fs, name)
        if status is not None or time.monotonic() >= deadline:
            return status
        time.sleep(0.1)


def shutdown_vms(fs: HostFS, domains: Domains, vms: list[VmConfig], *, force: bool,
                 timeout: float, sequential: bool,
                 say: Say) -> tuple[list[VmResult], engine.Result]:
    """Stop the running ones of ``vms``; return their results and what was
    restored on the host."""
    running = [vm for vm in vms if domains.state(vm.uuid) == "running"]
    results: list[VmResult] = []
    batches = [[vm] for vm in running] if sequential else [running]
    for batch in batches:
        results += _stop(domains, batch, force=force, timeout=timeout, say=say)
    stopped = [vm.uuid.lower() for vm, r in zip(running, results) if r.error is None]
    restored = engine.release(fs, stopped) if stopped else engine.Result()
    return results, restored


def _stop(domains: Domains, vms: list[VmConfig], *, force: bool, timeout: float,
          say: Say) -> list[VmResult]:
    for vm in vms:
        say(f"{vm.name}: shutting down")
        domains.shutdown(vm.uuid)
    deadline = time.monotonic() + timeout
    pending = {vm.uuid: VmResult(vm.name, "stopped") for vm in vms}
    while any(domains.state(u) != "shut off" for u in pending) and time.monotonic() < deadline:
        time.sleep(0.2)
    for vm in vms:
        r = pending[vm.uuid]
        if domains.state(vm.uuid) == "shut off":
            say(f"{vm.name}: stopped")
        elif force:
            domains.destroy(vm.uuid)
            r.status = "powered off"
            say(f"{vm.name}: did not stop within {timeout:g} s; powered off")
        else:
            r.status = "failed"
            r.error = f"did not stop within {timeout:g} s (use --force to power it off)"
    return [pending[vm.uuid] for vm in vms]


def _collect(result: VmResult, tuned: engine.Result) -> None:
    result.actions += tuned.actions
    result.notes += tuned.notes + tuned.refused + tuned.failed
