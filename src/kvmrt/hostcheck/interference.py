"""Interference: what disturbs the CPUs of rt VMs while they run.

Reads the tasks' ``/proc/[0-9]*/comm`` (irqbalance; ``/proc/mounts`` for a
``hidepid`` proc that hides them from non-root), the CPU frequency governor
(``cpuN/cpufreq/scaling_governor``) and the idle states
(``cpuN/cpuidle/stateK/{name,latency,disable}``). With a config the CPUs
looked at are those of its rt VMs, else every online CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from kvmrt.host.procs import IRQBALANCE, pids_named
from kvmrt.sets import format_ids
from kvmrt.hostcheck.context import CPU_DIR, Context, focus_cpus, missing
from kvmrt.hostcheck.kernel import brace_cpus, parse_mounts
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, skipped, warn

DEEP_LATENCY_US = 10  # idle states that take longer than this to exit are "deep"


def hidepid(ctx: Context) -> str | None:
    """The ``hidepid=`` option of the proc mount, if any."""
    mounts = parse_mounts(ctx.fs.read("proc/mounts", default=""))
    for m in mounts:
        if m.fstype == "proc" and m.target == "/proc":
            return next((o for o in m.options if o.startswith("hidepid=")), None)
    return None


@check("irqbalance")
def irqbalance(ctx: Context) -> Finding:
    """irqbalance is not running (it rewrites IRQ affinity behind kvmrt's back)."""
    pids = pids_named(ctx.fs, IRQBALANCE)
    cpus = format_ids(ctx.rt_owned) or "CPUS"
    if pids:
        return warn(f"irqbalance is running (pid {', '.join(map(str, pids))}): it moves "
                    "device interrupts onto the CPUs kvmrt shields",
                    "systemctl disable --now irqbalance, or ban the rt CPUs: "
                    f"IRQBALANCE_BANNED_CPULIST={cpus} in /etc/default/irqbalance "
                    "(/etc/sysconfig/irqbalance on RHEL)")
    option = hidepid(ctx)
    if option and option not in ("hidepid=0", "hidepid=off") and not ctx.machine.is_root:
        return skipped(f"other users' tasks are hidden (/proc is mounted with {option})",
                       "run kvmrt-validate-host as root to look for irqbalance")
    if not ctx.fs.exists("proc/1"):
        raise missing(ctx, "proc/1/comm")
    return ok("irqbalance is not running")


@check("governor")
def governor(ctx: Context) -> Finding:
    """The CPU frequency governor is ``performance`` (``scaling_governor``)."""
    cpus, label = focus_cpus(ctx)
    by_governor: dict[str, set[int]] = {}
    for cpu in sorted(cpus):
        value = ctx.fs.read(f"{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor", default=None)
        if value is not None:
            by_governor.setdefault(value, set()).add(cpu)
    if not by_governor:
        return ok("no cpufreq driver: the kernel does not scale the CPU frequency "
                  "(if the firmware does, choose its performance profile)")
    slow = {g: c for g, c in by_governor.items() if g != "performance"}
    if not slow:
        return ok(f"{label} {format_ids(cpus)} use the performance governor")
    bad = set().union(*slow.values())
    text = "; ".join(f"{g} on {format_ids(c)}" for g, c in sorted(slow.items()))
    return warn(f"{label} change frequency under load ({text})",
                "cpupower frequency-set -g performance, or: echo performance | tee "
                f"/{CPU_DIR}/cpu{brace_cpus(bad)}/cpufreq/scaling_governor")


@dataclass(frozen=True)
class IdleState:
    index: int
    name: str
    latency: int  # exit latency, microseconds
    disabled: bool


def idle_states(ctx: Context, cpu: int) -> list[IdleState]:
    base = f"{CPU_DIR}/cpu{cpu}/cpuidle"
    states = []
    for entry in ctx.fs.listdir(base, default=[]):
        if entry.startswith("state") and entry[5:].isdigit():
            rel = f"{base}/{entry}"
            states.append(IdleState(int(entry[5:]), ctx.fs.read(f"{rel}/name", default="?"),
                                    ctx.fs.read_int(f"{rel}/latency", default=0),
                                    ctx.fs.read(f"{rel}/disable", default="0") != "0"))
    return states


@check("cstates")
def cstates(ctx: Context) -> Finding:
    """No idle state with an exit latency above 10 us is enabled (``cpuidle``)."""
    cpus, label = focus_cpus(ctx)
    deep: dict[IdleState, set[int]] = {}
    deepest = None
    for cpu in sorted(cpus):
        for s in idle_states(ctx, cpu):
            key = IdleState(s.index, s.name, s.latency, False)
            if not s.disabled and s.latency > DEEP_LATENCY_US:
                deep.setdefault(key, set()).add(cpu)
            elif not s.disabled and (deepest is None or s.latency > deepest.latency):
                deepest = key
    if not deep and deepest is None:
        return ok("no cpuidle states: idle CPUs halt (if the firmware adds deep C-states, "
                  "disable them in its setup)")
    if not deep:
        return ok(f"no deep C-state enabled on {label}: the deepest, {deepest.name}, "
                  f"exits in {deepest.latency} us")
    return warn(f"deep C-states enabled on {label}: " + ", ".join(
        f"{s.name} ({s.latency} us) on {format_ids(c)}" for s, c in sorted(
            deep.items(), key=lambda i: i[0].index)), _cstate_remedy(ctx, deep))


def _cstate_remedy(ctx: Context, deep: dict[IdleState, set[int]]) -> str:
    cpus = set().union(*deep.values())
    states = sorted({s.index for s in deep})
    index = str(states[0]) if len(states) == 1 else "{" + ",".join(map(str, states)) + "}"
    driver = ctx.fs.read(f"{CPU_DIR}/cpuidle/current_driver", default="")
    param = "intel_idle.max_cstate=1" if driver == "intel_idle" else "processor.max_cstate=1"
    return (f"echo 1 | tee /{CPU_DIR}/cpu{brace_cpus(cpus)}/cpuidle/state{index}/disable "
            f"(until reboot; to keep it, use a tuned realtime profile or {param})")
