"""kvmrt-show-config: the configuration as kvmrt interprets it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common
from kvmrt.sets import format_ids

if TYPE_CHECKING:
    from kvmrt.placement import Placement


@common.command
@common.file_option
@common.all_option
@common.json_option
@common.vms_argument
def main(path: str | None, include_disabled: bool, as_json: bool, vms: tuple[str, ...]) -> None:
    """Show each VM with every 'auto' resolved, CPU sets expanded and its
    real-time policy: vCPU->CPU map, emulator CPUs, SMT siblings taken
    offline, shielded CPUs, IRQ CPU, NUMA nodes, memory locking.

    Errors in the config are printed on stderr (exit 1); VMs whose cpuset
    cannot be interpreted are left out.
    """
    from kvmrt.placement import placement_json
    from kvmrt.validate import validate_and_place

    config = common.load(path)
    errors, placed = validate_and_place(config, common.host(), include_disabled=include_disabled,
                                        names=vms, errors_only=True)
    shown = {id(vm) for vm in config.select(vms, include_disabled=include_disabled)}
    placements = [p for p in placed if id(p.vm) in shown]
    if as_json:
        common.print_json([placement_json(p) for p in placements])
    else:
        click.echo("\n".join(describe(p) for p in placements), nl=bool(placements))
    for d in errors:
        click.echo(d.format(), err=True)
    sys.exit(1 if errors else 0)


def describe(p: Placement) -> str:
    """A VM's interpretation, readable by a person."""
    vm = p.vm
    flags = [f for f, on in (("rt", vm.rt), ("autostart", vm.autostart),
                             ("disabled", vm.disabled), ("hide_kvm", vm.hide_kvm)) if on]
    rows = [("title", vm.title), ("cpuset", _cpuset(p)),
            ("nr_vcpus", _auto(p.nr_vcpus, vm.nr_vcpus)),
            ("cpu_topology", _auto(",".join(map(str, p.cpu_topology)), vm.cpu_topology)),
            ("vCPU -> CPU", _vcpu_map(p)), ("emulator CPUs", _cpus(p.emulator_cpus))]
    if vm.rt:
        rows += [("offline CPUs", _cpus(p.offline_cpus, "none") + " (SMT siblings)"),
                 ("shielded CPUs", _cpus(p.shielded_cpus, "none")),
                 ("IRQ CPU", "-" if p.irq_cpu is None else str(p.irq_cpu))]
    numatune = "unrestricted" if p.numatune is None else f"nodes {format_ids(p.numatune)}"
    rows += [("numatune", _auto(numatune, vm.numatune)),
             ("memory", _auto("locked" if p.rt_memory else "not locked", vm.rt_memory)),
             ("pcidevs", str(vm.pcidevs) or "-")]
    head = f"{vm.name}  [{vm.uuid}]" + (f"  ({', '.join(flags)})" if flags else "")
    return "\n".join([head] + [f"  {k:<14} {v}" for k, v in rows if v != ""]) + "\n"


def _cpus(cpus, empty: str = "any (not pinned)") -> str:
    return format_ids(cpus) if cpus else empty


def _cpuset(p: Placement) -> str:
    text = str(p.vm.cpuset)
    if not text:
        return "(empty: not pinned)"
    expanded = format_ids(p.cpuset)
    return text if text == expanded else f"{text} = CPUs {expanded}"


def _auto(shown, configured) -> str:
    from kvmrt.config.model import AUTO

    return f"{shown} (auto)" if configured is AUTO else str(shown)


def _vcpu_map(p: Placement) -> str:
    """``0-14 -> 8-22`` for one-to-one runs, ``3 -> 5`` otherwise."""
    if not any(p.vcpu_cpus):
        return f"{p.nr_vcpus} vCPUs, not pinned" if p.nr_vcpus > 0 else "-"
    runs: list[list[tuple[int, int]]] = []
    for i, cpus in enumerate(p.vcpu_cpus):
        cpu = min(cpus)
        if runs and len(cpus) == 1 and runs[-1][-1] == (i - 1, cpu - 1):
            runs[-1].append((i, cpu))
        else:
            runs.append([(i, cpu)])
    return ", ".join(
        f"{r[0][0]} -> {r[0][1]}" if len(r) == 1 else f"{r[0][0]}-{r[-1][0]} -> {r[0][1]}-{r[-1][1]}"
        for r in runs)
