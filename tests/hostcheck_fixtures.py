"""Fixture hosts for kvmrt-validate-host: hostgen's sysfs trees plus the
/proc, /dev, /lib/modules and extra /sys files the host checks read.

``build_rt_host(root, spec, state)`` writes ``hostgen.build_host(root,
spec)`` and then what :class:`RtState` describes. :func:`tuned` is a host
an administrator has finished preparing for the Threadripper example
config (every check passes); :func:`stock` is the same machine as a
distribution installs it. Tests take one and change a field with
``dataclasses.replace`` to show one check failing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import hostgen

GiB = 1 << 30
AMD_FLAGS = ("fpu", "tsc", "msr", "svm", "constant_tsc", "nonstop_tsc", "x2apic")
INTEL_FLAGS = ("fpu", "tsc", "msr", "vmx", "constant_tsc", "nonstop_tsc", "x2apic")
CGROUP2_MOUNTS = (
    "sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0\n"
    "proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n"
    "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n")
CGROUP1_MOUNTS = (
    "proc /proc proc rw,relatime 0 0\n"
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
    + "".join(f"cgroup /sys/fs/cgroup/{c} cgroup rw,relatime,{c} 0 0\n"
              for c in ("cpu", "cpuacct", "cpuset", "memory", "devices", "blkio"))
    + "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n")
IR_INTERRUPTS = (
    "            CPU0       CPU1\n"
    "   0:         44          0  IR-IO-APIC    2-edge      timer\n"
    " 120:          0       1234  IR-PCI-MSIX-0000:01:00.0    0-edge      eth0-TxRx-0\n")
PLAIN_INTERRUPTS = (
    "            CPU0       CPU1\n"
    "   0:         44          0  IO-APIC    2-edge      timer\n"
    " 120:          0       1234  PCI-MSIX-0000:01:00.0    0-edge      eth0-TxRx-0\n")
TUNED_CMDLINE = (
    "BOOT_IMAGE=/boot/vmlinuz-6.1.0-rt-amd64 root=UUID=0b1c ro quiet iommu=pt "
    "isolcpus=managed_irq,domain,8-23 nohz_full=8-23 rcu_nocbs=8-23 "
    "irqaffinity=0-7,24-39,56-63 transparent_hugepage=never -- splash")


@dataclass(frozen=True)
class IdleState:
    name: str
    latency: int
    disabled: bool = False


@dataclass(frozen=True)
class RtState:
    """What a host shows beyond hostgen's topology and PCI tree."""

    vendor: str = "AuthenticAMD"
    flags: tuple[str, ...] = AMD_FLAGS
    cmdline: str = TUNED_CMDLINE
    osrelease: str = "6.1.0-rt-amd64"
    version: str = "#1 SMP PREEMPT_RT Debian 6.1.90-1 (2024-05-03)"
    realtime_file: bool = True
    modules: tuple[str, ...] = ("kvm", "kvm_amd", "vfio_pci", "vfio_iommu_type1")
    module_params: dict[str, str] = field(default_factory=lambda: {"kvm_amd/nested": "1"})
    devices: tuple[str, ...] = ("dev/kvm", "dev/vhost-net", "dev/net/tun")
    acpi_tables: tuple[str, ...] = ("DSDT", "FACP", "IVRS")
    interrupts: str = IR_INTERRUPTS
    vtd_ecap: str | None = None  # Intel: sys/class/iommu/dmar0/intel-iommu/ecap
    group_type: str | None = None  # overrides hostgen's "DMA" in every iommu group
    vfio_module_file: bool = True
    isolated: str | None = "8-23"  # None: a kernel without the isolated file
    nohz_full: str | None = "8-23"  # None: kernel without CONFIG_NO_HZ_FULL
    tasks: dict[int, str] = field(default_factory=lambda: {1: "systemd", 812: "libvirtd"})
    governor: str | None = "performance"
    idle_states: tuple[IdleState, ...] = (IdleState("POLL", 0), IdleState("C1", 1),
                                          IdleState("C2", 18, disabled=True))
    cpuidle_driver: str = "acpi_idle"
    sysctls: dict[str, str] = field(default_factory=lambda: {
        "sched_rt_runtime_us": "-1", "sched_rt_period_us": "1000000",
        "numa_balancing": "0", "timer_migration": "0", "nmi_watchdog": "0"})
    thp: str | None = "always madvise [never]"
    ksm: str | None = "0"
    clocksource: str = "tsc"
    memlock: str = "unlimited"
    node_memory: int = 32 * GiB
    node_free: int = 30 * GiB
    hugepages_1g: int = 8  # per node
    mounts: str = CGROUP2_MOUNTS
    cgroup_controllers: str = "cpuset cpu io memory hugetlb pids rdma misc"


