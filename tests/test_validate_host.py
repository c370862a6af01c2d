"""kvmrt-validate-host: every check on fixture hosts (real file trees below
KVMRT_FSROOT, built by hostcheck_fixtures on top of hostgen), libvirt's
test driver, an unreachable daemon, an ordinary user, and this machine."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import hostcheck_fixtures as F
import hostgen
from kvmrt.config.file import load_config, parse_config
from kvmrt.host import HostFS
from kvmrt.hostcheck import REGISTRY, Report, Result, Status, format_report, validate_host
from kvmrt.hostcheck.kernel import (CpuInfo, KernelCmdline, brace_cpus, format_bytes,
                                    parse_kernel_cpulist, parse_memlock)
from kvmrt.hostcheck.libvirtd import _refused, guests
from kvmrt.libvirt_sync.connection import LibvirtUnreachable
from kvmrt.hostcheck.result import Finding, ok, warn

EXAMPLES = Path(__file__).parent.parent / "examples"
TR_CFG = EXAMPLES / "threadripper-5975wx.cfg"
ANY_CFG = EXAMPLES / "any-host.cfg"
BIN = Path(sys.executable).parent
TEST_URI = "test:///default"
UNREACHABLE = "qemu+unix:///system?socket=/nonexistent"
RT_UUID = "fde74e84-0e1b-404e-90e7-72101e79c48a"

PASS, WARN, FAIL, SKIP = Status.PASS, Status.WARN, Status.FAIL, Status.SKIP


# -- helpers -----------------------------------------------------------------
def checks(root: Path, config: Path | str | None = TR_CFG, uri: str = TEST_URI,
           ) -> dict[str, Result]:
    """Run every check on the tree at ``root``; results by id."""
    cfg = None
    if isinstance(config, Path):
        cfg = load_config(str(config))
    elif isinstance(config, str):
        cfg = parse_config(config, "k.cfg")
    report = validate_host(HostFS(root), config=cfg, uri=uri)
    return {r.id: r for r in report.results}


def run(*args: str, root: Path | None = None, check: int | None = None, **kw):
    """The installed command, as a user runs it."""
    env = dict(os.environ)
    env.pop("KVMRT_FSROOT", None)
    if root is not None:
        env["KVMRT_FSROOT"] = str(root)
    exe = shutil.which("kvmrt-validate-host", path=str(BIN)) or "kvmrt-validate-host"
    proc = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60,
                          **kw)
    if check is not None:
        assert proc.returncode == check, (proc.stdout, proc.stderr)
    return proc


def rt_cfg(cpuset: str = "n1,n2", pcidevs: str = "0000:21:00.0 0000:22:00.0 0000:22:00.1"):
    return (f"[{RT_UUID}]\nname = RedHawk-8.4-RT\ncpuset = {cpuset}\nrt = True\n"
            f"pcidevs = {pcidevs}\n")


def node_xml(tmp_path: Path, memory_gib: int, *, running: bool = False) -> str:
    """A libvirt test-driver URI whose one domain is the example's rt VM."""
    path = tmp_path / "node.xml"
    path.write_text(f"""<node>
  <domain type="test" xmlns:test="http://libvirt.org/schemas/domain/test/1.0">
    <name>RedHawk-8.4-RT</name>
    <uuid>{RT_UUID}</uuid>
    <memory unit="GiB">{memory_gib}</memory>
    <vcpu>15</vcpu>
    <os><type>hvm</type></os>
    <test:runstate>{1 if running else 5}</test:runstate>
  </domain>
</node>
""")
    return f"test://{path}"


@pytest.fixture
def host(tmp_path: Path):
    """``host(state, spec=threadripper) -> root``: a fixture host on disk."""
    count = 0

    def make(state: F.RtState, spec: hostgen.HostSpec | None = None) -> Path:
        nonlocal count
        count += 1
        spec = spec or hostgen.threadripper_5975wx()
        return F.build_rt_host(tmp_path / f"{spec.name}-{count}", spec, state)

    return make


def small() -> hostgen.HostSpec:
    return hostgen.small_4c1t()


# -- the tuned host passes everything ----------------------------------------
def test_a_tuned_host_passes_every_check(host):
    found = checks(host(F.tuned()))
    not_passed = {i: (r.status, r.finding.message) for i, r in found.items()
                  if r.status is not PASS}
    # The test driver is not QEMU: that is the one check a QEMU daemon must pass.
    assert not_passed == {"qemu": (WARN, "test:///default is libvirt's TEST driver, not QEMU")}
    ids = {r.id.split(":")[0] for r in found.values()}
    assert ids == {c.id for c in REGISTRY}


