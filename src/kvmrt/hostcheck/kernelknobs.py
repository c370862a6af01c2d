"""Kernel knobs that cost latency: sysctls, memory management and the clock.

Reads ``/proc/sys/kernel/{sched_rt_runtime_us, sched_rt_period_us,
numa_balancing, timer_migration, nmi_watchdog}``,
``/sys/kernel/mm/transparent_hugepage/enabled``, ``/sys/kernel/mm/ksm/run``,
``/sys/devices/system/clocksource/clocksource0/{current,available}_clocksource``
and the TSC flags of ``/proc/cpuinfo``.
"""

from __future__ import annotations

from kvmrt.hostcheck.context import Context, missing
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, warn

SYSCTL_FILE = "/etc/sysctl.d/90-kvmrt.conf"
CLOCKSOURCE = "sys/devices/system/clocksource/clocksource0"


def sysctl_remedy(name: str, value: str) -> str:
    return (f"sysctl -w {name}={value}, and keep it with "
            f"'echo {name}={value} >> {SYSCTL_FILE}'")


@check("rt-throttling")
def rt_throttling(ctx: Context) -> Finding:
    """Real-time throttling is off (``kernel.sched_rt_runtime_us`` = -1)."""
    runtime = ctx.fs.read_int("proc/sys/kernel/sched_rt_runtime_us", default=None)
    if runtime is None:
        raise missing(ctx, "proc/sys/kernel/sched_rt_runtime_us")
    if runtime < 0:
        return ok("real-time tasks are not throttled (sched_rt_runtime_us = -1)")
    period = ctx.fs.read_int("proc/sys/kernel/sched_rt_period_us", default=1000000)
    share = runtime * 100 // max(period, 1)
    return warn(f"real-time tasks are throttled to {share}% of each CPU "
                f"(sched_rt_runtime_us = {runtime} of {period}): a busy rt vCPU stalls "
                "for the rest", sysctl_remedy("kernel.sched_rt_runtime_us", "-1"))


def bracketed(text: str) -> str:
    """The selected word of ``always [madvise] never``."""
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else text


@check("thp")
def thp(ctx: Context) -> Finding:
    """Transparent huge pages not ``[always]`` (khugepaged and compaction stall guests)."""
    text = _mm_read(ctx, "transparent_hugepage/enabled")
    if text is None:
        return ok("this kernel has no transparent huge pages")
    mode = bracketed(text)
    if mode == "always":
        return warn("transparent huge pages are always on: khugepaged and memory "
                    "compaction stall guests at random",
                    "echo never > /sys/kernel/mm/transparent_hugepage/enabled, and "
                    "transparent_hugepage=never on the kernel command line; give rt "
                    "VMs static huge pages", params=("transparent_hugepage=never",))
    return ok(f"transparent huge pages: {mode}" + (
        " (QEMU asks for them for guest RAM; static huge pages suit rt VMs better)"
        if mode == "madvise" else ""))


def _mm_read(ctx: Context, name: str) -> str | None:
    """``/sys/kernel/mm/<name>``, None when this kernel lacks it;
    :class:`Undetermined` when the root has no ``/sys/kernel/mm`` at all."""
    value = ctx.fs.read(f"sys/kernel/mm/{name}", default=None)
    if value is None and not ctx.fs.is_dir("sys/kernel/mm"):
        raise missing(ctx, f"sys/kernel/mm/{name}")
    return value


@check("ksm")
def ksm(ctx: Context) -> Finding:
    """Kernel same-page merging is off (``/sys/kernel/mm/ksm/run`` != 1)."""
    run = _mm_read(ctx, "ksm/run")
    if run is None:
        return ok("this kernel has no KSM")
    if run != "1":
        return ok("KSM is not merging pages")
    return warn("KSM is merging pages: its scans and copy-on-write faults disturb guests",
                "echo 2 > /sys/kernel/mm/ksm/run (unmerge and stop); "
                "systemctl disable --now ksm ksmtuned")


@check("numa-balancing")
def numa_balancing(ctx: Context) -> Finding:
    """Automatic NUMA balancing is off (``kernel.numa_balancing`` = 0)."""
    value = ctx.sysctl("kernel/numa_balancing")
    if value is None:
        return ok("this kernel has no automatic NUMA balancing")
    if value == "0":
        return ok("automatic NUMA balancing is off")
    return warn("automatic NUMA balancing is on: it unmaps guest memory to sample it and "
                "migrates pages", sysctl_remedy("kernel.numa_balancing", "0"))


@check("timer-migration")
def timer_migration(ctx: Context) -> Finding:
    """Timer migration is off (``kernel.timer_migration`` = 0), as tuned's latency profiles set."""
    return _sysctl_off(ctx, "timer_migration", "timer migration",
                       "timer migration is on: timers move between CPUs and fire where "
                       "they were not armed")


@check("nmi-watchdog")
def nmi_watchdog(ctx: Context) -> Finding:
    """The NMI watchdog is off (``kernel.nmi_watchdog`` = 0)."""
    return _sysctl_off(ctx, "nmi_watchdog", "the NMI watchdog",
                       "the NMI watchdog interrupts every CPU periodically, rt CPUs included",
                       also=" (or nmi_watchdog=0 on the kernel command line)")


def _sysctl_off(ctx: Context, name: str, what: str, warning: str, *,
                also: str = "") -> Finding:
    """PASS when ``kernel.NAME`` is 0 or absent, else ``warning`` with the sysctl remedy."""
    value = ctx.sysctl(f"kernel/{name}")
    if value is None:
        return ok(f"this kernel has no {what.removeprefix('the ')}")
    if value == "0":
        return ok(f"{what} is off")
    return warn(warning, sysctl_remedy(f"kernel.{name}", "0") + also)


@check("clocksource")
def clocksource(ctx: Context) -> Finding:
    """The clocksource is a stable TSC (``current_clocksource``; ``constant_tsc nonstop_tsc``)."""
    current = ctx.fs.read(f"{CLOCKSOURCE}/current_clocksource", default=None)
    if current is None:
        raise missing(ctx, f"{CLOCKSOURCE}/current_clocksource")
    flags = ctx.require_cpuinfo().flags
    if current != "tsc":
        available = ctx.fs.read(f"{CLOCKSOURCE}/available_clocksource", default="").split()
        return warn(f"the clocksource is {current}, not tsc: every clock read is slow",
                    _to_tsc("tsc" in available))
    lacking = [f for f in ("constant_tsc", "nonstop_tsc") if f not in flags]
    if lacking:
        return warn(f"the TSC is not invariant (no {' '.join(lacking)}): its rate changes "
                    "with frequency or it stops in deep C-states",
                    "keep the CPUs at a fixed frequency and out of deep C-states, or use a "
                    "CPU with an invariant TSC")
    hint = "" if ctx.cmdline.has("tsc") else \
        "; tsc=reliable would also stop the clocksource watchdog"
    return ok(f"clocksource tsc, invariant (constant_tsc nonstop_tsc){hint}")


def _to_tsc(offered: bool) -> str:
    if offered:
        return (f"echo tsc > /{CLOCKSOURCE}/current_clocksource; if the kernel "
                "had marked the TSC unstable, add tsc=reliable to the kernel command "
                "line (only on a host whose TSC is known to be stable)")
    return ("the kernel rejected the TSC ('dmesg | grep -i tsc' says why); check the "
            "firmware's TSC and power settings")
