"""The one switch between the running kernel and a host tree: ``HostFS.kernel``.

On a tree (hostgen) the thread calls read and rewrite ``status``; on ``/``
they are the system calls, whatever spelling of ``/`` the root has (that one
changes a thread's affinity: it is in test_host_tuning.py with the other
real-host tests). These tests only read this host.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

import hostgen
from kvmrt.sets import IdSet
from kvmrt.errors import NotMovable
from kvmrt.host import tasks
from kvmrt.host.fs import HostFS, LiveKernel, TreeKernel
from kvmrt.hostcheck.machine import Machine

CPU = "sys/devices/system/cpu"


def test_the_adapter_is_chosen_by_the_root(threadripper: Path, tmp_path: Path) -> None:
    assert isinstance(HostFS("/").kernel, LiveKernel)
    assert isinstance(HostFS("/proc/..").kernel, LiveKernel), "any spelling of /"
    assert isinstance(HostFS(threadripper).kernel, TreeKernel)
    (tmp_path / "root").symlink_to("/")
    assert isinstance(HostFS(tmp_path / "root").kernel, LiveKernel), "a link to /"


def test_a_tree_reads_back_what_was_set(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    task = tasks.read_task(fs, hostgen.SSHD, hostgen.SSHD)
    tasks.set_affinity(fs, task, frozenset({2, 40}))
    assert tasks.read_task(fs, task.pid, task.tid).affinity == {2, 40}
    status = fs.read(f"proc/{task.pid}/task/{task.tid}/status")
    assert "\nCpus_allowed:\t00000100,00000004\n" in status, "the mask keeps its width"
    assert "\nCpus_allowed_list:\t2,40\n" in status
    assert status.startswith("Name:\tsshd\n") and status.endswith("nonvoluntary_ctxt_switches:\t0")


def test_a_tree_refuses_a_per_cpu_kernel_thread_unchanged(threadripper: Path) -> None:
    fs = HostFS(threadripper)
    soft = next(t for t in tasks.read_tasks(fs) if t.comm == "ksoftirqd/5")
    rel = f"proc/{soft.pid}/task/{soft.tid}/status"
    before = fs.read(rel)
    with pytest.raises(NotMovable):
        tasks.set_affinity(fs, soft, frozenset({0}))
    assert fs.read(rel) == before


def test_the_running_kernel_reads_what_status_shows() -> None:
    """On ``/`` every thread of this process has the CPUs its ``status`` lists."""
    fs = HostFS("/")
    for task in tasks.read_tasks(fs, [os.getpid()]):
        status = Path(f"/proc/{task.pid}/task/{task.tid}/status").read_text()
        listed = next(line for line in status.splitlines() if line.startswith("Cpus_allowed_list"))
        assert task.affinity == IdSet.parse(listed.split(":")[1].strip())
        assert task.affinity == os.sched_getaffinity(task.tid)


def test_the_running_kernel_reads_status_while_a_cpu_is_offline(make_host) -> None:
    """sched_getaffinity hides offline CPUs; ``status`` is read instead then.

    The LiveKernel is given a tree here so that its choice shows: with every
    CPU online it asks the running kernel (this process's own CPUs), with
    one offline it reads the tree's ``status``."""
    root = make_host(hostgen.xeon_2s20c2t())
    fs = HostFS(root)
    live = LiveKernel(fs)
    assert live.affinity_reader()(os.getpid(), os.getpid()) == os.sched_getaffinity(0)
    (sshd,) = [t for t in tasks.read_tasks(fs) if t.pid == hostgen.SSHD]
    fs.write(f"{CPU}/cpu3/online", "0")
    fs.write(f"{CPU}/online", "0-2,4-79")
    assert live.affinity_reader()(sshd.pid, sshd.tid) == sshd.affinity
    assert 3 in sshd.affinity, "status keeps the offline CPU"


def test_memlock_on_slash_is_this_processs_limit() -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    expected = None if soft == resource.RLIM_INFINITY else soft
    assert Machine(HostFS("/")).memlock_limit() == expected