def tuned(**changes) -> RtState:
    """The AMD Threadripper host made ready for examples/threadripper-5975wx.cfg."""
    return RtState(**changes)


def stock(**changes) -> RtState:
    """The same machine as a distribution installs it."""
    base = dict(
        cmdline="BOOT_IMAGE=/boot/vmlinuz-6.1.0-21-amd64 root=UUID=0b1c ro quiet",
        osrelease="6.1.0-21-amd64", version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.90-1",
        realtime_file=False, modules=("kvm", "kvm_amd"), interrupts=IR_INTERRUPTS,
        isolated="", nohz_full="", tasks={1: "systemd", 640: "irqbalance", 812: "libvirtd"},
        governor="schedutil",
        idle_states=(IdleState("POLL", 0), IdleState("C1", 1), IdleState("C2", 350)),
        sysctls={"sched_rt_runtime_us": "950000", "sched_rt_period_us": "1000000",
                 "numa_balancing": "1", "timer_migration": "1", "nmi_watchdog": "1"},
        thp="[always] madvise never", ksm="1", memlock="8388608", hugepages_1g=0)
    return RtState(**{**base, **changes})


def intel(**changes) -> RtState:
    """A tuned Intel host (the Xeon fixture): VT-x, a DMAR table, VT-d units."""
    base = dict(vendor="GenuineIntel", flags=INTEL_FLAGS, acpi_tables=("DSDT", "DMAR"),
                modules=("kvm", "kvm_intel", "vfio_pci"), module_params={
                    "kvm_intel/nested": "Y"}, vtd_ecap="f0205e",
                cmdline="BOOT_IMAGE=/vmlinuz ro intel_iommu=on iommu=pt")
    return RtState(**{**base, **changes})


def build_rt_host(root: Path, spec: hostgen.HostSpec, state: RtState) -> Path:
    """hostgen's tree for ``spec`` plus every file of ``state``."""
    hostgen.build_host(root, spec)
    tree = hostgen.Tree(root)
    for writer in WRITERS:
        writer(tree, spec, state)
    return root


def write_proc(tree: hostgen.Tree, spec: hostgen.HostSpec, s: RtState) -> None:
    processors = "\n".join(
        f"processor\t: {cpu}\nvendor_id\t: {s.vendor}\nmodel name\t: Fixture CPU\n"
        f"flags\t\t: {' '.join(s.flags)}\n" for cpu in range(min(spec.cpu_count, 2)))
    tree.write("proc/cpuinfo", processors)
    tree.write("proc/cmdline", s.cmdline)
    tree.write("proc/interrupts", s.interrupts.rstrip("\n"))
    tree.write("proc/mounts", s.mounts.rstrip("\n"))
    tree.write("proc/sys/kernel/osrelease", s.osrelease)
    tree.write("proc/sys/kernel/version", s.version)
    for name, value in s.sysctls.items():
        tree.write(f"proc/sys/kernel/{name}", value)
    tree.write("proc/self/limits", _limits(s.memlock))
    for pid, comm in s.tasks.items():
        tree.write(f"proc/{pid}/comm", comm)


def _limits(memlock: str) -> str:
    return ("Limit                     Soft Limit           Hard Limit           Units     \n"
            "Max open files            1024                 524288               files     \n"
            f"Max locked memory         {memlock:<21}{memlock:<21}bytes     ")


