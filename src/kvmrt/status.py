"""What ``kvmrt-stat`` reports: each VM's state and whether its real-time
tuning holds, and the role of every QEMU thread.

Tuning is ``ok`` or ``disturbed`` with what is wrong: a foreign thread or
IRQ allowed on a shielded CPU, the default IRQ mask or the workqueue mask
including one, an SMT sibling back online, a vCPU off its CPU, or the VM
running without kvmrt's tuning. Threads the kernel binds to a CPU and IRQs
the kernel refused to move are not counted: kvmrt cannot change them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kvmrt.config.model import VmConfig
from kvmrt.config.sets import format_ids
from kvmrt.host import qemu
from kvmrt.host.fs import HostFS
from kvmrt.host.tasks import Task
from kvmrt.placement import Placement
from kvmrt.tuning.journal import JournalState
from kvmrt.tuning.model import Snapshot


@dataclass
class ThreadInfo:
    tid: int
    name: str
    role: str
    affinity: frozenset[int]
    cpu: int | None

    def as_json(self) -> dict:
        return {"tid": self.tid, "name": self.name, "role": self.role,
                "affinity": sorted(self.affinity), "cpu": self.cpu}


@dataclass
class VmStatus:
    vm: VmConfig
    state: str
    placement: Placement | None
    tuning: str | None = None          # "ok", "disturbed", or None when not running / not rt
    problems: list[str] = field(default_factory=list)
    threads: list[ThreadInfo] | None = None

    def as_json(self) -> dict:
        p = self.placement
        data = {"name": self.vm.name, "uuid": self.vm.uuid, "title": self.vm.title,
                "state": self.state, "rt": bool(self.vm.rt),
                "vcpus": p.nr_vcpus if p else None,
                "cpuset": sorted(p.cpuset) if p else [],
                "tuning": self.tuning, "problems": self.problems}
        if self.threads is not None:
            data["threads"] = [t.as_json() for t in self.threads]
        return data


def vm_threads(fs: HostFS, status: qemu.QemuStatus, all_tasks: list[Task]) -> list[ThreadInfo]:
    vcpus = {tid: n for n, tid in status.vcpus.items()}
    iothreads = {tid: n for n, tid in status.iothreads.items()}
    return [ThreadInfo(t.tid, t.comm, _role(t, status.pid, vcpus, iothreads), t.affinity,
                       t.last_cpu)
            for t in all_tasks if t.pid == status.pid]


def _role(t: Task, pid: int, vcpus: dict, iothreads: dict) -> str:
    if t.tid in vcpus:
        return f"vCPU {vcpus[t.tid]}"
    if t.tid in iothreads:
        return f"iothread {iothreads[t.tid]}"
    if t.tid == pid or t.comm.startswith(("qemu-", "qemu-system")):
        return "emulator"
    if t.comm.startswith("IO "):
        return "iothread"
    if t.comm.startswith("worker"):
        return "worker"
    if t.comm.startswith("SPICE"):
        return "SPICE"
    return "other"


def check_tuning(p: Placement, status: qemu.QemuStatus, snap: Snapshot,
                 journal: JournalState) -> list[str]:
    """What is wrong with a running rt VM's tuning; [] when it holds."""
    if p.vm.uuid.lower() not in journal.vms:
        return ["running without kvmrt's tuning (not started by kvmrt-boot); "
                f"run kvmrt-boot {p.vm.name} to tune the host for it"]
    shielded = p.shielded_cpus
    problems = []
    back = sorted(c for c in p.offline_cpus if snap.online.get(c))
    if back:
        problems.append(f"SMT siblings back online: CPUs {format_ids(back)}")
    problems += _foreign_threads(snap, status.pid, shielded)
    problems += _foreign_irqs(snap, p, journal)
    for label, mask in (("default IRQ affinity", snap.default_affinity),
                        ("workqueue cpumask", snap.workqueue)):
        if mask and mask & shielded:
            problems.append(f"{label} includes shielded CPUs {format_ids(mask & shielded)}")
    from kvmrt.lifecycle import pinning_problems
    return problems + pinning_problems(p, status, [t for t in snap.tasks
                                                   if t.pid == status.pid])


def _foreign_threads(snap: Snapshot, pid: int, shielded: frozenset[int]) -> list[str]:
    foreign = [t for t in snap.tasks
               if t.pid != pid and not t.pinned and t.affinity & shielded]
    if not foreign:
        return []
    names = ", ".join(f"{t.comm}[{t.tid}]" for t in foreign[:5])
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    return [f"{len(foreign)} foreign threads allowed on shielded CPUs: {names}{more}"]


def _foreign_irqs(snap: Snapshot, p: Placement, journal: JournalState) -> list[str]:
    own = {irq for a in p.vm.pcidevs for irq in snap.vfio.get(a, [])}
    bad = []
    for irq in snap.irqs:
        # The affinity, not the effective one: without interrupt remapping
        # the latter moves only at the IRQ's next interrupt.
        cpus = irq.affinity
        if irq.number in own:
            if p.irq_cpu is not None and irq.affinity != {p.irq_cpu}:
                bad.append(f"{irq.number} (own vfio IRQ, not on CPU {p.irq_cpu})")
        elif cpus & p.shielded_cpus and f"irq:{irq.number}" not in journal.refused:
            bad.append(str(irq.number))
    return [f"IRQs on shielded CPUs: {', '.join(bad)}"] if bad else []


def leftovers(journal: JournalState, running: set[str]) -> list[str]:
    """Changes the journal still holds for VMs that no longer run (kvmrt was
    interrupted, or a VM stopped behind its back)."""
    gone = [vm for u, vm in journal.vms.items() if u not in running]
    if not gone and (journal.vms or not journal.baseline):
        return []
    names = ", ".join(vm.name for vm in gone) or "no VM"
    return [f"{len(journal.baseline)} host changes are still in place for {names} "
            "(kvmrt was interrupted or the VM stopped without kvmrt-shutdown); "
            "kvmrt-shutdown or kvmrt-boot restores them"]



def collect(fs: HostFS, vms: list[VmConfig], states: dict[str, str], topology,
            journal: JournalState, *, threads: bool) -> list[VmStatus]:
    """The status of each VM; ``states`` maps lower-case UUID to libvirt's word."""
    from kvmrt.errors import UnknownHostObject
    from kvmrt.placement import place
    from kvmrt.tuning.engine import take_snapshot

    out: list[VmStatus] = []
    snap = None
    for vm in vms:
        state = states.get(vm.uuid.lower(), "undefined")
        try:
            p = place(vm, topology)
        except UnknownHostObject:
            p = None
        st = VmStatus(vm, state, p)
        status = qemu.read_qemu_status(fs, vm.name) if state == "running" else None
        if status is not None and vm.rt and p is not None:
            snap = snap or take_snapshot(fs)
            st.problems = check_tuning(p, status, snap, journal)
            st.tuning = "disturbed" if st.problems else "ok"
        if threads and status is not None:
            from kvmrt.host.tasks import read_tasks
            st.threads = vm_threads(fs, status, snap.tasks if snap else read_tasks(fs, [status.pid]))
        out.append(st)
    return out