# -- each check failing (and passing) -----------------------------------------
# (check id, fixture state, host spec, config, status, text in the message,
#  text in the remedy)
CASES = [
    ("bare-metal", F.tuned(flags=F.AMD_FLAGS + ("hypervisor",)), None, TR_CFG, WARN,
     "itself a virtual machine", "bare metal"),
    ("cpu-virt", F.tuned(flags=("fpu", "constant_tsc", "nonstop_tsc"),
                         devices=("dev/vhost-net", "dev/net/tun")), None, TR_CFG, FAIL,
     "neither vmx (Intel VT-x) nor svm", "enable AMD-V (SVM) in the firmware"),
    ("cpu-virt", F.tuned(flags=("fpu", "hypervisor", "constant_tsc", "nonstop_tsc")), None,
     TR_CFG, WARN, "yet there is a /dev/kvm (via kvm_amd)", "kvm_amd nested=1"),
    ("kvm-module", F.tuned(modules=()), None, TR_CFG, FAIL, "kvm module is not loaded",
     "modprobe kvm_amd"),
    ("kvm-module", F.tuned(modules=("kvm",)), None, TR_CFG, FAIL, "no vendor module (kvm_amd)",
     "AMD-V (SVM) is off in the firmware"),
    ("kvm", F.tuned(devices=("dev/vhost-net", "dev/net/tun")), None, TR_CFG, FAIL,
     "/dev/kvm does not exist", "modprobe kvm_amd"),
    ("vhost-net", F.tuned(devices=("dev/kvm", "dev/net/tun")), None, TR_CFG, WARN,
     "/dev/vhost-net is missing", "modprobe vhost_net"),
    ("tun", F.tuned(devices=("dev/kvm", "dev/vhost-net")), None, TR_CFG, FAIL,
     "/dev/net/tun is missing", "modprobe tun"),
    ("iommu-firmware", F.tuned(acpi_tables=("DSDT",)), small(), None, WARN,
     "no ACPI IVRS table", "enable AMD-Vi"),
    ("iommu", F.tuned(), small(), None, FAIL,
     "IOMMU is off: no groups under /sys/kernel/iommu_groups",
     "add iommu=pt to the kernel command line"),
    ("iommu", F.intel(acpi_tables=("DSDT",), cmdline="ro intel_iommu=off"), small(), None,
     FAIL, "IOMMU is off", "remove intel_iommu=off and add intel_iommu=on iommu=pt to the "
     "kernel command line (and enable the IOMMU in the firmware setup)"),
    ("iommu", F.tuned(), small(), ANY_CFG, WARN, "(no VM of", "add iommu=pt"),
    ("iommu-pt", F.tuned(cmdline="ro quiet"), None, TR_CFG, WARN, "group types DMA",
     "add iommu=pt"),
    ("irq-remapping", F.tuned(interrupts=F.PLAIN_INTERRUPTS), None, TR_CFG, FAIL,
     "interrupt remapping is not evident", "enable x2APIC"),
    ("irq-remapping", F.intel(interrupts=F.PLAIN_INTERRUPTS), hostgen.xeon_2s20c2t(), None,
     FAIL, "supported by the hardware but off", "interrupt remapping in the firmware"),
    ("irq-remapping", F.intel(interrupts=F.PLAIN_INTERRUPTS, vtd_ecap="f02050"),
     hostgen.xeon_2s20c2t(), None, FAIL, "has no interrupt remapping",
     "allow_unsafe_interrupts=1 works but is insecure"),
    ("irq-remapping", F.tuned(interrupts=F.PLAIN_INTERRUPTS, cmdline="ro intremap=off"),
     None, TR_CFG, FAIL, "disabled (intremap=off)", "remove intremap=off"),
    ("vfio", F.tuned(modules=("kvm", "kvm_amd"), vfio_module_file=False), small(), None, FAIL,
     "vfio-pci is not available for kernel 6.1.0-rt-amd64", "linux-modules-extra"),
    ("vfio", F.tuned(modules=("kvm", "kvm_amd"), cmdline="ro nomodule"), small(), None, FAIL,
     "'nomodule' forbids loading modules", "remove nomodule"),
    ("vfio", F.tuned(modules=("kvm", "kvm_amd"), vfio_module_file=False), small(), ANY_CFG,
     WARN, "(no VM of", "linux-modules-extra"),
    ("preempt-rt", F.stock(), None, TR_CFG, WARN,
     "6.1.0-21-amd64 is not a PREEMPT_RT kernel (PREEMPT_DYNAMIC)", "preempt=full"),
    ("isolcpus", F.tuned(isolated="8-15", cmdline="ro isolcpus=8-15"), None, TR_CFG, WARN,
     "isolcpus leaves CPUs 16-23 of rt VM(s) RedHawk-8.4-RT out (now: 8-15)",
     "change isolcpus=8-15 to isolcpus=managed_irq,domain,8-23 on the kernel command line"),
    ("nohz_full", F.tuned(nohz_full=None), None, TR_CFG, WARN, "built without NO_HZ_FULL",
     "CONFIG_NO_HZ_FULL=y (the PREEMPT_RT kernels of the distributions have it) with "
     "nohz_full=8-23"),
    ("rcu_nocbs", F.tuned(nohz_full="", cmdline="ro rcu_nocbs=8-11"), None, TR_CFG, WARN,
     "rcu_nocbs leaves CPUs 12-23", "change rcu_nocbs=8-11 to rcu_nocbs=8-23"),
    ("irqaffinity", F.tuned(cmdline="ro irqaffinity=0-15"), None, TR_CFG, WARN,
     "may start on CPUs 8-15 of rt VM(s) RedHawk-8.4-RT",
     "change irqaffinity=0-15 to irqaffinity=0-7 on the kernel command line"),
    ("irqbalance", F.stock(), None, TR_CFG, WARN, "irqbalance is running (pid 640)",
     "IRQBALANCE_BANNED_CPULIST=8-23,40-55"),
    ("governor", F.stock(), None, TR_CFG, WARN,
     "rt CPUs change frequency under load (schedutil on 8-23)",
     "/sys/devices/system/cpu/cpu{8..23}/cpufreq/scaling_governor"),
    ("cstates", F.stock(), None, TR_CFG, WARN, "C2 (350 us) on 8-23",
     "echo 1 | tee /sys/devices/system/cpu/cpu{8..23}/cpuidle/state2/disable"),
    ("cstates", F.stock(cpuidle_driver="intel_idle"), None, None, WARN, "C2 (350 us) on 0-63",
     "intel_idle.max_cstate=1"),
    ("rt-throttling", F.stock(), None, TR_CFG, WARN, "throttled to 95% of each CPU",
     "sysctl -w kernel.sched_rt_runtime_us=-1"),
    ("thp", F.stock(), None, TR_CFG, WARN, "always on", "transparent_hugepage=never"),
    ("ksm", F.stock(), None, TR_CFG, WARN, "KSM is merging pages", "echo 2 > /sys/kernel/mm/ksm/run"),
    ("numa-balancing", F.stock(), None, TR_CFG, WARN, "NUMA balancing is on",
     "sysctl -w kernel.numa_balancing=0"),
    ("timer-migration", F.stock(), None, TR_CFG, WARN, "timer migration is on",
     "sysctl -w kernel.timer_migration=0"),
    ("nmi-watchdog", F.stock(), None, TR_CFG, WARN, "NMI watchdog interrupts every CPU",
     "sysctl -w kernel.nmi_watchdog=0"),
    ("clocksource", F.tuned(clocksource="hpet"), None, TR_CFG, WARN,
     "the clocksource is hpet, not tsc",
     "echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource"),
    ("clocksource", F.tuned(flags=("svm", "constant_tsc")), None, TR_CFG, WARN,
     "TSC is not invariant (no nonstop_tsc)", "invariant TSC"),
    ("memlock", F.stock(), None, TR_CFG, WARN, "may lock only 8 MiB", "ulimit -l unlimited"),
    ("hugepages", F.stock(), None, TR_CFG, WARN, "no huge pages reserved on node(s) 1-2",
     "/sys/devices/system/node/node{1,2}/hugepages/hugepages-1048576kB/nr_hugepages"),
    ("cgroup", F.tuned(cgroup_controllers="cpu io memory pids"), None, TR_CFG, WARN,
     "cgroup v2 without the cpuset controller(s)", "CONFIG_CPUSETS"),
    ("cgroup", F.tuned(mounts="proc /proc proc rw 0 0\n"), None, TR_CFG, FAIL,
     "no cgroup file system is mounted", "mount cgroup2"),
    ("ptp-kvm", F.tuned(clocksource="hpet"), None, TR_CFG, WARN,
     "ptp_kvm cannot read this host's clock", "refclock PHC /dev/ptp_kvm poll 3 dpoll -2"),
]


