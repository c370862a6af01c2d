"""Shared pytest fixtures: fixture hosts built on disk by :mod:`hostgen`.

Each host fixture returns the root ``Path`` of a freshly written sysfs tree
below ``tmp_path``; read it with ``HostFS(root)`` (or set
``KVMRT_FSROOT``). Tests may change the tree (``HostFS(root).write``, delete
files) to model a host state; every test gets its own copy. Named hosts also
carry runtime state (``/proc`` tasks and IRQs, the workqueue mask; see
:mod:`hostgen`); ``big_host`` does not.

Fixtures:

- ``make_host(spec) -> Path``: build any :class:`hostgen.HostSpec`;
- ``threadripper``: :func:`hostgen.threadripper_5975wx` (64 CPUs, 4 nodes,
  PCI with IOMMU groups; runtime state: tasks, IRQs, and the domain
  ``RedHawk-8.4-RT`` running with vfio IRQ 200 for 0000:21:00.0);
- ``threadripper_v1``: :func:`hostgen.threadripper_cgroup_v1` (the same,
  with libvirt's cgroup v1 cpuset tree);
- ``xeon``: :func:`hostgen.xeon_2s20c2t` (80 CPUs, 2 packages, core_id gaps);
- ``small``: :func:`hostgen.small_4c1t` (4 CPUs, no SMT, no IOMMU);
- ``offline_host``: :func:`hostgen.offline_4c2t` (CPUs 5 and 7 offline,
  memory-only node 2);
- ``multidie``: :func:`hostgen.multidie_2s2d4c2t` (2 packages x 2 dies);
- ``legacy``: :func:`hostgen.legacy_1s2c2t` (no NUMA, no die_id);
- ``big_host``: :func:`hostgen.big` (512 CPUs, 16 nodes), built once per
  session; do not modify it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

# Make ``import hostgen`` work in test modules under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

import hostgen  # noqa: E402

MakeHost = Callable[[hostgen.HostSpec], Path]


def stop_watchers(below: Path) -> None:
    """End the vfio IRQ watchers that kvmrt-boot started for hosts below
    ``below``, by the PID each recorded in its state directory (a fixture
    tree's QEMU 'runs' as long as its status file says so, so a watcher
    would outlive the test)."""
    for pidfile in below.rglob("watcher.pid"):
        try:
            pid = int(pidfile.read_text())
            if b"kvmrt.tuning.watcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass


@pytest.fixture
def make_host(tmp_path: Path) -> Iterator[MakeHost]:
    """Build a host from a spec in a new directory below ``tmp_path``; at
    the end of the test, end the IRQ watchers started for it."""
    count = 0

    def make(spec: hostgen.HostSpec) -> Path:
        nonlocal count
        count += 1
        return hostgen.build_host(tmp_path / f"{spec.name}-{count}", spec)

    yield make
    stop_watchers(tmp_path)


@pytest.fixture
def threadripper(make_host: MakeHost) -> Path:
    return make_host(hostgen.threadripper_5975wx())


@pytest.fixture
def threadripper_v1(make_host: MakeHost) -> Path:
    return make_host(hostgen.threadripper_cgroup_v1())


@pytest.fixture
def xeon(make_host: MakeHost) -> Path:
    return make_host(hostgen.xeon_2s20c2t())


@pytest.fixture
def small(make_host: MakeHost) -> Path:
    return make_host(hostgen.small_4c1t())


@pytest.fixture
def offline_host(make_host: MakeHost) -> Path:
    return make_host(hostgen.offline_4c2t())


@pytest.fixture
def multidie(make_host: MakeHost) -> Path:
    return make_host(hostgen.multidie_2s2d4c2t())


@pytest.fixture
def legacy(make_host: MakeHost) -> Path:
    return make_host(hostgen.legacy_1s2c2t())


@pytest.fixture(scope="session")
def big_host(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 512-CPU benchmark host, shared by the whole session: read only."""
    return hostgen.build_host(tmp_path_factory.mktemp("big"), hostgen.big())
