"""SMT and cgroups: what kvmrt's CPU partitioning relies on.

Reads ``/sys/devices/system/cpu/smt/{control,active}``, each rt VM's
CPUs' topology (siblings known only while the kernel shows ``topology/``)
and ``cpuN/online`` (a sibling kvmrt must take offline needs one), and
``/proc/mounts`` with ``/sys/fs/cgroup/cgroup.controllers`` for the
cgroup version and controllers.
"""

from __future__ import annotations

from kvmrt.sets import format_ids
from kvmrt.hostcheck.context import CPU_DIR, Context, missing
from kvmrt.hostcheck.kernel import brace_cpus, parse_mounts
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, fail, ok, warn

# What libvirt's QEMU driver uses, as virt-host-validate checks it.
V1_CONTROLLERS = ("cpuset", "cpu", "cpuacct", "memory", "devices", "blkio")
V2_CONTROLLERS = ("cpuset", "cpu", "memory", "io")


@check("smt")
def smt(ctx: Context) -> Finding:
    """SMT state (``smt/control``, ``smt/active``)."""
    control = ctx.fs.read(f"{CPU_DIR}/smt/control", default=None)
    active = ctx.fs.read(f"{CPU_DIR}/smt/active", default=None) == "1"
    if control is None:  # a kernel without HOTPLUG_SMT: the topology tells
        threads = max(len(cpus) for cpus in ctx.host.topology.cores.values()) \
            if ctx.host.topology.cores else 1
        if threads > 1:
            return ok(f"SMT: {threads} threads per core (no /{CPU_DIR}/smt/control); "
                      "kvmrt takes the siblings of rt cores offline while rt VMs run")
        return ok("no SMT: one thread per core")
    if control in ("notsupported", "notimplemented"):
        return ok("no SMT: one thread per core")
    if control == "on" and active:
        return ok("SMT is on: kvmrt takes the siblings of rt cores offline while rt VMs run")
    return ok(f"SMT is {control} (active: {'yes' if active else 'no'})")


@check("smt-siblings")
def smt_siblings(ctx: Context) -> Finding | None:
    """The SMT siblings of each rt VM's CPUs are known, and can go offline."""
    if not ctx.rt_placements:
        return None
    topo = ctx.host.topology
    cpus = frozenset().union(*(p.cpuset for p in ctx.rt_placements))
    hidden = sorted(c for c in cpus if topo.cpus[c].core is None)
    offline = frozenset().union(*(p.offline_cpus for p in ctx.rt_placements))
    stuck = sorted(c for c in offline if not ctx.fs.exists(f"{CPU_DIR}/cpu{c}/online"))
    if stuck:
        return fail(f"CPU(s) {format_ids(stuck)} must go offline as SMT siblings of rt CPUs, "
                    "but the kernel cannot unplug them (no online file)",
                    "leave their cores out of the rt VMs' cpuset")
    if hidden:
        return warn(f"CPU(s) {format_ids(hidden)} of rt VMs are offline: their siblings "
                    "are unknown until they come back",
                    f"echo 1 | tee /{CPU_DIR}/cpu{brace_cpus(hidden)}/online")
    if offline:
        return ok(f"siblings known for every rt CPU; {format_ids(offline)} go offline "
                  "while the rt VMs run")
    return ok("siblings known for every rt CPU; none has to go offline")


def cgroup_layout(ctx: Context) -> tuple[str, set[str]]:
    """("v2" | "v1" | "hybrid" | "none", the controllers available)."""
    text = ctx.fs.read("proc/mounts", default=None)
    if text is None:
        raise missing(ctx, "proc/mounts")
    mounts = parse_mounts(text)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    v2 = [m for m in mounts if m.fstype == "cgroup2"]
    controllers = {o for m in v1 for o in m.options if o in V1_CONTROLLERS}
    unified = next((m for m in v2 if m.target == "/sys/fs/cgroup"), None)
    if unified is not None:
        text = ctx.fs.read("sys/fs/cgroup/cgroup.controllers", default="")
        controllers |= set(text.split())
    version = ("hybrid" if v1 and v2 else "v1" if v1 else "v2" if v2 else "none")
    return version, controllers


@check("cgroup")
def cgroup(ctx: Context) -> Finding:
    """cgroup version and the controllers libvirt uses, cpuset above all."""
    version, have = cgroup_layout(ctx)
    if version == "none":
        return fail("no cgroup file system is mounted: libvirt cannot confine or pin VMs",
                    "mount cgroup2 on /sys/fs/cgroup (systemd does this at boot)")
    wanted = V2_CONTROLLERS if version == "v2" else V1_CONTROLLERS
    lacking = [c for c in wanted if c not in have]
    note = ("; kvmrt restores the cpusets that cgroup v1 empties when siblings go offline"
            if version != "v2" else "")
    if not lacking:
        return ok(f"cgroup {version}; controllers {', '.join(wanted)} available{note}")
    remedy = ("use a kernel built with them (CONFIG_CPUSETS, CONFIG_MEMCG, ...)"
              if version == "v2" else
              f"mount them (mount -t cgroup -o {lacking[0]} {lacking[0]} "
              f"/sys/fs/cgroup/{lacking[0]}), or move to cgroup v2 with "
              "systemd.unified_cgroup_hierarchy=1")
    return warn(f"cgroup {version} without the {', '.join(lacking)} controller(s)"
                + (": libvirt cannot confine VMs with cpusets" if "cpuset" in lacking else ""),
                remedy)