@pytest.mark.parametrize("check_id, state, spec, config, status, message, remedy", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_check_fails_with_a_remedy(host, check_id, state, spec, config, status, message,
                                   remedy):
    result = checks(host(state, spec), config)[check_id]
    assert result.status is status, result.finding
    assert message in result.finding.message
    assert remedy in result.finding.remedy


# (check id, state, spec, config, text in the PASS message): passing
# variants beyond the tuned host.
PASSING = [
    ("cpu-virt", F.intel(), hostgen.xeon_2s20c2t(), None, "Intel VT-x (flag vmx)"),
    ("kvm-module", F.intel(), hostgen.xeon_2s20c2t(), None, "kvm and kvm_intel loaded"),
    ("nested", F.intel(), hostgen.xeon_2s20c2t(), None, "nested virtualization on (kvm_intel"),
    ("nested", F.tuned(module_params={"kvm_amd/nested": "0"}), None, TR_CFG,
     "nested virtualization off (kvm_amd.nested=0)"),
    ("secure-guest", F.tuned(module_params={"kvm_amd/sev": "Y"},
                             devices=("dev/kvm", "dev/sev")), None, TR_CFG, "AMD SEV"),
    ("iommu-firmware", F.intel(), hostgen.xeon_2s20c2t(), None, "ACPI DMAR table: Intel VT-d"),
    ("iommu-pt", F.tuned(cmdline="ro", group_type="identity"), None, TR_CFG,
     "default domain type identity"),
    ("irq-remapping", F.intel(), hostgen.xeon_2s20c2t(), None, "IR- interrupt chips"),
    ("vfio", F.tuned(modules=("kvm", "kvm_amd")), small(), None,
     "a module (/lib/modules/6.1.0-rt-amd64/kernel/drivers/vfio/pci/vfio-pci.ko.xz)"),
    ("preempt-rt", F.tuned(realtime_file=False), None, TR_CFG, "is a PREEMPT_RT kernel"),
    ("rcu_nocbs", F.tuned(cmdline="ro nohz_full=8-23"), None, TR_CFG,
     "rcu_nocbs covers CPUs 8-23"),  # nohz_full implies rcu_nocbs
    ("isolcpus", F.tuned(), None, None, "isolcpus: CPUs 8-23 isolated from the scheduler"),
    ("isolcpus", F.tuned(isolated=None, cmdline="ro isolcpus=domain,8-23"), None, TR_CFG,
     "covers CPUs 8-23"),  # a kernel without the isolated file: the command line
    ("isolcpus", F.stock(), None, ANY_CFG, "no rt VM in"),
    ("governor", F.tuned(governor=None), None, TR_CFG, "no cpufreq driver"),
    ("cstates", F.tuned(idle_states=()), None, TR_CFG, "no cpuidle states"),
    ("thp", F.tuned(thp="always [madvise] never"), None, TR_CFG, "madvise"),
    ("thp", F.tuned(thp=None), None, TR_CFG, "no transparent huge pages"),
    ("ksm", F.tuned(ksm=None), None, TR_CFG, "no KSM"),
    ("hugepages", F.stock(), None, None, "no huge pages reserved"),
    ("smt", F.tuned(), small(), None, "no SMT"),
    ("cgroup", F.tuned(mounts=F.CGROUP1_MOUNTS), None, TR_CFG,
     "cgroup hybrid; controllers cpuset, cpu, cpuacct, memory, devices, blkio available"),
]


@pytest.mark.parametrize("check_id, state, spec, config, message", PASSING,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(PASSING)])
def test_check_passes(host, check_id, state, spec, config, message):
    result = checks(host(state, spec), config)[check_id]
    assert result.status is PASS, result.finding
    assert message in result.finding.message
    assert result.finding.remedy is None


