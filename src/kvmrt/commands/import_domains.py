"""kvmrt-import: add libvirt domains to the config."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from kvmrt.commands import common

if TYPE_CHECKING:
    from kvmrt.libvirt_sync.domains import Domain, Domains


@common.command
@common.file_option
@common.connect_option
@common.wait_option
@click.option("-u", "--update", is_flag=True,
              help="Update VMs already in the config from libvirt.")
@click.argument("names", nargs=-1, metavar="[DOMAIN]...")
def main(path: str | None, uri: str | None, update: bool, names: tuple[str, ...]) -> None:
    """Add libvirt domains (all by default, or the named ones: names or
    UUIDs) to the config: name, title, description, vCPUs, topology, PCI
    devices and the domain's tuning (pins as cpuset, numatune, locked
    memory, hidden KVM, guest services channel), defaults for the rest. Domains already in the
    config are skipped unless -u, which takes those again. A domain that
    cannot be imported is left out with a reason (exit 1); the others are
    imported. Creates the config file if it does not exist.
    """
    from kvmrt.config.file import editing, write_config
    from kvmrt.libvirt_sync.connection import connect
    from kvmrt.libvirt_sync.domains import Domains
    from kvmrt.libvirt_sync.importer import import_domains

    common.require_root()
    host = common.host()
    domains = Domains(connect(uri))
    chosen = _choose(domains, names)
    with editing(path or common.DEFAULT_PATH, create=True) as config:
        common.refuse_broken_file(config)
        result = import_domains(config, chosen, host, update=update)
        if result.added or result.updated:
            write_config(config)
    for word, names_ in (("added", result.added), ("updated", result.updated),
                         ("unchanged", result.unchanged),
                         ("skipped (already in the config; -u updates)", result.skipped)):
        for name in names_:
            click.echo(f"{name}: {word}")
    for note in result.notes:
        click.echo(f"note: {note}")
    for line in result.refused:
        click.echo(line, err=True)
    if not chosen:
        click.echo("libvirt has no persistent domains to import")
    if result.refused:
        sys.exit(1)


def _choose(domains: Domains, names: tuple[str, ...]) -> list[Domain]:
    from kvmrt.libvirt_sync.sync import NoSuchDomain

    if not names:
        return domains.all()
    chosen = []
    for name in names:
        found = domains.by_name(name) or domains.by_uuid(name)
        if found is None:
            raise NoSuchDomain(name)
        chosen.append(found)
    return chosen
