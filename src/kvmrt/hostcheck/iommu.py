"""IOMMU and VFIO: can this host pass PCI devices through?

Reads the ACPI tables the firmware offers (``/sys/firmware/acpi/tables/DMAR``
on Intel, ``IVRS`` on AMD), the groups under ``/sys/kernel/iommu_groups``
and their default domain ``type``, ``/proc/cmdline`` (``intel_iommu``,
``amd_iommu``, ``iommu``, ``intremap``), interrupt remapping evidence
(``IR-`` interrupt chips in ``/proc/interrupts``; the VT-d ``ecap`` register
under ``/sys/class/iommu``), and where vfio-pci could come from (the bound
driver directory, ``/sys/module/vfio_pci``, the module file or
``modules.builtin`` under ``/lib/modules/$(uname -r)``).

Without a config, or when a VM of the config passes devices through, a
missing IOMMU, interrupt remapping or vfio-pci is a FAIL; otherwise a WARN.
"""

from __future__ import annotations

from kvmrt.hostcheck.context import Context, missing
from kvmrt.hostcheck.kernel import CpuInfo
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, fail, ok, skipped, warn

GROUPS = "sys/kernel/iommu_groups"
ACPI_TABLES = "sys/firmware/acpi/tables"
VT_D_ECAP_IR = 1 << 3  # Extended Capability Register bit 3: interrupt remapping


def passthrough_wanted(ctx: Context) -> bool:
    """True without a config, or when an active VM of it has pcidevs."""
    return ctx.config is None or any(p.vm.pcidevs for p in ctx.placements)


def needed(ctx: Context, message: str, remedy: str, *, params: tuple[str, ...] = ()) -> Finding:
    """A FAIL when passthrough is wanted, else a WARN that says why not a FAIL."""
    if passthrough_wanted(ctx):
        return fail(message, remedy, params=params)
    return warn(f"{message} (no VM of {ctx.config_name} passes a device through)",
                remedy, params=params)


def iommu_groups(ctx: Context) -> list[str]:
    return ctx.fs.listdir(GROUPS, default=[])


@check("iommu-firmware")
def iommu_firmware(ctx: Context) -> Finding:
    """The firmware describes an IOMMU: ACPI DMAR (Intel VT-d) or IVRS (AMD-Vi)."""
    info = ctx.require_cpuinfo()
    table, name = ("IVRS", "AMD-Vi") if info.amd else ("DMAR", "Intel VT-d")
    if ctx.fs.exists(f"{ACPI_TABLES}/{table}"):
        return ok(f"the firmware describes an IOMMU (ACPI {table} table: {name})")
    if iommu_groups(ctx):
        return ok("the kernel found an IOMMU (IOMMU groups exist) without an ACPI "
                  f"{table} table")
    if not ctx.fs.is_dir(ACPI_TABLES):
        return skipped(f"no ACPI tables in /{ACPI_TABLES} to look for {table} in",
                       f"look for {name} in the firmware (BIOS/UEFI) setup")
    return warn(f"no ACPI {table} table: {name} is off in the firmware or absent",
                f"enable {name} (often called 'IOMMU' or 'VT-d') in the firmware setup")


@check("iommu")
def iommu(ctx: Context) -> Finding:
    """IOMMU on in the kernel: groups under ``/sys/kernel/iommu_groups``."""
    groups = iommu_groups(ctx)
    if groups:
        return ok(f"IOMMU is on: {len(groups)} groups under /{GROUPS}")
    info = ctx.require_cpuinfo()
    params = iommu_params(ctx, info)
    remedy = _iommu_remedy(ctx, info, params)
    return needed(ctx, f"IOMMU is off: no groups under /{GROUPS}", remedy, params=params)


def iommu_params(ctx: Context, info: CpuInfo) -> tuple[str, ...]:
    """What the command line needs: ``intel_iommu=on`` on Intel (off by default
    on many kernels; AMD's is on by default) and ``iommu=pt``."""
    params = ["intel_iommu=on"] if not info.amd else []
    return tuple(params + ["iommu=pt"])


def _iommu_remedy(ctx: Context, info: CpuInfo, params: tuple[str, ...]) -> str:
    off = [w for w in (ctx.cmdline.word("intel_iommu"), ctx.cmdline.word("amd_iommu"),
                       ctx.cmdline.word("iommu")) if w and w.endswith("=off")]
    text = f"add {' '.join(params)} to the kernel command line"
    if off:
        text = f"remove {' '.join(off)} and " + text
    if not ctx.fs.exists(f"{ACPI_TABLES}/{'IVRS' if info.amd else 'DMAR'}"):
        text += " (and enable the IOMMU in the firmware setup)"
    return text


