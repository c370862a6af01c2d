"""cgroup v1 cpusets: ``sys/fs/cgroup/cpuset/**/cpuset.cpus``.

The trap (SPEC 3): when a CPU goes offline, cgroup v1 drops it from every
non-root cpuset, libvirt's ``machine`` tree included, and does not put it
back when the CPU returns; only the root cpuset follows the online CPUs.
So the cpusets are read before CPUs go offline and restored after they come
back. A child's CPUs must lie within its parent's (EINVAL otherwise), so
:func:`restore_cpusets` widens parents before children and narrows children
before parents. The root's ``cpuset.cpus`` belongs to the kernel (writing
it fails with EACCES) and is never written.

A pure cgroup v2 host has no v1 cpuset hierarchy: there the kernel keeps
``cpuset.cpus`` as written and only the effective CPUs shrink, so nothing
needs restoring and :func:`read_cpusets` returns ``{}``.
"""

from __future__ import annotations

from kvmrt.sets import format_ids
from kvmrt.errors import HostWriteError
from kvmrt.host.fs import HostFS, host_read_errors

CPUSET_ROOT = "sys/fs/cgroup/cpuset"
CPUS = "cpuset.cpus"


def cpuset_dir(group: str) -> str:
    """The directory of cgroup ``group`` ("" is the root, "machine"...)."""
    return f"{CPUSET_ROOT}/{group}" if group else CPUSET_ROOT


def has_cpuset_v1(fs: HostFS) -> bool:
    """A v1 cpuset hierarchy is mounted at ``sys/fs/cgroup/cpuset``.

    A v2 cgroup that happens to be called ``cpuset`` has ``cgroup.controllers``.
    """
    return fs.exists(f"{CPUSET_ROOT}/{CPUS}") and not fs.exists(
        f"{CPUSET_ROOT}/cgroup.controllers")


def read_cpusets(fs: HostFS) -> dict[str, frozenset[int]]:
    """Every v1 cpuset's ``cpuset.cpus``, by group, parents before children.

    Groups removed while they are read are left out; ``{}`` without v1.
    """
    if not has_cpuset_v1(fs):
        return {}
    found: dict[str, frozenset[int]] = {}
    with host_read_errors():
        _walk(fs, "", found)
    return found


def _walk(fs: HostFS, group: str, found: dict[str, frozenset[int]]) -> None:
    base = cpuset_dir(group)
    cpus = fs.read_cpulist(f"{base}/{CPUS}", default=None)
    if cpus is None:
        return
    found[group] = cpus
    for name in fs.listdir(base, default=[]):
        child = f"{group}/{name}" if group else name
        if fs.is_dir(cpuset_dir(child)):
            _walk(fs, child, found)


def write_cpuset(fs: HostFS, group: str, cpus: frozenset[int]) -> None:
    """Write ``cpuset.cpus`` of ``group`` and check that the kernel kept it.

    Raises :class:`HostWriteError` naming the file: EINVAL when the CPUs are
    not all in the parent's set, are offline, or a child uses CPUs left out;
    ENOENT when the group was removed; or when it reads back otherwise.
    """
    rel = f"{cpuset_dir(group)}/{CPUS}"
    path = str(fs.path(rel))
    try:
        fs.write(rel, format_ids(cpus))
    except OSError as err:
        raise HostWriteError(path, err.strerror or str(err)) from err
    with host_read_errors():
        kept = fs.read_cpulist(rel)
    if kept != cpus:
        raise HostWriteError(path, f"wrote {format_ids(cpus)}, the kernel kept {format_ids(kept)}")


def restore_cpusets(fs: HostFS, wanted: dict[str, frozenset[int]]) -> list[str]:
    """Put back the ``cpuset.cpus`` recorded in ``wanted``; return the groups changed.

    Groups that vanished or already match are skipped, and so is the root.
    Parents are widened first, then children narrowed first, so every write
    respects "a child within its parent".
    """
    before = read_cpusets(fs)
    order = sorted((g for g in wanted if g and g in before), key=lambda g: (g.count("/"), g))
    now = dict(before)
    for group in order:
        wider = now[group] | wanted[group]
        if wider != now[group] and _write_if_present(fs, group, wider):
            now[group] = wider
    for group in reversed(order):
        if now[group] != wanted[group] and _write_if_present(fs, group, wanted[group]):
            now[group] = wanted[group]
    return [g for g in order if now[g] != before[g]]


def _write_if_present(fs: HostFS, group: str, cpus: frozenset[int]) -> bool:
    """:func:`write_cpuset`, unless the group was removed meanwhile (False)."""
    try:
        write_cpuset(fs, group, cpus)
    except HostWriteError:
        if fs.is_dir(cpuset_dir(group)):
            raise
        return False
    return True
