"""The real-time kernel: PREEMPT_RT and the boot parameters that keep the
host off the CPUs of rt VMs.

Reads ``/sys/kernel/realtime`` and ``/proc/sys/kernel/version`` (``uname
-v``), ``/proc/cmdline`` (``isolcpus``, ``nohz_full``, ``rcu_nocbs``,
``irqaffinity``) and what the kernel made of them
(``/sys/devices/system/cpu/isolated`` and ``nohz_full``). With a config,
each is checked against the CPUs its rt VMs use (``usable_cpus`` of their
placements) or own (``owned_cpus``: with the SMT siblings), and the exact
parameter is suggested as CPU ranges. Where the kernel already has a
value, the suggestion keeps its CPUs. CPU 0, the boot CPU, is never
suggested for ``isolcpus``, ``nohz_full`` or ``rcu_nocbs``: the kernel keeps
its housekeeping there. When the command line already asks for what the
rt VMs need but the kernel did not apply it, the remedy says where to see why.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvmrt.sets import format_ids
from kvmrt.errors import SetSyntaxError
from kvmrt.hostcheck.context import CPU_DIR, Context, missing
from kvmrt.hostcheck.kernel import parse_kernel_cpulist, split_isolcpus
from kvmrt.hostcheck.machine import Undetermined
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, warn
from kvmrt.validate import BOOT_CPU

RT_KERNELS = ("Debian: linux-image-rt-amd64; Ubuntu: 'pro enable realtime-kernel'; "
              "RHEL/Alma/Rocky: kernel-rt")


@check("preempt-rt")
def preempt_rt(ctx: Context) -> Finding:
    """A PREEMPT_RT kernel (``/sys/kernel/realtime``, ``uname -v``); recommended."""
    version = ctx.fs.read("proc/sys/kernel/version", default="")
    release = ctx.fs.read("proc/sys/kernel/osrelease", default="") or "this kernel"
    realtime = ctx.fs.read("sys/kernel/realtime", default=None) == "1"
    if not version and not realtime:
        raise missing(ctx, "proc/sys/kernel/version")
    if realtime or "PREEMPT_RT" in version or "PREEMPT RT" in version:
        return ok(f"{release} is a PREEMPT_RT kernel")
    model = _preemption(version)
    remedy = f"install a PREEMPT_RT kernel ({RT_KERNELS}); recommended, not required"
    if model == "PREEMPT_DYNAMIC" and ctx.cmdline.get("preempt") != "full":
        remedy += "; until then boot this kernel with preempt=full"
    return warn(f"{release} is not a PREEMPT_RT kernel ({model}): worst-case latency "
                "is milliseconds, not microseconds", remedy)


def _preemption(version: str) -> str:
    words = version.split()
    for model in ("PREEMPT_DYNAMIC", "PREEMPT"):
        if model in words:
            return model
    return "no forced preemption"


@dataclass(frozen=True)
class Want:
    """What the config needs of one parameter: CPUs, or no CPUs (irqaffinity)."""

    cpus: frozenset[int]
    vms: str


def rt_want(ctx: Context, cpus: frozenset[int]) -> Want | None:
    if not ctx.rt_placements:
        return None
    return Want(cpus, ", ".join(p.vm.label for p in ctx.rt_placements))


def isolation_want(ctx: Context) -> Want | None:
    """The rt CPUs to take off housekeeping: every one but the boot CPU,
    which the kernel drops from ``nohz_full=`` and ``isolcpus=``."""
    return rt_want(ctx, ctx.rt_usable - {BOOT_CPU})


def boot_cpu_note(ctx: Context) -> str:
    """Why CPU 0 is left out, when an rt VM uses it."""
    if BOOT_CPU not in ctx.rt_usable:
        return ""
    return (f"; CPU {BOOT_CPU}, the boot CPU, is left out: the kernel keeps housekeeping "
            "there (kvmrt-validate-config warns: rt-boot-cpu)")


# Where the kernel shows what it applied of a parameter, and what to grep
# the boot log for when it applied less than the command line asks.
APPLIED = {"isolcpus": (f"{CPU_DIR}/isolated", "-e isol -e housekeeping"),
           "nohz_full": (f"{CPU_DIR}/nohz_full", "-e nohz -e housekeeping")}


def cmdline_cpus(ctx: Context, name: str) -> frozenset[int] | None:
    """The CPUs of ``name=`` on the command line (isolcpus flags dropped)."""
    value = ctx.cmdline.get(name)
    if value is None:
        return frozenset() if ctx.cmdline.has(name) else None
    if name == "isolcpus":
        value = split_isolcpus(value)[1]
    try:
        return parse_kernel_cpulist(value, ctx.nr_cpu_ids)
    except SetSyntaxError as err:
        raise Undetermined(f"{name}={value} on /proc/cmdline does not parse: {err}",
                           f"correct {name}= on the kernel command line") from err


def sysfs_cpus(ctx: Context, rel: str) -> frozenset[int] | None:
    """A kernel cpulist file; ``(null)`` (an unallocated mask) is empty."""
    text = ctx.fs.read(rel, default=None)
    if text is None:
        return None
    return frozenset() if text == "(null)" else ctx.fs.read_cpulist(rel)


def _cover(ctx: Context, name: str, have: frozenset[int], want: Want,
           value: str) -> Finding:
    """PASS when ``have`` covers the rt CPUs, else the exact parameter to set;
    when the command line has it already, that the kernel did not apply it."""
    missing = want.cpus - have
    note = boot_cpu_note(ctx)
    if not missing:
        return ok(f"{name} covers CPUs {format_ids(want.cpus)} of rt VM(s) {want.vms}{note}")
    given = cmdline_cpus(ctx, name)
    if name in APPLIED and given is not None and missing <= given:
        return _not_applied(ctx, name, have, missing, want)
    return warn(f"{name} leaves CPUs {format_ids(missing)} of rt VM(s) {want.vms} out "
                f"(now: {format_ids(have) or 'none'}){note}", set_param(ctx, name, value),
                params=(value,))


def _not_applied(ctx: Context, name: str, have: frozenset[int], missing: frozenset[int],
                 want: Want) -> Finding:
    """The command line asks for ``missing`` but the kernel left them out."""
    applied, grep = APPLIED[name]
    return warn(f"/proc/cmdline has {ctx.cmdline.word(name)}, but the kernel did not apply it "
                f"to CPUs {format_ids(missing)} of rt VM(s) {want.vms} (/{applied}: "
                f"{format_ids(have) or 'none'})",
                f"see why in the boot log: dmesg | grep -i {grep}; /{applied} shows what the "
                "kernel applied (a CPU it cannot isolate, such as the boot CPU, or a kernel "
                "built without CONFIG_CPU_ISOLATION or CONFIG_NO_HZ_FULL, is left out)")


def set_param(ctx: Context, name: str, value: str) -> str:
    """``add X to the kernel command line``, or ``change OLD to X on it``."""
    word = ctx.cmdline.word(name)
    if word:
        return f"change {word} to {value} on the kernel command line"
    return f"add {value} to the kernel command line"


def _no_config(name: str, have: frozenset[int], what: str, example: str) -> Finding:
    if have:
        return ok(f"{name}: CPUs {format_ids(have)} {what}")
    whose = ("every CPU but those of your rt VMs" if name == "irqaffinity"
             else "the CPUs of your rt VMs")
    return warn(f"no CPU is {what} ({name})", f"add {example} to the kernel command line, "
                f"with {whose} (run with -f FILE for the exact ranges)")


@check("isolcpus")
def isolcpus(ctx: Context) -> Finding:
    """CPUs isolated from the scheduler (``isolated``, ``isolcpus=``)."""
    have = sysfs_cpus(ctx, f"{CPU_DIR}/isolated")
    if have is None:
        ctx.require_cmdline()
        have = cmdline_cpus(ctx, "isolcpus") or frozenset()
    want = isolation_want(ctx)
    if want is None:
        return _no_config_or_none(ctx, "isolcpus", have, "isolated from the scheduler",
                                  "isolcpus=managed_irq,domain,CPUS")
    value = f"isolcpus=managed_irq,domain,{_isolated(have | want.cpus)}"
    return _cover(ctx, "isolcpus", have, want, value)


def _no_config_or_none(ctx: Context, name: str, have: frozenset[int], what: str,
                       example: str) -> Finding:
    if ctx.config is not None:
        return ok(f"no rt VM in {ctx.config_name}; {name}: "
                  f"{format_ids(have) or 'no CPU'} {what}")
    return _no_config(name, have, what, example)


@check("nohz_full")
def nohz_full(ctx: Context) -> Finding:
    """CPUs without the periodic tick (``nohz_full``, ``nohz_full=``)."""
    have = sysfs_cpus(ctx, f"{CPU_DIR}/nohz_full")
    want = isolation_want(ctx)
    if have is None:
        value = f"nohz_full={_isolated(want.cpus)}" if want else "nohz_full=CPUS"
        return warn("this kernel is built without NO_HZ_FULL (no "
                    f"/{CPU_DIR}/nohz_full): the tick interrupts every CPU",
                    "boot a kernel with CONFIG_NO_HZ_FULL=y (the PREEMPT_RT kernels of the "
                    f"distributions have it) with {value}",
                    params=(value,) if want else ())
    if want is None:
        return _no_config_or_none(ctx, "nohz_full", have, "without the periodic tick",
                                  "nohz_full=CPUS")
    return _cover(ctx, "nohz_full", have, want, f"nohz_full={_isolated(have | want.cpus)}")


@check("rcu_nocbs")
def rcu_nocbs(ctx: Context) -> Finding:
    """CPUs whose RCU callbacks run elsewhere (``rcu_nocbs=``, implied by ``nohz_full``)."""
    ctx.require_cmdline()
    given = cmdline_cpus(ctx, "rcu_nocbs") or frozenset()
    have = given | (sysfs_cpus(ctx, f"{CPU_DIR}/nohz_full") or frozenset())
    want = isolation_want(ctx)
    if want is None:
        return _no_config_or_none(ctx, "rcu_nocbs", have, "free of RCU callbacks",
                                  "rcu_nocbs=CPUS")
    return _cover(ctx, "rcu_nocbs", have, want, f"rcu_nocbs={_isolated(given | want.cpus)}")


def _isolated(cpus: frozenset[int]) -> str:
    """The CPU list of a suggested isolation parameter: never the boot CPU."""
    return format_ids(cpus - {BOOT_CPU})


@check("irqaffinity")
def irqaffinity(ctx: Context) -> Finding:
    """Where device interrupts start (``irqaffinity=``; default every CPU)."""
    every = ctx.host.topology.all_cpus
    ctx.require_cmdline()
    given = cmdline_cpus(ctx, "irqaffinity")
    have = every if not given else given
    if not ctx.rt_placements:
        if given:
            return ok(f"device interrupts start on CPUs {format_ids(given)} (irqaffinity)")
        return _no_config_or_none(ctx, "irqaffinity", frozenset(), "kept free of device "
                                  "interrupts", "irqaffinity=CPUS")
    owned = ctx.rt_owned
    value = f"irqaffinity={format_ids(have - owned or every - owned)}"
    vms = ", ".join(p.vm.label for p in ctx.rt_placements)
    if not have & owned:
        return ok(f"device interrupts start off the CPUs of rt VM(s) {vms} "
                  f"(irqaffinity={format_ids(have)})")
    return warn(f"device interrupts may start on CPUs {format_ids(have & owned)} of rt VM(s) "
                f"{vms} (kvmrt-boot moves them at VM start; irqaffinity keeps them off "
                "from boot)", set_param(ctx, "irqaffinity", value), params=(value,))