# -- the config-aware suggestions on the Threadripper example ------------------
def test_threadripper_suggests_exact_kernel_parameters(host):
    """The rt VM runs on CPUs 8-23 and owns their siblings 40-55: isolation
    covers where it runs, interrupts stay off everything it owns."""
    found = checks(host(F.stock()), TR_CFG)
    remedies = {i: found[i].finding.remedy for i in
                ("isolcpus", "nohz_full", "rcu_nocbs", "irqaffinity")}
    assert remedies == {
        "isolcpus": "add isolcpus=managed_irq,domain,8-23 to the kernel command line",
        "nohz_full": "add nohz_full=8-23 to the kernel command line",
        "rcu_nocbs": "add rcu_nocbs=8-23 to the kernel command line",
        "irqaffinity": "add irqaffinity=0-7,24-39,56-63 to the kernel command line"}
    assert found["irqaffinity"].finding.message.startswith(
        "device interrupts may start on CPUs 8-23,40-55 of rt VM(s) RedHawk-8.4-RT")
    assert found["smt-siblings"].finding.message == (
        "siblings known for every rt CPU; 40-55 go offline while the rt VMs run")


def test_threadripper_text_report_gathers_the_command_line(host):
    out = run("-f", str(TR_CFG), "-c", TEST_URI, root=host(F.stock()), check=0).stdout
    assert ("kernel command line: add or change iommu=pt isolcpus=managed_irq,domain,8-23 "
            "nohz_full=8-23 rcu_nocbs=8-23 irqaffinity=0-7,24-39,56-63 "
            "transparent_hugepage=never") in out
    assert "WARN  isolcpus             isolcpus leaves CPUs 8-23" in out
    assert "      -> add isolcpus=managed_irq,domain,8-23 to the kernel command line" in out


def test_without_a_config_the_suggestion_says_how_to_get_ranges(host):
    found = checks(host(F.stock()), None)
    assert found["isolcpus"].status is WARN
    assert found["isolcpus"].finding.message == "no CPU is isolated from the scheduler (isolcpus)"
    assert "run with -f FILE for the exact ranges" in found["isolcpus"].finding.remedy
    assert found["isolcpus"].finding.kernel_params == ()
    assert "config" not in found and "smt-siblings" not in found and "rt-memory" not in found


def test_a_sysfs_only_capture_says_what_it_cannot_tell(tmp_path):
    root = hostgen.build_host(tmp_path / "capture", hostgen.threadripper_5975wx())
    shutil.rmtree(root / "proc", ignore_errors=True)   # a copy of /sys alone
    found = checks(root, None)
    for check_id, path in (("cpu-virt", "/proc/cpuinfo"), ("irqbalance", "/proc/1/comm"),
                           ("cgroup", "/proc/mounts"), ("memlock", "/proc/self/limits"),
                           ("preempt-rt", "/proc/sys/kernel/version")):
        result = found[check_id]
        assert result.status is SKIP
        assert result.finding.message == f"not checked: {path} is missing below {root}"
        assert f"capture {path} too" in result.finding.remedy


SKIPPED_IN_A_SYSFS_CAPTURE = {
    "bare-metal": "/proc/cpuinfo is missing", "kvm": "/dev is missing",
    "nested": "no kvm_intel or kvm_amd module is loaded", "vhost-net": "/dev is missing",
    "tun": "/dev is missing", "irq-remapping": "/proc/interrupts is missing",
    "qemu": "libvirt is unreachable", "rcu_nocbs": "/proc/cmdline is missing",
    "irqaffinity": "/proc/cmdline is missing", "thp": "/sys/kernel/mm/transparent_hugepage",
    "ksm": "/sys/kernel/mm/ksm/run is missing",
    "numa-balancing": "/proc/sys/kernel/numa_balancing is missing",
    "timer-migration": "/proc/sys/kernel/timer_migration is missing",
    "nmi-watchdog": "/proc/sys/kernel/nmi_watchdog is missing",
    "ptp-kvm": "the host's clocksource is unknown"}


def test_a_check_not_performed_says_skip_with_why_never_pass(tmp_path):
    root = hostgen.build_host(tmp_path / "capture", hostgen.threadripper_5975wx())
    shutil.rmtree(root / "proc")  # a copy of /sys alone
    found = checks(root, None, uri=UNREACHABLE)
    for check_id, why in SKIPPED_IN_A_SYSFS_CAPTURE.items():
        assert found[check_id].status is SKIP, found[check_id]
        assert why in found[check_id].finding.message
    for r in found.values():
        assert (r.status is SKIP) == r.finding.message.startswith("not checked: "), r
    proc = run("--json", "-c", UNREACHABLE, root=root, check=1)
    data = json.loads(proc.stdout)
    statuses = [c["status"] for c in data["checks"]]
    assert {c["id"] for c in data["checks"] if c["status"] == "SKIP"} >= set(
        SKIPPED_IN_A_SYSFS_CAPTURE)
    assert (data["fails"], data["warnings"], data["skips"], data["passes"]) == tuple(
        statuses.count(s) for s in ("FAIL", "WARN", "SKIP", "PASS"))
    out = run("-c", UNREACHABLE, root=root, check=1).stdout
    assert re.search(r"^SKIP  kvm +not checked: /dev is missing below ", out, re.M)
    assert f"      -> mount procfs and sysfs below {root}, or capture /dev too" in out
    assert out.rstrip().splitlines()[-1].startswith(
        f"{data['fails']} FAIL, {data['warnings']} WARN, {data['passes']} PASS, "
        f"{data['skips']} SKIP: ")


def test_smt_without_its_control_file_is_told_by_the_topology(host):
    root = host(F.tuned())
    shutil.rmtree(root / hostgen.CPU / "smt")
    assert checks(root)["smt"].finding.message.startswith("SMT: 2 threads per core (no ")
    root = host(F.tuned(), small())
    shutil.rmtree(root / hostgen.CPU / "smt")
    assert checks(root)["smt"].finding.message == "no SMT: one thread per core"


