"""What ``kvmrt-stat`` reports: each VM's state and whether its real-time
tuning holds, what it runs with, and the role of every QEMU thread.

A VM runs while its QEMU process exists (libvirt's "active": running,
paused, idle, in shutdown...), the one notion :data:`kvmrt.lifecycle.RUNNING`
that boot, shutdown and stat share.

Tuning is ``ok`` or ``disturbed`` with what is wrong: a foreign thread or
IRQ allowed on a shielded CPU, the default IRQ mask or the workqueue mask
including one, an SMT sibling back online, a vCPU or emulator thread off
the CPUs libvirt pinned it to, or the VM running without kvmrt's tuning.
The shielded CPUs are those kvmrt tuned the host for (the journal), not
what the config says now. Each class of thread has its rule:

- QEMU's vCPU threads (libvirt's vCPU ids) on their pinned CPU, its other
  threads (emulator, iothreads) on the emulator CPUs;
- the kernel's threads inside QEMU (vhost workers, ``kvm-nx-lpage-re``)
  are the kernel's: no rule, never a disturbance; so are the VM's vhost
  worker kernel threads (``vhost-PID`` before Linux 6.4);
- a threaded IRQ handler (``irq/N-name``) follows its IRQ, which is judged
  instead;
- every other movable thread is foreign on a shielded CPU. Threads the
  kernel binds to a CPU and IRQs the kernel refused to move are not
  counted: kvmrt cannot change them.

What runs is compared with the config (libvirt's public API: vCPU count,
live vCPU and emulator pins; the journal's shielding): a difference is
``pending``, with what applies it (``kvmrt-boot VM``, or a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


from kvmrt.config.model import VmConfig
from kvmrt.sets import format_ids
from kvmrt.host import qemu
from kvmrt.host.fs import HostFS
from kvmrt.host.tasks import Task, read_tasks
from kvmrt.libvirt_sync.domains import Runtime
from kvmrt.lifecycle import RUNNING, pinning_problems
from kvmrt.placement import Placement, try_place
from kvmrt.tuning.engine import take_snapshot
from kvmrt.tuning.journal import JournalState
from kvmrt.tuning.model import Snapshot, TunedVm


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
    pending: list[str] = field(default_factory=list)   # the config differs from what runs
    threads: list[ThreadInfo] | None = None

    def as_json(self) -> dict:
        p = self.placement
        data = {"name": self.vm.name, "uuid": self.vm.uuid, "title": self.vm.title,
                "state": self.state, "rt": bool(self.vm.rt),
                "vcpus": p.nr_vcpus if p else None,
                "cpuset": sorted(p.cpuset) if p else [],
                "tuning": self.tuning, "problems": self.problems, "pending": self.pending}
        if self.threads is not None:
            data["threads"] = [t.as_json() for t in self.threads]
        return data


def vm_threads(status: qemu.QemuStatus, all_tasks: list[Task]) -> list[ThreadInfo]:
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
    if t.kernel or t.worker:
        return "kernel"        # vhost-PID, kvm-nx-lpage-re: the kernel's, not QEMU's
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
                 journal: JournalState, runtime: Runtime | None = None) -> list[str]:
    """What is wrong with a running rt VM's tuning; [] when it holds.

    The host is checked against what kvmrt tuned it for (the journal), the
    threads against the pins libvirt applied (``runtime``, else the config).
    """
    tuned = journal.vms.get(p.vm.uuid.lower())
    if tuned is None:
        return ["running without kvmrt's tuning (not started by kvmrt-boot); "
                f"run kvmrt-boot {p.vm.name} to tune the host for it"]
    problems = []
    back = sorted(c for c in tuned.offline if snap.online.get(c))
    if back:
        problems.append(f"SMT siblings back online: CPUs {format_ids(back)}")
    problems += _foreign_threads(snap, status.pid, tuned.shielded)
    problems += _foreign_irqs(snap, p, tuned, journal)
    for label, mask in (("default IRQ affinity", snap.default_affinity),
                        ("workqueue cpumask", snap.workqueue)):
        if mask and mask & tuned.shielded:
            problems.append(f"{label} includes shielded CPUs {format_ids(mask & tuned.shielded)}")
    return problems + pinning_problems(_as_running(p, runtime), status,
                                       [t for t in snap.tasks if t.pid == status.pid])


def _as_running(p: Placement, runtime: Runtime | None) -> Placement:
    """The placement with the pins libvirt applied to the running domain
    (where libvirt shows none, the config's)."""
    if runtime is None or not p.cpuset:
        return p
    conf = p.vcpu_cpus
    vcpus = tuple(live or (conf[n] if n < len(conf) else frozenset())
                  for n, live in enumerate(runtime.vcpu_pins))
    return replace(p, vcpu_cpus=vcpus, emulator_cpus=runtime.emulator_pin or p.emulator_cpus)


def pending(p: Placement, runtime: Runtime | None, tuned: TunedVm | None) -> list[str]:
    """How the running VM differs from its config, and what applies the config."""
    if runtime is None:
        return []
    name = p.vm.name
    if runtime.vcpus != p.nr_vcpus:
        return [f"runs {runtime.vcpus} vCPUs, the config has {p.nr_vcpus}: a restart applies "
                f"it (kvmrt-shutdown {name}, then kvmrt-boot {name})"]
    found = []
    if p.cpuset:
        found += [f"vCPU {n} pinned to {_ids(have)}, the config has {_ids(want)}"
                  for n, (have, want) in enumerate(zip(runtime.vcpu_pins, p.vcpu_cpus))
                  if have and want and have != want]
        if runtime.emulator_pin and p.emulator_cpus and runtime.emulator_pin != p.emulator_cpus:
            found.append(f"emulator pinned to {_ids(runtime.emulator_pin)}, the config has "
                         f"{_ids(p.emulator_cpus)}")
    if tuned is not None and tuned.shielded != p.shielded_cpus:
        found.append(f"host tuned for CPUs {_ids(tuned.shielded)}, the config has "
                     f"{_ids(p.shielded_cpus) or 'no rt CPUs'}")
    return [f"{f} (kvmrt-boot {name} applies it)" for f in found]


def _ids(cpus: frozenset[int]) -> str:
    return format_ids(cpus) or "(none)"


def _foreign_threads(snap: Snapshot, pid: int, shielded: frozenset[int]) -> list[str]:
    """Movable threads on shielded CPUs, but a threaded IRQ handler (it
    follows its IRQ, the kernel moves it, and the IRQ is checked) and the
    VM's own vhost workers (kernel threads before Linux 6.4, in its
    emulator cgroup)."""
    foreign = [t for t in snap.tasks
               if t.pid != pid and not t.pinned and t.irq_thread is None
               and t.vhost_of != pid and t.affinity & shielded]
    if not foreign:
        return []
    names = ", ".join(f"{t.comm}[{t.tid}]" for t in foreign[:5])
    more = f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
    return [f"{len(foreign)} foreign threads allowed on shielded CPUs: {names}{more}"]


def _foreign_irqs(snap: Snapshot, p: Placement, tuned: TunedVm,
                  journal: JournalState) -> list[str]:
    own = {irq for a in p.vm.pcidevs for irq in snap.vfio.get(a, [])}
    bad = []
    for irq in snap.irqs:
        # The affinity, not the effective one: without interrupt remapping
        # the latter moves only at the IRQ's next interrupt.
        cpus = irq.affinity
        if irq.number in own:
            if tuned.irq_cpu is not None and irq.affinity != {tuned.irq_cpu}:
                bad.append(f"{irq.number} (own vfio IRQ, not on CPU {tuned.irq_cpu})")
        elif cpus & tuned.shielded and f"irq:{irq.number}" not in journal.refused:
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
            journal: JournalState, *, threads: bool,
            runtimes: dict[str, Runtime] | None = None) -> list[VmStatus]:
    """The status of each VM; ``states`` maps lower-case UUID to libvirt's
    word, ``runtimes`` to what a running domain runs with (libvirt's API)."""
    out: list[VmStatus] = []
    snap = None
    for vm in vms:
        uuid = vm.uuid.lower()
        state = states.get(uuid, "undefined")
        p = try_place(vm, topology)
        st = VmStatus(vm, state, p)
        running = state in RUNNING
        runtime = (runtimes or {}).get(uuid) if running else None
        status = qemu.read_qemu_status(fs, vm.name, vm.uuid) if running else None
        if p is not None:
            st.pending = pending(p, runtime, journal.vms.get(uuid) if vm.rt else None)
        if status is not None and vm.rt and p is not None:
            snap = snap or take_snapshot(fs)
            st.problems = check_tuning(p, status, snap, journal, runtime)
            st.tuning = "disturbed" if st.problems else "ok"
        if threads and status is not None:
            st.threads = vm_threads(status, snap.tasks if snap else read_tasks(fs, [status.pid]))
        out.append(st)
    return out