@check("iommu-pt")
def iommu_pt(ctx: Context) -> Finding:
    """Host devices in passthrough (identity) mode: ``iommu=pt`` or group type ``identity``."""
    groups = iommu_groups(ctx)
    if not groups:
        return skipped("the IOMMU is off (see iommu)")
    word = ctx.cmdline.word("iommu") or ctx.cmdline.word("iommu.passthrough")
    if word in ("iommu=pt", "iommu.passthrough=1"):
        return ok(f"host devices bypass IOMMU translation ({word})")
    types = {ctx.fs.read(f"{GROUPS}/{g}/type", default="unknown") for g in groups}
    if types == {"identity"}:
        return ok("host devices bypass IOMMU translation (default domain type identity)")
    return warn(f"host devices' DMA is translated by the IOMMU (group types "
                f"{', '.join(sorted(types))}): slower host I/O",
                "add iommu=pt to the kernel command line (devices given to VMs stay isolated)",
                params=("iommu=pt",))


@check("irq-remapping")
def irq_remapping(ctx: Context) -> Finding:
    """Interrupt remapping, which VFIO requires: ``IR-`` chips in ``/proc/interrupts``."""
    if not iommu_groups(ctx):
        return skipped("the IOMMU is off (see iommu)")
    interrupts = ctx.fs.read("proc/interrupts", default=None)
    if interrupts is None:
        raise missing(ctx, "proc/interrupts")
    if any(w.startswith("IR-") for w in interrupts.split()):
        return ok("interrupt remapping is on (IR- interrupt chips in /proc/interrupts)")
    off = ctx.cmdline.word("intremap")
    if off in ("intremap=off", "intremap=nosid") or ctx.cmdline.has("nointremap"):
        return needed(ctx, f"interrupt remapping is disabled ({off or 'nointremap'}): "
                      "VFIO refuses passthrough without it", f"remove {off or 'nointremap'} "
                      "from the kernel command line")
    support = _vtd_ir_support(ctx)
    unsafe = (ctx.read_module_param("vfio_iommu_type1", "allow_unsafe_interrupts") or "N")
    if support is False:
        return needed(ctx, "the IOMMU hardware has no interrupt remapping (VT-d ecap): VFIO "
                      f"refuses passthrough (allow_unsafe_interrupts={unsafe})",
                      "use a platform with interrupt remapping; "
                      "vfio_iommu_type1.allow_unsafe_interrupts=1 works but is insecure")
    state = "supported by the hardware but off" if support else "not evident"
    return needed(ctx, f"interrupt remapping is {state}: no IR- interrupt chips in "
                  "/proc/interrupts", "check 'dmesg | grep -i remapping' and enable x2APIC "
                  "and interrupt remapping in the firmware setup")


def _vtd_ir_support(ctx: Context) -> bool | None:
    """Whether any VT-d unit advertises interrupt remapping; None if none is visible."""
    found = None
    for unit in ctx.fs.listdir("sys/class/iommu", default=[]):
        ecap = ctx.fs.read_int(f"sys/class/iommu/{unit}/intel-iommu/ecap", default=None, base=16)
        if ecap is not None:
            found = bool(found) or bool(ecap & VT_D_ECAP_IR)
    return found


@check("vfio")
def vfio(ctx: Context) -> Finding:
    """The vfio-pci driver: loaded, built in, or a module file for this kernel."""
    if ctx.fs.is_dir("sys/bus/pci/drivers/vfio-pci") or ctx.fs.is_dir("sys/module/vfio_pci"):
        return ok("the vfio-pci driver is loaded")
    release = ctx.fs.read("proc/sys/kernel/osrelease", default=None)
    if release is None:
        raise missing(ctx, "proc/sys/kernel/osrelease")
    where = vfio_module_file(ctx, release)
    if where and ctx.cmdline.has("nomodule"):
        return needed(ctx, f"vfio-pci is {where}, but 'nomodule' forbids loading modules",
                      "remove nomodule from the kernel command line")
    if where:
        return ok(f"vfio-pci is {where} (not loaded yet; libvirt loads it for "
                  "managed devices)")
    return needed(ctx, f"vfio-pci is not available for kernel {release}: not loaded, "
                  "no module file", "install the kernel's extra modules (Ubuntu: "
                  "linux-modules-extra-$(uname -r)), or boot a kernel built with "
                  "CONFIG_VFIO_PCI")


def vfio_module_file(ctx: Context, release: str) -> str | None:
    """Where vfio-pci can be loaded from for kernel ``release``, described."""
    base = f"lib/modules/{release}"
    builtin = ctx.fs.read(f"{base}/modules.builtin", default="")
    if "/vfio-pci.ko" in builtin or "/vfio_pci.ko" in builtin:
        return "built into the kernel"
    for name in ctx.fs.listdir(f"{base}/kernel/drivers/vfio/pci", default=[]):
        if name.startswith(("vfio-pci.ko", "vfio_pci.ko")):
            return f"a module (/{base}/kernel/drivers/vfio/pci/{name})"
    return None