def test_ptp_kvm_guidance_names_dev_ptp_kvm_and_every_chrony_step(host):
    f = checks(host(F.tuned()))["ptp-kvm"].finding
    assert f.status is PASS
    for step in ("modprobe ptp_kvm", "/etc/modules-load.d/ptp_kvm.conf",
                 "'refclock PHC /dev/ptp_kvm poll 3 dpoll -2' to chrony.conf",
                 "a passthrough NIC", "systemctl restart chronyd", "chronyc sources"):
        assert step in f.message, step
    assert "/dev/ptp0 poll" not in f.message


def test_skip_is_left_out_of_the_kernel_command_line():
    report = Report((Result("a", Finding(SKIP, "not checked: x", "y", ("nohz_full=1",))),
                     Result("b", warn("x", "y", params=("iommu=pt",)))))
    assert report.kernel_params == ("iommu=pt",)
    assert (report.skips, report.warnings, report.passes, report.fails) == (1, 1, 0, 0)
    assert format_report(Report((Result("kvm", ok("k")), Result("tun", Finding(
        SKIP, "not checked: t")))), quiet=True).splitlines()[0].startswith("SKIP  tun")


# -- passthrough devices --------------------------------------------------------
def test_pcidevs_of_the_example_are_ready(host):
    found = checks(host(F.tuned()))
    assert found["pcidev:0000:22:00.1"].finding.message == (
        "RedHawk-8.4-RT: 0000:22:00.1 bound to vfio-pci, IOMMU group 11 wholly given to "
        "the VM, NUMA node 1")


def test_pcidev_bound_to_a_host_driver_is_a_warning(host):
    spec = hostgen.threadripper_5975wx()
    pci = tuple(replace(d, driver="nouveau") if d.address == "0000:21:00.0" else d
                for d in spec.pci)
    found = checks(host(F.tuned(), replace(spec, pci=pci)))
    result = found["pcidev:0000:21:00.0"]
    assert result.status is WARN
    assert "bound to host driver nouveau" in result.finding.message
    assert "driverctl set-override 0000:21:00.0 vfio-pci" in result.finding.remedy
    assert "vfio-pci.ids=10de:1234" in result.finding.remedy


def test_pcidev_split_group_unknown_device_and_far_node(host):
    root = host(F.tuned())
    found = checks(root, rt_cfg(pcidevs="0000:22:00.0 0000:99:00.0"))
    split = found["pcidev:0000:22:00.0"]
    assert split.status is FAIL
    assert "IOMMU group 11 also holds 0000:22:00.1" in split.finding.message
    assert "add 0000:22:00.1 to pcidevs of RedHawk-8.4-RT" in split.finding.remedy
    assert found["pcidev:0000:99:00.0"].status is FAIL
    assert "does not exist on this host" in found["pcidev:0000:99:00.0"].finding.message
    assert found["config"].status is WARN  # kvmrt-validate-config finds errors
    far = checks(root, rt_cfg(cpuset="n1", pcidevs="0000:21:00.0"))["pcidev:0000:21:00.0"]
    assert far.status is WARN
    assert "on NUMA node 2 while the VM's CPUs are on node(s) 1" in far.finding.message


def test_pcidev_without_iommu_group(host):
    found = checks(host(F.tuned(), small()), rt_cfg(cpuset="1-3", pcidevs="0000:00:03.0"))
    result = found["pcidev:0000:00:03.0"]
    assert result.status is FAIL and "has no IOMMU group" in result.finding.message


# -- SMT siblings ---------------------------------------------------------------
def test_smt_sibling_that_cannot_go_offline_fails(host):
    """CPU 32's sibling is CPU 0, which has no online file: kvmrt could not
    take it offline, so the plan must fail before anything is changed."""
    found = checks(host(F.tuned()), rt_cfg(cpuset="32-39", pcidevs=""))
    result = found["smt-siblings"]
    assert result.status is FAIL
    assert result.finding.message.startswith("CPU(s) 0 must go offline")


def test_offline_rt_cpu_hides_its_siblings(host):
    found = checks(host(F.tuned(), hostgen.offline_4c2t()), rt_cfg(cpuset="1-3,5", pcidevs=""))
    result = found["smt-siblings"]
    assert result.status is WARN and "CPU(s) 5 of rt VMs are offline" in result.finding.message
    assert result.finding.remedy == "echo 1 | tee /sys/devices/system/cpu/cpu5/online"


# -- libvirt ----------------------------------------------------------------------
def test_libvirt_test_driver_is_reachable(host):
    found = checks(host(F.tuned()), uri=TEST_URI)
    assert found["libvirt"].status is PASS
    assert re.fullmatch(r"libvirt \d+\.\d+\.\d+ answers at test:///default "
                        r"\(TEST driver, version 0\.0\.2\)", found["libvirt"].finding.message)


def test_libvirt_unreachable_fails_fast_and_says_what_to_do(host):
    found = checks(host(F.tuned()), uri=UNREACHABLE)
    result = found["libvirt"]
    assert result.status is FAIL
    assert result.finding.message == (f"libvirt is unreachable at {UNREACHABLE}: Failed to "
                                      "connect socket to '/nonexistent': No such file or "
                                      "directory")
    assert "is libvirtd running?" in result.finding.remedy
    assert found["qemu"].finding.message == "not checked: libvirt is unreachable (see libvirt)"
    assert found["qemu"].status is SKIP and found["rt-memory"].status is SKIP
    assert found["rt-memory"].finding.message.startswith(
        "not checked: the VMs' memory is unknown while libvirt is unreachable; "
        "node(s) 1-2 have 64 GiB, 60 GiB free")


@pytest.mark.parametrize("gib, running, status, text", [
    (16, False, PASS, "RedHawk-8.4-RT has 16 GiB; node(s) 1-2 have 64 GiB, 60 GiB free"),
    (62, False, WARN, "the rt VMs that are shut off do not fit in what is free now"),
    (62, True, PASS, "RedHawk-8.4-RT has 62 GiB (running)"),
    (100, False, FAIL, "the rt VMs need more than the nodes hold"),
])
def test_rt_memory_against_its_nodes(host, tmp_path, gib, running, status, text):
    found = checks(host(F.tuned()), uri=node_xml(tmp_path, gib, running=running))
    assert found["rt-memory"].status is status
    assert text in found["rt-memory"].finding.message


