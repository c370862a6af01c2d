"""The plan is typed: each host setting is a value that knows its journal
key, its label, how it shows its values and how it is written; the
journal on disk keeps the format older kvmrt wrote; the statuses of a
boot, a shutdown and a sync are enums that print the words they did.

``data/journal-v1.jsonl`` was written by kvmrt before the settings were
typed (commit 80c294b), tuning the VM :data:`RT` on :func:`simlike_v1`:
every kind of key is in it (CPUs, cgroup cpusets, threads, IRQs, the
default IRQ mask, the workqueue mask).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import hostgen
from kvmrt.config.file import load_config, parse_config
from kvmrt.sets import IdSet
from kvmrt.host import HostFS, read_host
from kvmrt.host.tasks import Task
from kvmrt.libvirt_sync.sync import SyncStatus, sync_to_libvirt
from kvmrt.lifecycle import RUNNING, RunStatus, boot_vm
from kvmrt.tuning import engine
from kvmrt.tuning.journal import Journal
from kvmrt.tuning.model import Action, Setting, summarize
from kvmrt.tuning.settings import (KINDS, CgroupCpuset, CpuOnline, DefaultIrqAffinity,
                                   IrqAffinity, TaskAffinity, WorkqueueMask)
from test_kernel_model import RT, simlike
from test_sync import EXAMPLE, domains  # noqa: F401 (a fixture: libvirt's test driver)
from test_tuning import changed, rt_vm, tree

OLD_JOURNAL = Path(__file__).parent / "data" / "journal-v1.jsonl"


def simlike_v1() -> hostgen.HostSpec:
    """The kernel-model host with a cgroup v1 cpuset tree."""
    spec = simlike()
    return dataclasses.replace(spec, name="simlike_v1", cpusets=hostgen.libvirt_cpusets(spec))


def records(data: bytes) -> list[dict]:
    """The journal's records without the process that wrote them, a CPU
    set as its CPUs (a cpulist text since, a list of numbers before), and
    without the label of a thread (its key names it; no longer written)."""
    lines = [json.loads(line) for line in data.splitlines()]
    return [{k: _cpus(v) for k, v in r.items()
             if k != "by" and not (k == "label" and r.get("key", "").startswith("task:"))}
            for r in lines]


def _cpus(value):
    if isinstance(value, dict) and isinstance(value.get("cpus"), str):
        return {"cpus": sorted(IdSet.parse(value["cpus"]))}
    return value


def test_a_journal_written_before_the_settings_were_typed_still_restores(make_host):
    host = make_host(simlike_v1())
    fs, before = HostFS(host), tree(host)
    engine.tune(fs, rt_vm(host, RT))
    journal = Journal.for_host(fs)
    journal.path.write_bytes(OLD_JOURNAL.read_bytes())   # as that kvmrt left it
    result = engine.recover(fs, running=set())
    assert not result.failed and not result.refused and result.notes == []
    assert changed(before, tree(host)) == []
    assert not journal.path.exists()


def test_this_kvmrt_journals_the_same_records_as_before(make_host):
    host = make_host(simlike_v1())
    fs = HostFS(host)
    engine.tune(fs, rt_vm(host, RT))
    written = Journal.for_host(fs).path.read_bytes()
    assert records(written) == records(OLD_JOURNAL.read_bytes())


def _task(tid: int, comm: str) -> Task:
    return Task(pid=tid, tid=tid, comm=comm, affinity=frozenset(range(8)), last_cpu=0,
                starttime=4711, kernel=False, pinned=False)


@pytest.mark.parametrize("setting, key, label, shown", [
    (CpuOnline(40), "cpu:40", "CPU 40", "online -> offline"),
    (CgroupCpuset("machine"), "cpuset:machine", "cpuset /machine", "0-7 -> (none)"),
    (CgroupCpuset(""), "cpuset:", "cpuset /", "0-7 -> (none)"),
    (TaskAffinity(_task(812, "sshd")), "task:812:4711", "thread 812 (sshd)", "0-7 -> (none)"),
    (IrqAffinity(24, "eth0"), "irq:24", "IRQ 24 (eth0)", "0-7 -> (none)"),
    (DefaultIrqAffinity(), "irq-default", "default IRQ affinity", "0-7 -> (none)"),
    (WorkqueueMask(), "workqueue", "workqueue cpumask", "0-7 -> (none)"),
])
def test_each_setting_knows_its_journal_key_label_and_how_it_shows(setting, key, label, shown):
    assert (setting.key, setting.label) == (key, label)
    old, new = (True, False) if isinstance(setting, CpuOnline) else (frozenset(range(8)),
                                                                       frozenset())
    assert Action(setting, old, new).describe() == f"{label}: {shown}"
    assert Action(setting, old, new, record_only=True).describe() == f"(kernel) {label}: {shown}"


def test_every_kind_is_registered_once_and_is_a_hashable_value():
    assert len(set(KINDS)) == len(KINDS) and all(issubclass(k, Setting) for k in KINDS)
    assert {CpuOnline(3), CpuOnline(3), IrqAffinity(9, "acpi")} == {CpuOnline(3),
                                                                    IrqAffinity(9, "acpi")}
    assert DefaultIrqAffinity() == DefaultIrqAffinity()


def test_the_plan_is_written_kind_by_kind_and_summarized_in_that_order(make_host):
    host = make_host(simlike_v1())
    actions = engine.tune(HostFS(host), rt_vm(host, RT), dry_run=True).actions
    kinds = [type(a.setting) for a in actions]
    assert kinds == sorted(kinds, key=KINDS.index)
    assert summarize(actions) == ("CPUs online/offline 2, cgroup cpusets 2, threads 12, "
                                  "IRQs 5, default IRQ affinity 1, workqueue cpumask 1")


# --- statuses are enums that print as before ----------------------------------

UNDEFINED = "[00000000-0000-4000-8000-0000000000ff]\nname = nowhere\ncpuset = 2-3\n"


def test_sync_outcomes_are_enum_members_that_print_their_word(domains, threadripper):
    topology = read_host(HostFS(threadripper)).topology
    vms = load_config(str(EXAMPLE)).select(("RedHawk-8.4-RT",))
    (queried,) = sync_to_libvirt(vms, topology, domains, query=True)
    (synced,) = sync_to_libvirt(vms, topology, domains, query=False)
    (again,) = sync_to_libvirt(vms, topology, domains, query=True)
    (missing,) = sync_to_libvirt(parse_config(UNDEFINED).vms, topology, domains, query=True)
    assert [o.status for o in (queried, synced, again, missing)] == [
        SyncStatus.OUT_OF_STEP, SyncStatus.UPDATED, SyncStatus.IN_STEP, SyncStatus.FAILED]
    assert [f"{s}" for s in SyncStatus] == ["in step", "out of step", "updated", "failed"]


def test_boot_results_are_enum_members_that_print_their_word(domains, threadripper):
    fs = HostFS(threadripper)
    topology = read_host(fs).topology
    vm = load_config(str(EXAMPLE)).find("RedHawk-8.4-RT")
    running = domains.state(vm.uuid) in RUNNING
    dry = boot_vm(fs, domains, vm, topology, dry_run=True)
    assert dry.status is (RunStatus.WOULD_RETUNE if running else RunStatus.WOULD_START)
    failed = boot_vm(fs, domains, parse_config(UNDEFINED).vms[0], topology, dry_run=True)
    assert failed.status is RunStatus.FAILED and "libvirt has no domain" in failed.error
    assert [f"{s}" for s in RunStatus] == [
        "started", "retuned", "would be started", "would be retuned", "stopped",
        "powered off", "failed"]
