"""Virtualization: what ``virt-host-validate qemu`` checks, explained.

Reads ``/proc/cpuinfo`` (vendor, flags ``vmx``/``svm``/``hypervisor``),
``/sys/module/kvm*`` (modules and their ``nested``, ``sev``, ``tdx``
parameters), and opens ``/dev/kvm`` read-write; ``/dev/vhost-net`` and
``/dev/net/tun`` must exist.
"""

from __future__ import annotations

from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.kernel import CpuInfo
from kvmrt.hostcheck.machine import KvmState
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, fail, ok, skipped, warn

_ON = {"y", "1", "on"}


def vendor_module(info: CpuInfo) -> str:
    """``kvm_intel`` or ``kvm_amd``; the Intel one when the vendor is unknown."""
    return "kvm_amd" if info.amd else "kvm_intel"


def firmware_switch(info: CpuInfo) -> str:
    return "AMD-V (SVM)" if info.amd else "Intel VT-x (VMX)"


@check("bare-metal")
def bare_metal(ctx: Context) -> Finding:
    """Whether this host is itself a virtual machine (CPU flag ``hypervisor``)."""
    info = ctx.require_cpuinfo()
    if "hypervisor" in info.flags:
        return warn("this host is itself a virtual machine (CPU flag 'hypervisor'): "
                    "its guests inherit the outer hypervisor's latency",
                    "use bare metal for real-time guarantees; a nested host is fine "
                    "for trying kvmrt out")
    return ok("bare metal (no 'hypervisor' CPU flag)")


@check("cpu-virt")
def cpu_virt(ctx: Context) -> Finding:
    """Hardware virtualization extensions: CPU flag ``vmx`` or ``svm``."""
    info = ctx.require_cpuinfo()
    if "vmx" in info.flags:
        return ok("CPU has Intel VT-x (flag vmx)")
    if "svm" in info.flags:
        return ok("CPU has AMD-V (flag svm)")
    if ctx.kvm.state in (KvmState.USABLE, KvmState.DENIED):
        modules = ", ".join(kvm_vendor_modules(ctx)) or "kvm"
        return warn(f"CPU flags show neither vmx nor svm, yet there is a /dev/kvm (via {modules}): "
                    "guests run without the hardware extensions real-time KVM is built on",
                    _enable_virt(info))
    return fail("no hardware virtualization: CPU flags show neither vmx (Intel VT-x) "
                "nor svm (AMD-V); QEMU could only emulate", _enable_virt(info))


def _enable_virt(info: CpuInfo) -> str:
    if "hypervisor" in info.flags:
        return (f"enable nested virtualization on the outer host ({vendor_module(info)} "
                "nested=1) and give this VM the host CPU model")
    return f"enable {firmware_switch(info)} in the firmware (BIOS/UEFI) setup, then power-cycle"


def kvm_vendor_modules(ctx: Context) -> list[str]:
    """Loaded (or built-in) ``kvm_*`` modules: kvm_intel, kvm_amd, others."""
    return [m for m in ctx.fs.listdir("sys/module", default=[]) if m.startswith("kvm_")]


@check("kvm-module")
def kvm_module(ctx: Context) -> Finding:
    """The kvm module and its vendor module (``/sys/module/kvm``, ``kvm_intel``/``kvm_amd``)."""
    vendors = kvm_vendor_modules(ctx)
    if ctx.fs.is_dir("sys/module/kvm") and vendors:
        return ok(f"kvm and {', '.join(vendors)} loaded")
    info = ctx.require_cpuinfo()
    want = vendor_module(info)
    load = f"modprobe {want} (and list it in /etc/modules-load.d/kvm.conf)"
    if not ctx.fs.is_dir("sys/module/kvm"):
        return fail("the kvm module is not loaded", load)
    return fail(f"kvm is loaded but no vendor module ({want})",
                f"{load}; if that fails, {firmware_switch(info)} is off in the firmware")


@check("kvm")
def kvm_device(ctx: Context) -> Finding:
    """``/dev/kvm`` exists and opens read-write, as QEMU opens it."""
    ctx.require_dev()
    access = ctx.kvm
    load = f"modprobe {vendor_module(ctx.cpuinfo or CpuInfo())}"
    if access.state is KvmState.USABLE:
        api = f", KVM API version {access.api_version}" if access.api_version else ""
        return ok(f"/dev/kvm is usable (opened read-write{api})")
    if access.state is KvmState.MISSING:
        return fail("/dev/kvm does not exist: KVM is unavailable", load)
    if access.state is KvmState.BROKEN:
        return fail(f"/dev/kvm cannot be opened: {access.detail}", load)
    if not ctx.machine.is_root:
        return skipped(f"/dev/kvm exists, but uid {ctx.machine.euid} may not open it "
                       "(that needs root or the kvm group; libvirt's QEMU has it)",
                       "run kvmrt-validate-host as root to check that KVM is usable")
    return fail(f"root cannot open /dev/kvm: {access.detail}",
                "check the device's mode (crw-rw---- root:kvm), a 'nodev' mount of /dev, "
                "and SELinux/AppArmor denials")


@check("nested")
def nested(ctx: Context) -> Finding:
    """Nested virtualization state (``/sys/module/kvm_intel/parameters/nested``)."""
    for module in ("kvm_intel", "kvm_amd"):
        value = ctx.read_module_param(module, "nested")
        if value is not None:
            state = "on" if value.lower() in _ON else "off"
            return ok(f"nested virtualization {state} ({module}.nested={value}); "
                      "nested guests are never real-time")
    return skipped("no kvm_intel or kvm_amd module is loaded, so there is no nested "
                   "parameter to read (see kvm-module)")


@check("vhost-net")
def vhost_net(ctx: Context) -> Finding:
    """``/dev/vhost-net``: in-kernel virtio-net backend."""
    ctx.require_dev()
    if ctx.fs.exists("dev/vhost-net"):
        return ok("/dev/vhost-net exists (in-kernel virtio-net)")
    return warn("/dev/vhost-net is missing: virtio networking runs in QEMU's userspace",
                "modprobe vhost_net (and list it in /etc/modules-load.d/vhost-net.conf)")


@check("tun")
def tun(ctx: Context) -> Finding:
    """``/dev/net/tun``: tap devices for guest networking."""
    ctx.require_dev()
    if ctx.fs.exists("dev/net/tun"):
        return ok("/dev/net/tun exists (tap networking)")
    return fail("/dev/net/tun is missing: guests cannot have tap network interfaces",
                "modprobe tun")


@check("secure-guest")
def secure_guest(ctx: Context) -> Finding:
    """Confidential guests (AMD SEV: ``kvm_amd.sev`` and ``/dev/sev``; Intel TDX)."""
    sev = (ctx.read_module_param("kvm_amd", "sev") or "").lower() in _ON
    if sev and ctx.fs.exists("dev/sev"):
        return ok("AMD SEV is available for confidential guests")
    if (ctx.read_module_param("kvm_intel", "tdx") or "").lower() in _ON:
        return ok("Intel TDX is available for confidential guests")
    return ok("no confidential-guest support (AMD SEV, Intel TDX) enabled; "
              "real-time VMs do not need it")