def test_rt_memory_of_a_vm_libvirt_does_not_know(host):
    found = checks(host(F.tuned()), uri=TEST_URI)
    assert found["rt-memory"].finding.message.startswith(
        "RedHawk-8.4-RT is not defined in libvirt (memory unknown)")


def test_an_ordinary_user_refused_by_the_system_daemon_is_not_a_failure():
    def unreachable(text):
        return LibvirtUnreachable("qemu:///system", text, "hint")

    assert _refused(unreachable("internal error: Unable to get system bus connection: "
                                "Could not connect: No such file or directory"))
    assert _refused(unreachable("authentication failed: polkit: access denied"))
    assert _refused(unreachable("Failed to connect socket to '/run/libvirt/libvirt-sock': "
                                "Permission denied"))
    assert not _refused(unreachable("Failed to connect socket to '/run/libvirt/libvirt-sock'"
                                    ": No such file or directory"))


QEMU_CAPS = """<capabilities><host><cpu><arch>x86_64</arch></cpu></host>
<guest><os_type>hvm</os_type><arch name='i686'><emulator>/usr/bin/qemu-system-i386</emulator>
<domain type='qemu'/></arch></guest>
<guest><os_type>hvm</os_type><arch name='x86_64'><wordsize>64</wordsize>
<emulator>/usr/bin/qemu-system-x86_64</emulator><machine>pc</machine>
<domain type='qemu'/>{kvm}</arch></guest></capabilities>"""


def test_qemu_capabilities_tell_kvm_from_emulation():
    arch, found = guests(QEMU_CAPS.format(kvm="<domain type='kvm'/>"))
    native = [g for g in found if g.arch == arch]
    assert arch == "x86_64" and native[0].emulator == "/usr/bin/qemu-system-x86_64"
    assert native[0].domain_types == {"qemu", "kvm"}
    _, found = guests(QEMU_CAPS.format(kvm=""))
    assert [g.domain_types for g in found if g.arch == "x86_64"] == [{"qemu"}]


def test_qemu_check_against_the_system_daemon(host):
    """Needs a running libvirtd with QEMU (scripts/start-libvirtd starts one)."""
    result = checks(host(F.tuned()), uri="qemu:///system")
    if result["libvirt"].status is not PASS:
        pytest.skip(f"no libvirtd at qemu:///system: {result['libvirt'].finding.message}")
    qemu_kvm = result["qemu"]
    assert qemu_kvm.status in (PASS, FAIL)
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        assert qemu_kvm.status is PASS, qemu_kvm.finding
        assert re.match(r"QEMU \d+\.\d+\.\d+ \(/\S+\) runs \w+ guests with KVM",
                        qemu_kvm.finding.message)


# -- the command ------------------------------------------------------------------
def test_json_schema(host):
    proc = run("--json", "-f", str(TR_CFG), "-c", TEST_URI, root=host(F.stock()), check=0)
    data = json.loads(proc.stdout)
    assert set(data) == {"checks", "fails", "warnings", "skips", "passes", "kernel_cmdline"}
    for c in data["checks"]:
        assert set(c) == {"id", "status", "message", "remedy"}
        assert c["status"] in ("PASS", "WARN", "FAIL")
        assert (c["remedy"] is None) == (c["status"] == "PASS")
    assert data["skips"] == 0 and data["passes"] == sum(
        c["status"] == "PASS" for c in data["checks"])
    assert data["fails"] == sum(c["status"] == "FAIL" for c in data["checks"]) == 0
    assert data["warnings"] == sum(c["status"] == "WARN" for c in data["checks"]) == 18
    assert data["kernel_cmdline"].startswith("iommu=pt isolcpus=managed_irq,domain,8-23 ")
    ids = [c["id"] for c in data["checks"]]
    assert ids[:3] == ["config", "bare-metal", "cpu-virt"] and ids[-1] == "ptp-kvm"


def test_quiet_prints_only_warnings_and_failures(host):
    root = host(F.tuned(), small())
    out = run("-q", "-c", TEST_URI, root=root, check=1).stdout
    lines = [line for line in out.splitlines() if line[:4] in ("PASS", "WARN", "FAIL", "SKIP")]
    assert lines and not [line for line in lines if line.startswith("PASS")]
    assert "FAIL  iommu" in out and out.rstrip().splitlines()[-1].startswith("1 FAIL, ")
    assert "SKIP  iommu-pt" in out and out.rstrip().endswith(", 2 SKIP: not fit to be a "
                                                           "real-time KVM host until the "
                                                           "FAILs are fixed")
    data = json.loads(run("-q", "--json", "-c", TEST_URI, root=root).stdout)
    assert {c["status"] for c in data["checks"]} == {"WARN", "FAIL", "SKIP"}


def test_quiet_prints_nothing_when_all_pass():
    report = Report((Result("kvm", ok("/dev/kvm is usable")),))
    assert format_report(report, quiet=True) == ""
    assert format_report(report).endswith("1 PASS: fit to be a real-time KVM host\n")


def test_text_lines_are_aligned_with_remedies_below(host):
    out = run("-c", TEST_URI, root=host(F.tuned(), small()), check=1).stdout
    lines = out.splitlines()
    rows = [line for line in lines if line[:4] in ("PASS", "WARN", "FAIL")]
    columns = {len(re.match(r"\w{4}  \S+\s+", row).group(0)) for row in rows}
    assert len(columns) == 1  # every message starts in the same column
    i = next(n for n, line in enumerate(lines) if line.startswith("FAIL  iommu "))
    assert re.fullmatch(r"FAIL  iommu {2,}IOMMU is off: no groups under "
                        r"/sys/kernel/iommu_groups", lines[i])
    assert lines[i + 1] == "      -> add iommu=pt to the kernel command line"


