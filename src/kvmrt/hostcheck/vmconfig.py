"""The config the config-aware checks use: which VMs, which rt CPUs, and
whether ``kvmrt-validate-config`` would find errors in it on this host."""

from __future__ import annotations

from kvmrt.sets import format_ids
from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, warn
from kvmrt.validate import validate


@check("config")
def config(ctx: Context) -> Finding | None:
    """The config's active VMs, and its rt VMs' CPUs and SMT siblings."""
    if ctx.config is None:
        return None
    cfg = ctx.config
    active = cfg.active()
    rt = "; ".join(f"rt VM {p.vm.label} on CPUs {format_ids(p.usable_cpus)}"
                   + (f" (siblings {format_ids(p.offline_cpus)} go offline)"
                      if p.offline_cpus else "") for p in ctx.rt_placements)
    text = (f"{ctx.config_name}: {len(active)} active VM(s) of {len(cfg.vms)}"
            + (f"; {rt}" if rt else "; no rt VM"))
    errors = [d for d in validate(cfg, ctx.host) if d.is_error]
    left_out = len(active) - len(ctx.placements)
    if errors or left_out:
        return warn(f"{text}; {len(errors)} error(s), {left_out} VM(s) left out of the "
                    "checks below", f"kvmrt-validate-config -f {ctx.config_name} "
                    "shows the errors")
    return ok(text)