def write_kernel(tree: hostgen.Tree, spec: hostgen.HostSpec, s: RtState) -> None:
    if s.realtime_file:
        tree.write("sys/kernel/realtime", "1")
    for module in s.modules:
        tree.mkdir(f"sys/module/{module}")
    for name, value in s.module_params.items():
        module, param = name.split("/")
        if module in s.modules:  # a module's parameters exist while it is loaded
            tree.write(f"sys/module/{module}/parameters/{param}", value)
    if "vfio_pci" in s.modules:
        tree.mkdir("sys/bus/pci/drivers/vfio-pci")
    if s.vfio_module_file:
        tree.write(f"lib/modules/{s.osrelease}/kernel/drivers/vfio/pci/vfio-pci.ko.xz", "")
    for table in s.acpi_tables:
        tree.write(f"sys/firmware/acpi/tables/{table}", "")
    if s.vtd_ecap is not None:
        tree.write("sys/class/iommu/dmar0/intel-iommu/ecap", s.vtd_ecap)
    if s.group_type is not None:
        for group in os.listdir(tree.root / "sys/kernel/iommu_groups"):
            tree.write(f"sys/kernel/iommu_groups/{group}/type", s.group_type)
    for device in s.devices:
        tree.write(device, "")
    if s.isolated is None:
        (tree.root / hostgen.CPU / "isolated").unlink()
    else:
        tree.write(hostgen.CPU + "/isolated", s.isolated)
    if s.nohz_full is not None:
        tree.write(hostgen.CPU + "/nohz_full", s.nohz_full)


def write_cpu_power(tree: hostgen.Tree, spec: hostgen.HostSpec, s: RtState) -> None:
    online = [p.cpu for p in hostgen.layout(spec) if p.online]
    if s.idle_states:
        tree.write(hostgen.CPU + "/cpuidle/current_driver", s.cpuidle_driver)
    for cpu in online:
        base = f"{hostgen.CPU}/cpu{cpu}"
        if s.governor is not None:
            tree.write(f"{base}/cpufreq/scaling_governor", s.governor)
        for index, state in enumerate(s.idle_states):
            tree.write(f"{base}/cpuidle/state{index}/name", state.name)
            tree.write(f"{base}/cpuidle/state{index}/latency", str(state.latency))
            tree.write(f"{base}/cpuidle/state{index}/disable", "1" if state.disabled else "0")
    clock = "sys/devices/system/clocksource/clocksource0"
    tree.write(f"{clock}/current_clocksource", s.clocksource)
    tree.write(f"{clock}/available_clocksource", "tsc hpet acpi_pm")


def write_memory(tree: hostgen.Tree, spec: hostgen.HostSpec, s: RtState) -> None:
    if s.thp is not None:
        tree.write("sys/kernel/mm/transparent_hugepage/enabled", s.thp)
    if s.ksm is not None:
        tree.write("sys/kernel/mm/ksm/run", s.ksm)
    for node in range(spec.node_count):
        base = f"{hostgen.NODE}/node{node}"
        tree.write(f"{base}/meminfo", f"Node {node} MemTotal:       {s.node_memory // 1024} kB\n"
                   f"Node {node} MemFree:        {s.node_free // 1024} kB\n"
                   f"Node {node} HugePages_Total:     {s.hugepages_1g}")
        for size, count in ((2048, 0), (1048576, s.hugepages_1g)):
            pool = f"{base}/hugepages/hugepages-{size}kB"
            tree.write(f"{pool}/nr_hugepages", str(count))
            tree.write(f"{pool}/free_hugepages", str(count))


def write_cgroup(tree: hostgen.Tree, spec: hostgen.HostSpec, s: RtState) -> None:
    tree.write("sys/fs/cgroup/cgroup.controllers", s.cgroup_controllers)


WRITERS = [write_proc, write_kernel, write_cpu_power, write_memory, write_cgroup]