def test_exit_codes(host, tmp_path):
    run("-c", TEST_URI, root=host(F.stock()), check=0)          # warnings only
    run("-c", TEST_URI, root=host(F.tuned(), small()), check=1)  # no IOMMU: FAIL
    run("-c", UNREACHABLE, root=host(F.tuned()), check=1)        # libvirt: FAIL
    assert run("--bogus", check=2).stderr.startswith("Usage:")


@pytest.mark.parametrize("args, make_root, message", [
    (("-f", "/nonexistent/kvmrt.cfg"), False, "/nonexistent/kvmrt.cfg: no such file"),
    ((), True, "no sysfs CPU directory"),
])
def test_bad_input_gets_one_line(tmp_path, args, make_root, message):
    root = tmp_path / "empty"
    root.mkdir()
    proc = run(*args, "-c", TEST_URI, root=root, check=1)
    assert proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help():
    out = run("--help", check=0).stdout
    for option in ("-f, --file FILE", "-c, --connect URI", "--json", "-q, --quiet"):
        assert option in out
    text = " ".join(out.split())
    assert "(PASS, WARN, FAIL, or SKIP for a check that was not performed, with why)" in text
    assert "Exits 1 when a check fails" in text


def test_never_changes_the_host(host):
    root = host(F.stock())
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    run("-f", str(TR_CFG), "-c", TEST_URI, root=root)
    after = {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}
    assert before == after


# -- an ordinary user ----------------------------------------------------------------
# The interpreter lives below /root (mode 0700 here), so the child imports
# kvmrt (and what click and kvmrt import lazily: the command body imports
# the host checks) as root, then drops to uid 65534 for good, before it reads
# the host.
AS_NOBODY = """
import os, sys
import difflib, fcntl, gettext, json, locale, resource, shlex
import kvmrt.commands.validate_host as command
import kvmrt.host, kvmrt.hostcheck
os.setgroups([])
os.setgid(65534)
os.setuid(65534)
sys.argv = ["kvmrt-validate-host"] + sys.argv[1:]
command.main()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to uid 65534")
def test_an_ordinary_user_is_told_what_needs_root():
    """uid 65534 cannot open the fixture's root-only /dev/kvm nor see other
    users' tasks under hidepid: both checks say so instead of failing."""
    base = Path(tempfile.mkdtemp(prefix="kvmrt-nobody-"))
    try:
        base.chmod(0o755)
        mounts = F.CGROUP2_MOUNTS.replace("proc /proc proc rw,", "proc /proc proc rw,hidepid=2,")
        root = F.build_rt_host(base / "host", hostgen.threadripper_5975wx(),
                               F.tuned(mounts=mounts, tasks={}))
        (root / "dev/kvm").chmod(0o600)
        env = {**os.environ, "KVMRT_FSROOT": str(root)}
        proc = subprocess.run([sys.executable, "-c", AS_NOBODY, "--json", "-c", TEST_URI],
                              capture_output=True, text=True, env=env, timeout=60)
    finally:
        shutil.rmtree(base)
    assert proc.returncode == 0, proc.stderr
    found = {c["id"]: c for c in json.loads(proc.stdout)["checks"]}
    assert found["kvm"]["status"] == "SKIP"
    assert found["kvm"]["message"].startswith(
        "not checked: /dev/kvm exists, but uid 65534 may not open it")
    assert found["kvm"]["remedy"] == "run kvmrt-validate-host as root to check that KVM is usable"
    assert found["irqbalance"]["status"] == "SKIP"
    assert "hidepid=2" in found["irqbalance"]["message"]
    assert found["libvirt"]["status"] == "PASS"
    assert [c for c in found.values() if c["status"] == "FAIL"] == []


# -- this machine ---------------------------------------------------------------------
def _kvm_usable() -> bool:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


def _preempt_rt() -> bool:
    version = Path("/proc/sys/kernel/version").read_text()
    realtime = Path("/sys/kernel/realtime")
    return "PREEMPT_RT" in version or (realtime.exists() and realtime.read_text().strip() == "1")


def _running(comm: str) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                return True
        except OSError:
            continue
    return False


def test_this_machine_is_pictured_truly():
    """On the machine the tests run on (here: a VM with KVM through kvm_pvm,
    no IOMMU, no PREEMPT_RT, no irqbalance), each verdict matches what the
    kernel says when asked directly."""
    proc = run("--json", "-c", TEST_URI)
    data = json.loads(proc.stdout)
    found = {c["id"]: c for c in data["checks"]}
    assert (found["kvm"]["status"] == "PASS") == _kvm_usable()
    groups = os.listdir("/sys/kernel/iommu_groups") if os.path.isdir(
        "/sys/kernel/iommu_groups") else []
    assert (found["iommu"]["status"] == "PASS") == bool(groups)
    assert (found["preempt-rt"]["status"] == "PASS") == _preempt_rt()
    assert (found["irqbalance"]["status"] == "PASS") == (not _running("irqbalance"))
    assert found["libvirt"]["status"] == "PASS"
    soft = resource.getrlimit(resource.RLIMIT_MEMLOCK)[0]
    if soft != resource.RLIM_INFINITY:
        assert f"may lock only {format_bytes(soft)}" in found["memlock"]["message"] or \
            found["memlock"]["status"] == "PASS"
    assert proc.returncode == (1 if data["fails"] else 0)
    # This machine, as it is today.
    if _kvm_usable() and not groups and not _preempt_rt():
        assert found["kvm"]["message"].startswith("/dev/kvm is usable (opened read-write")
        assert found["iommu"]["message"] == ("IOMMU is off: no groups under "
                                             "/sys/kernel/iommu_groups")
        assert found["preempt-rt"]["status"] == "WARN"


