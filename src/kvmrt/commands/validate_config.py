"""kvmrt-validate-config: check the config against SPEC 4 on this host."""

from __future__ import annotations

import sys

import click

from kvmrt import diagnostics as diag
from kvmrt.commands import common


@common.command
@common.file_option
@common.connect_option
@common.all_option
@common.json_option
@common.vms_argument
def main(path: str | None, uri: str | None, include_disabled: bool, as_json: bool,
         vms: tuple[str, ...]) -> None:
    """Validate each VM of the config and the combination of VMs, and
    compare them with libvirt's domains.

    Prints one line per problem, FILE:LINE: error|warning: VM: attribute:
    message, then a summary. Exits 1 when there is any error, else 0. When
    libvirt cannot be reached its checks are skipped with a warning.
    """
    from kvmrt.validate import validate

    config = common.load(path)
    domains, unreachable = common.libvirt_domains(uri)
    found = validate(config, common.host(), include_disabled=include_disabled, names=vms,
                     domains=domains)
    if unreachable:
        found.append(diag.warning("libvirt-unreachable",
                                  f"libvirt checks skipped: {unreachable}", file=config.path))
    errors = sum(d.is_error for d in found)
    warnings = len(found) - errors
    if as_json:
        common.print_json({"errors": errors, "warnings": warnings,
                           "diagnostics": [d.as_json() for d in found]})
    else:
        summary = (f"{config.path}: {errors} error{'s' * (errors != 1)}, "
                   f"{warnings} warning{'s' * (warnings != 1)}")
        click.echo("\n".join([*(d.format() for d in found), summary]))
    sys.exit(1 if errors else 0)