# -- parsers --------------------------------------------------------------------------
def test_kernel_cmdline_parsing():
    cmd = KernelCmdline.parse('BOOT_IMAGE=/vmlinuz intel-iommu=on isolcpus=1 '
                              'isolcpus=managed_irq,domain,8-23 nomodule '
                              'dyndbg="file foo.c +p" -- isolcpus=99 single')
    assert cmd.get("intel_iommu") == "on"  # - and _ are the same in names
    assert cmd.get("isolcpus") == "managed_irq,domain,8-23"  # the last one wins
    assert cmd.has("nomodule") and cmd.get("nomodule") is None
    assert cmd.get("dyndbg") == "file foo.c +p"
    assert not cmd.has("single")  # after --: init's arguments
    assert cmd.word("isolcpus") == "isolcpus=managed_irq,domain,8-23"


@pytest.mark.parametrize("text, cpus", [
    ("8-23", set(range(8, 24))), ("0,2-3", {0, 2, 3}), ("all", set(range(16))),
    ("12-N", {12, 13, 14, 15}), ("0-7:2/4", {0, 1, 4, 5}), ("", set()),
])
def test_kernel_cpulists(text, cpus):
    assert parse_kernel_cpulist(text, 16) == cpus


def test_small_parsers():
    assert parse_memlock(F._limits("unlimited")) is None
    assert parse_memlock(F._limits("8388608")) == 8 << 20
    assert CpuInfo.parse("vendor_id\t: AuthenticAMD\nflags\t\t: svm x\n\nvendor_id : X\n").amd
    assert [format_bytes(n) for n in (512, 8 << 20, 1536 << 20, 64 << 30)] == [
        "512 B", "8 MiB", "1.5 GiB", "64 GiB"]
    assert [brace_cpus(c) for c in ({5}, range(8, 24), {0, 1, 2, 24, 25, 30})] == [
        "5", "{8..23}", "{{0..2},{24..25},30}"]


def test_report_gathers_kernel_parameters_of_warnings_only():
    report = Report((Result("a", warn("x", "y", params=("iommu=pt", "nohz_full=1"))),
                     Result("b", Finding(PASS, "z", None, ("ignored=1",))),
                     Result("c", warn("x", "y", params=("iommu=pt",)))))
    assert report.kernel_params == ("iommu=pt", "nohz_full=1")
    assert report.as_json()["kernel_cmdline"] == "iommu=pt nohz_full=1"
    assert report.exit_code == 0 and report.warnings == 2


def test_check_ids_are_stable_and_documented():
    ids = [c.id for c in REGISTRY]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z][a-z0-9_-]*", i) for i in ids)
    assert all(c.doc for c in REGISTRY)
    man = (Path(__file__).parent.parent / "man/kvmrt-validate-host.1").read_text()
    man = man.replace("\\-", "-")
    missing = [i for i in ids if not re.search(rf"^\.BI? {re.escape(i)}\b", man, re.M)]
    assert not missing, f"check ids missing from the man page: {missing}"



# -- CPU 0, and parameters the kernel did not apply ----------------------------------
def test_isolation_never_suggests_the_boot_cpu(host, tmp_path):
    root = host(F.stock())
    cfg = tmp_path / "k.cfg"
    cfg.write_text(rt_cfg(cpuset="0-7", pcidevs=""))
    found = checks(root, rt_cfg(cpuset="0-7", pcidevs=""))
    for name in ("isolcpus", "nohz_full", "rcu_nocbs"):
        f = found[name].finding
        assert found[name].status is WARN
        assert "CPU 0, the boot CPU, is left out" in f.message and "rt-boot-cpu" in f.message
        assert f.kernel_params and all(
            p.rpartition("=")[2].rpartition(",")[2] == "1-7" for p in f.kernel_params), f
    report = json.loads(run("--json", "-f", str(cfg), "-c", TEST_URI, root=root).stdout)
    line = report["kernel_cmdline"]
    assert "nohz_full=1-7" in line and "isolcpus=managed_irq,domain,1-7" in line
    assert "rcu_nocbs=1-7" in line and not re.search(r"(nohz_full|rcu_nocbs|,)=?0", line)


def test_boot_cpu_left_out_of_a_tuned_host_still_passes(host):
    cmdline = "ro isolcpus=managed_irq,domain,1-7 nohz_full=1-7 rcu_nocbs=1-7"
    found = checks(host(F.tuned(cmdline=cmdline, isolated="1-7", nohz_full="1-7")),
                   rt_cfg(cpuset="0-7", pcidevs=""))
    for name in ("isolcpus", "nohz_full", "rcu_nocbs"):
        assert found[name].status is PASS, found[name].finding
        assert "covers CPUs 1-7" in found[name].finding.message


@pytest.mark.parametrize("name, state, applied", [
    ("nohz_full", F.tuned(nohz_full="8-15"), "/sys/devices/system/cpu/nohz_full: 8-15"),
    ("isolcpus", F.tuned(isolated=""), "/sys/devices/system/cpu/isolated: none"),
])
def test_a_parameter_the_kernel_did_not_apply_says_so_and_where_to_look(host, name, state,
                                                                          applied):
    found = checks(host(state))[name]
    f = found.finding
    assert found.status is WARN
    assert f.message.startswith(f"/proc/cmdline has {name}=")
    assert "but the kernel did not apply it to CPUs" in f.message and applied in f.message
    assert f.remedy.startswith("see why in the boot log: dmesg | grep -i ")
    assert "change" not in f.remedy and f.kernel_params == ()


def test_no_remedy_ever_changes_a_value_to_itself(host):
    for state in (F.tuned(nohz_full="8-15"), F.tuned(isolated="8-15"), F.stock(),
                  F.tuned(cmdline="ro irqaffinity=0-15")):
        for r in checks(host(state)).values():
            m = re.search(r"change (\S+) to (\S+)", r.finding.remedy or "")
            assert not m or m[1] != m[2], r
