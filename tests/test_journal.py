"""The journal under faults: torn and corrupt lines, short writes on a full
file system, hostile state directories, values the kernel will not take
back, and two kvmrt processes at once. Every test runs the real engine on
a fixture host and compares the whole tree (restore means byte for byte)."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import hostgen
from kvmrt import lockfile
from kvmrt.host import HostFS
from kvmrt.lockfile import LockBusy
from kvmrt.status import leftovers
from kvmrt.tuning import engine, watcher
from kvmrt.tuning.journal import Journal, JournalError
from test_boot_cli import host  # noqa: F401  (fixture)
from test_tuning import changed, rt_vm, tree

TESTS = str(Path(__file__).parent)
SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def tr(make_host):
    return make_host(hostgen.threadripper_5975wx())


def child(script: str, root: Path, **env) -> subprocess.Popen:
    """A second kvmrt process on the same host (tests/ and src/ importable)."""
    prelude = (f"import sys, pathlib; sys.path[:0] = [{TESTS!r}, {SRC!r}]\n"
               f"root = pathlib.Path({str(root)!r})\n")
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(script)],
                            env={**os.environ, **env}, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def reads(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdout.readline() == line, proc.stderr.read() if proc.poll() else ""


# --- records that do not read --------------------------------------------------


CORRUPT = {
    "invalid UTF-8": (b'{"op": "settled", "key": "cpu:\xff"}', "line 2 is not UTF-8 text"),
    "not JSON": (b'{"op": "settled", "key"', "line 2 is not a JSON object"),
    "missing key": (b'{"op": "old", "label": "CPU 40", "value": true}',
                    "line 2 lacks 'key' (a 'old' record)"),
    "wrong type": (b'{"op": "old", "key": "cpu:40", "value": "yes"}',
                   "line 2 has 'value' = \"yes\", not true, false or"),
    "VM field": (b'{"op": "vm", "vm": {"uuid": "u", "name": "x", "shielded": "8-23", '
                 b'"offline": []}}', "line 2 has 'shielded' = \"8-23\", not a list of CPU"),
    "unknown op": (b'{"op": "olde", "key": "cpu:40"}', "line 2 has an unknown op 'olde'"),
}


@pytest.mark.parametrize("line,message", CORRUPT.values(),
                         ids=[k.replace(" ", "-") for k in CORRUPT])
def test_an_unreadable_record_stops_everything_before_any_change(tr, line, message):
    """Not the last line, so not torn: the journal names the line and what
    to do, and neither recovery nor a boot changes the host or the file."""
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    journal = Journal.for_host(fs)
    first, rest = journal.path.read_bytes().split(b"\n", 1)
    journal.path.write_bytes(first + b"\n" + line + b"\n" + rest)
    before, text = tree(tr), journal.path.read_bytes()
    for run in (lambda: engine.recover(fs, running=set()),
                lambda: engine.tune(fs, rt_vm(tr)),
                lambda: engine.release(fs, [rt_vm(tr).uuid])):
        with pytest.raises(JournalError) as info:
            run()
        assert str(info.value).startswith(f"journal {journal.path}: {message}")
        assert "repair that line, or move the file aside" in str(info.value)
        assert "\n" not in str(info.value)
    assert changed(before, tree(tr)) == [] and journal.path.read_bytes() == text


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_on_its_own_line(tr):
    """A kvmrt killed mid-append left half a line; the next boot's records
    must not be glued to it, or shutdown no longer knows the VM."""
    fs, before = HostFS(tr), tree(tr)
    journal = Journal.for_host(fs)
    journal.path.parent.mkdir(parents=True)
    journal.path.write_bytes(b'{"key": "cpu:40", "label": "CPU 40", "op": "ol')
    assert journal.load().empty
    engine.tune(fs, rt_vm(tr))
    assert rt_vm(tr).uuid in journal.load().vms
    result = engine.release(fs, [rt_vm(tr).uuid])
    assert not result.notes or not any("changed since" in n for n in result.notes)
    assert changed(before, tree(tr)) == []
    assert not journal.path.exists()


def test_a_whole_last_record_without_its_line_break_counts(tr):
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    journal = Journal.for_host(fs)
    journal.path.write_bytes(journal.path.read_bytes() + b'{"key": "x", "op": "refused"}')
    engine.tune(fs, rt_vm(tr))
    assert "x" in journal.load().refused


# --- writes that do not fit ----------------------------------------------------


def test_a_short_write_changes_nothing(tr):
    """RLIMIT_FSIZE lets the journal grow by only part of boot's batch:
    write(2) returns a short count, then EFBIG. Nothing it announced may
    change, and the journal must not keep half a batch."""
    fs, before = HostFS(tr), tree(tr)
    journal = Journal.for_host(fs)
    proc = child("""\
        import resource, signal
        from test_tuning import rt_vm
        from kvmrt.host import HostFS
        from kvmrt.tuning import engine
        from kvmrt.tuning.journal import JournalError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        try:
            engine.tune(HostFS(root), rt_vm(root))
        except JournalError as exc:
            print(exc)
        """, tr)
    out, err = proc.communicate(timeout=120)
    assert out.startswith(f"journal {journal.path}: cannot record "), err
    assert "file too large; nothing they announce was changed" in out
    assert changed(before, tree(tr)) == []
    assert journal.path.read_bytes().endswith(b"\n") and journal.path.stat().st_size <= 3000
    engine.recover(fs, running=set())      # the VM line alone: nothing to put back
    assert changed(before, tree(tr)) == [] and not journal.path.exists()


@pytest.fixture
def full_tmpfs(tmp_path):
    """A 64 KiB tmpfs, filled up but for about 1 KiB, as $KVMRT_STATE_DIR."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs",
                           str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        state = mnt / "kvmrt"
        state.mkdir(mode=0o755)
        with open(mnt / "filler", "wb") as f:
            try:
                f.write(b"x" * (64 << 10))
            except OSError:
                pass
        (mnt / "filler").write_bytes(b"x" * ((mnt / "filler").stat().st_size - 4096))
        yield state
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_a_really_full_file_system_changes_nothing(tr, full_tmpfs, monkeypatch):
    monkeypatch.setenv("KVMRT_STATE_DIR", str(full_tmpfs))
    fs, before = HostFS(tr), tree(tr)
    with pytest.raises(JournalError) as info:
        engine.tune(fs, rt_vm(tr))
    assert "no space left on device; nothing they announce was changed" in str(info.value)
    assert changed(before, tree(tr)) == []
    data = Journal(full_tmpfs).path.read_bytes()
    assert data == b"" or data.endswith(b"\n")     # never half a batch
    engine.recover(fs, running=set())
    assert changed(before, tree(tr)) == []


# --- files and directories kvmrt did not make -----------------------------------


def test_a_fifo_journal_is_refused_without_hanging(tr):
    """kvmrt-stat reads the journal as any user: a FIFO must not hang it."""
    journal = Journal.for_host(HostFS(tr))
    journal.dir.mkdir(parents=True)
    os.mkfifo(journal.path)
    proc = child("""\
        from kvmrt.host import HostFS
        from kvmrt.tuning.journal import Journal, JournalError
        try:
            Journal.for_host(HostFS(root)).load()
        except JournalError as exc:
            print(exc)
        """, tr)
    try:
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out == f"journal {journal.path}: not a regular file; kvmrt writes only regular " \
                  "files there: remove it\n", err


def test_a_dangling_symlink_journal_is_refused_and_not_followed(tr, tmp_path):
    fs, before = HostFS(tr), tree(tr)
    journal = Journal.for_host(fs)
    journal.dir.mkdir(parents=True)
    journal.path.symlink_to(tmp_path / "elsewhere")
    for run in (journal.load, lambda: engine.tune(fs, rt_vm(tr))):
        with pytest.raises(JournalError, match="is a symbolic link; kvmrt does not follow"):
            run()
    assert not (tmp_path / "elsewhere").exists() and changed(before, tree(tr)) == []


@pytest.mark.parametrize("name", ["lock", "watcher.pid"])
@pytest.mark.parametrize("dangling", [False, True], ids=["to-a-file", "dangling"])
def test_a_symlinked_lock_or_pid_file_is_refused_and_its_target_untouched(tr, tmp_path, name,
                                                                          dangling):
    """Root writes its PID into both: through a link it would truncate or
    create any file of the system."""
    fs, before = HostFS(tr), tree(tr)
    journal = Journal.for_host(fs)
    journal.dir.mkdir(parents=True)
    target = tmp_path / "passwd"
    if not dangling:
        target.write_text("root:x:0:0\n")
    (journal.dir / name).symlink_to(target)
    write = {"lock": lambda: engine.tune(fs, rt_vm(tr)),
             "watcher.pid": lambda: watcher._write_pid(journal)}[name]
    with pytest.raises(JournalError, match=f"{name}: is a symbolic link; kvmrt does not follow"):
        write()
    assert (target.read_text() == "root:x:0:0\n") if not dangling else not target.exists()
    assert changed(before, tree(tr)) == []


def test_a_symlinked_or_foreign_state_directory_is_refused(tr, tmp_path, monkeypatch):
    fs, before = HostFS(tr), tree(tr)
    real = tmp_path / "real"
    real.mkdir(mode=0o755)
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.setenv("KVMRT_STATE_DIR", str(link))
    with pytest.raises(JournalError, match="the state directory is a symbolic link"):
        engine.tune(fs, rt_vm(tr))
    monkeypatch.setenv("KVMRT_STATE_DIR", str(real))
    os.chown(real, 4321, 4321)
    with pytest.raises(JournalError, match="owned by uid 4321, not root"):
        engine.tune(fs, rt_vm(tr))
    os.chown(real, 0, 0)
    real.chmod(0o777)
    with pytest.raises(JournalError, match=r"writable by others \(mode 0777\)"):
        engine.tune(fs, rt_vm(tr))
    assert list(real.iterdir()) == [] and changed(before, tree(tr)) == []


def test_state_files_have_explicit_modes_whatever_the_umask(tr):
    old = os.umask(0o077)
    try:
        fs = HostFS(tr)
        engine.tune(fs, rt_vm(tr))
        watcher._write_pid(Journal.for_host(fs))
    finally:
        os.umask(old)
    state = tr / "run/kvmrt"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [state, *state.iterdir()]}
    assert modes == {"kvmrt": 0o755, "journal.jsonl": 0o644, "lock": 0o644,
                     "watcher.pid": 0o644}


@pytest.fixture
def immutable(tr):
    made = []

    def chattr(path: Path) -> None:
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported on the file system of tmp_path")
        made.append(path)

    yield chattr
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_immutable_state_directory_is_refused_before_restoring(tr, immutable):
    """The journal could not be removed after the restore: say so first."""
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    journal = Journal.for_host(fs)
    immutable(journal.dir)
    before = tree(tr)
    with pytest.raises(JournalError, match=r"is immutable .*chattr -ia"):
        engine.release(fs, [rt_vm(tr).uuid])
    assert changed(before, tree(tr)) == []


# --- values the kernel does not take back ----------------------------------------


def test_a_value_not_restored_stays_journaled_until_it_is(tr, immutable):
    """CPU 41 refuses to come back online: shutdown says so, the journal
    keeps it, every later command retries and kvmrt-stat reports it; once
    the kernel takes it, it is restored like the rest."""
    fs, before = HostFS(tr), tree(tr)
    vm = rt_vm(tr)
    engine.tune(fs, vm)
    immutable(tr / "sys/devices/system/cpu/cpu41/online")
    result = engine.release(fs, [vm.uuid])
    assert [r for r in result.refused if r.startswith("CPU 41")]
    for _ in range(2):       # the next commands: still refused, still journaled
        state = Journal.for_host(fs).load()
        assert "cpu:41" in state.baseline and leftovers(state, running=set())
        assert engine.recover(fs, running=set()).refused
    subprocess.run(["chattr", "-i", str(tr / "sys/devices/system/cpu/cpu41/online")],
                   check=True)
    engine.recover(fs, running=set())
    assert changed(before, tree(tr)) == []
    assert not Journal.for_host(fs).path.exists()


# --- two processes --------------------------------------------------------------


TUNE_AND_WAIT = """\
    from test_tuning import rt_vm
    from kvmrt.host import HostFS
    from kvmrt.tuning import engine
    engine.tune(HostFS(root), rt_vm(root))
    print("tuned", flush=True)
    sys.stdin.readline()          # starting the domain
    """


def test_recovery_leaves_alone_a_vm_another_boot_has_tuned_but_not_started(tr):
    fs, before = HostFS(tr), tree(tr)
    boot = child(TUNE_AND_WAIT, tr)
    try:
        reads(boot, "tuned\n")
        tuned = tree(tr)
        engine.recover(fs, running=set())     # a second kvmrt-boot, its domain not up yet
        assert changed(tuned, tree(tr)) == []
    finally:
        boot.kill()
        boot.wait()
    engine.recover(fs, running=set())         # the first boot died before starting it
    assert changed(before, tree(tr)) == []


HOLD_LOCK = """\
    from kvmrt.host import HostFS
    from kvmrt.tuning.journal import Journal
    journal = Journal.for_host(HostFS(root))
    with journal.locked():
        print("locked", flush=True)
        sys.stdin.readline()
        journal.forget_vm(sys.argv[-1] if len(sys.argv) > 1 else journal.load().vms.popitem()[0])
    """


@pytest.fixture
def wait_setting():
    yield lockfile.set_wait
    lockfile.set_wait(lockfile.DEFAULT_WAIT)


def test_a_held_journal_lock_names_its_holder_and_is_waited_for_boundedly(tr, wait_setting):
    fs = HostFS(tr)
    said: list[str] = []
    wait_setting(0.4, notify=said.append)
    holder = child(HOLD_LOCK.replace("journal.forget_vm", "pass  #"), tr)
    try:
        reads(holder, "locked\n")
        start = time.monotonic()
        with pytest.raises(LockBusy) as info:
            engine.tune(fs, rt_vm(tr))
        assert 0.4 <= time.monotonic() - start < 10
    finally:
        holder.kill()
        holder.wait()
    lock = Journal.for_host(fs).dir / "lock"
    assert str(info.value).startswith(f"{lock}: locked by pid {holder.pid} (-c import sys")
    assert "gave up after 0.4 s" in str(info.value)
    assert said == [f"waiting up to 0.4 s for {lock}, locked by pid {holder.pid} "
                    f"{info.value.holder.split(' ', 2)[2]}"]


def test_the_watcher_binds_nothing_for_a_vm_released_while_it_waited(tr):
    """The watcher used to decide outside the lock, then bind after a
    shutdown had released the VM: the IRQ stayed on the rt CPU."""
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    hostgen.add_irq(tr, hostgen.threadripper_5975wx(),
                    hostgen.IrqSpec(201, "vfio-msix[1](0000:21:00.0)", chip="PCI-MSIX"))
    irq = tr / "proc/irq/201/smp_affinity_list"
    original = irq.read_text()
    shutdown = child(HOLD_LOCK, tr)
    try:
        reads(shutdown, "locked\n")
        outcome: list = []
        worker = threading.Thread(
            target=lambda: outcome.append(watcher.watch_once(fs, Journal.for_host(fs))))
        worker.start()
        time.sleep(0.5)
        shutdown.stdin.write("go\n")          # the shutdown forgets the VM, unlocks
        shutdown.stdin.flush()
        assert shutdown.wait(30) == 0
        worker.join(30)
    finally:
        shutdown.kill()
    assert outcome == [(0, True)]             # skipped its round: the lock was held
    assert watcher.watch_once(fs, Journal.for_host(fs)) == (0, False)
    assert irq.read_text() == original


# --- as a user runs the tools -------------------------------------------------


def test_boot_with_wait_0_names_the_holder_and_changes_nothing(make_host):
    from test_boot_cli import kvmrt
    root = make_host(hostgen.threadripper_5975wx())
    before = tree(root)
    holder = child(HOLD_LOCK.replace("journal.forget_vm", "pass  #"), root)
    try:
        reads(holder, "locked\n")
        proc = kvmrt(root, "kvmrt-boot", "--wait", "0", check=1)
    finally:
        holder.kill()
        holder.wait()
    lock = root / "run/kvmrt/lock"
    assert proc.stderr.startswith(f"kvmrt-boot: {lock}: locked by pid {holder.pid} (")
    assert "not waiting (--wait 0)" in proc.stderr and proc.stderr.count("\n") == 1
    assert changed(before, tree(root)) == []


@pytest.mark.parametrize("tool", ["kvmrt-boot", "kvmrt-shutdown", "kvmrt-sync-config"])
def test_wait_nan_is_refused_not_an_endless_silent_wait(make_host, tool):
    from test_boot_cli import kvmrt
    root = make_host(hostgen.threadripper_5975wx())
    holder = child(HOLD_LOCK.replace("journal.forget_vm", "pass  #"), root)
    try:
        reads(holder, "locked\n")
        proc = kvmrt(root, tool, "--wait", "nan", check=2)
    finally:
        holder.kill()
        holder.wait()
    assert "Invalid value for '--wait': nan is not a number of seconds" in proc.stderr


def test_stat_refuses_a_fifo_journal_in_one_line_without_hanging(make_host):
    from test_boot_cli import kvmrt
    root = make_host(hostgen.threadripper_5975wx())
    (root / "run/kvmrt").mkdir(parents=True)
    os.mkfifo(root / "run/kvmrt/journal.jsonl")
    proc = kvmrt(root, "kvmrt-stat", check=1)
    assert proc.stderr == (f"kvmrt-stat: journal {root}/run/kvmrt/journal.jsonl: not a "
                           "regular file; kvmrt writes only regular files there: remove it\n")


@pytest.mark.parametrize("fault", ["corrupt line", "immutable directory"])
def test_shutdown_with_a_journal_it_cannot_use_stops_no_vm(host, immutable, fault):
    """kvmrt-shutdown used to stop its VMs, then fail to read the journal:
    the VMs were down and the host stayed tuned. It refuses first."""
    from test_boot_cli import kvmrt
    kvmrt(host, "kvmrt-boot")
    journal = Journal.for_host(HostFS(host))
    if fault == "corrupt line":
        first, rest = journal.path.read_bytes().split(b"\n", 1)
        journal.path.write_bytes(first + b"\n" + CORRUPT["missing key"][0] + b"\n" + rest)
    else:
        immutable(journal.dir)
    before, text = tree(host), journal.path.read_bytes()
    proc = kvmrt(host, "kvmrt-shutdown", "--timeout", "5", check=1)
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(f"kvmrt-shutdown: journal {journal.path.parent}")
    assert changed(before, tree(host)) == [] and journal.path.read_bytes() == text


def test_shutdown_waits_for_the_journal_lock_before_it_stops_a_vm(host):
    """Another command holding the journal lock past --wait used to be met
    after the VMs had stopped: down, with the host still tuned. It is met
    before: the holder is named and no VM stops."""
    from test_boot_cli import kvmrt
    kvmrt(host, "kvmrt-boot")
    journal = Journal.for_host(HostFS(host))
    before, text = tree(host), journal.path.read_bytes()
    holder = child(HOLD_LOCK.replace("journal.forget_vm", "pass  #"), host)
    try:
        reads(holder, "locked\n")
        proc = kvmrt(host, "kvmrt-shutdown", "--wait", "0.3", "--timeout", "5", check=1)
    finally:
        holder.kill()
        holder.wait()
    assert proc.stdout == "", proc.stdout
    waiting, refused = proc.stderr.splitlines()
    assert waiting.startswith(f"kvmrt-shutdown: waiting up to 0.3 s for {journal.dir / 'lock'}")
    assert refused.startswith(f"kvmrt-shutdown: {journal.dir / 'lock'}: locked by pid "
                              f"{holder.pid}") and "gave up after 0.3 s" in refused
    assert changed(before, tree(host)) == [] and journal.path.read_bytes() == text
    kvmrt(host, "kvmrt-shutdown", "--timeout", "5")      # free again: it stops and restores
    assert not journal.path.exists() or Journal.for_host(HostFS(host)).load().empty


BOOT_SHUTDOWN_LOOP = """\
    from test_tuning import rt_vm
    from kvmrt.host import HostFS
    from kvmrt.tuning import engine
    fs, vm = HostFS(root), rt_vm(root)
    print("go", flush=True)
    while True:
        engine.tune(fs, vm)
        engine.release(fs, [vm.uuid])
    """


def _untear_fixture(root: Path, before: dict) -> int:
    """A fixture thread's ``status`` is rewritten in place (O_TRUNC, then
    write): a kill in between empties it, which a real /proc never shows.
    Put such files back as they were (the value kvmrt then finds is the
    baseline, which it settles); return how many."""
    torn = [rel for rel, data in before.items() if data and (root / rel).is_file()
            and (root / rel).stat().st_size == 0]
    for rel in torn:
        (root / rel).write_bytes(before[rel])
    return len(torn)


@dataclasses.dataclass
class TuneKills:
    """What the kills of :func:`kill_tuners` left, once recovered: hosts not
    restored byte for byte, journals not removed, fixture files torn."""

    kills: int = 0
    inexact: int = 0
    journals_kept: int = 0
    torn: int = 0


def kill_tuners(root: Path, seed: int, kills: int, seconds: float) -> TuneKills:
    """Kill harness: a process that tunes and releases an rt VM in a loop
    is SIGKILLed at random moments, ``kills`` times or for ``seconds``; each
    time the next command's recovery must put the host back byte for byte."""
    import random
    rng = random.Random(seed)
    fs, before = HostFS(root), tree(root)
    found, deadline = TuneKills(), time.monotonic() + seconds
    while found.kills < kills and time.monotonic() < deadline:
        loop = child(BOOT_SHUTDOWN_LOOP, root)
        reads(loop, "go\n")
        time.sleep(rng.uniform(0, 1.5))
        loop.kill()
        loop.wait()
        found.kills += 1
        found.torn += _untear_fixture(root, before)
        engine.recover(fs, running=set())
        found.inexact += bool(changed(before, tree(root)))
        found.journals_kept += Journal.for_host(fs).path.exists()
    return found


def test_sigkill_harness_recovery_restores_exactly(tr):
    """Fixed seed, bounded in time (bench/kill_harness.py runs it longer)."""
    found = kill_tuners(tr, seed=7, kills=20, seconds=45)
    assert found.kills >= 5 and (found.inexact, found.journals_kept) == (0, 0), found


def test_a_journal_left_empty_by_a_kill_before_its_removal_is_removed(tr):
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    engine.release(fs, [rt_vm(tr).uuid])
    journal = Journal.for_host(fs)
    journal.forget_vm(rt_vm(tr).uuid)        # the state a kill before compact() leaves
    assert journal.load().empty and journal.path.exists()
    engine.recover(fs, running=set())
    assert not journal.path.exists()


# --- size and reading at scale ------------------------------------------------


def test_a_big_host_journals_each_moved_thread_in_a_short_line(make_host):
    """512 CPUs: a thread's old affinity was a list of 512 numbers (2.5 KB a
    record, 52 MB for 20,000 threads); as a cpulist it is one short line,
    and the host still comes back byte for byte."""
    spec = dataclasses.replace(hostgen.big(cpus=512, nodes=16), proc=True)
    filler = tuple(hostgen.TaskSpec(20000, "app", tid=20000 + i) for i in range(200))
    host = make_host(dataclasses.replace(spec, tasks=hostgen.standard_tasks(spec) + filler))
    fs, before = HostFS(host), tree(host)
    vm = rt_vm(host, "[00000000-0000-4000-8000-0000000000a1]\nname = big\ncpuset = n1\n"
                     "rt = True\nnr_vcpus = auto\n")
    engine.tune(fs, vm)
    journal = Journal.for_host(fs)
    threads = [line for line in journal.path.read_bytes().splitlines() if b'"task:' in line]
    assert len(threads) >= 200
    assert max(len(line) for line in threads) < 80
    assert journal.path.stat().st_size < 100 * len(journal.path.read_bytes().splitlines())
    engine.release(fs, [vm.uuid])
    assert changed(before, tree(host)) == [] and not journal.path.exists()


def test_a_journal_changed_between_two_reads_is_read_anew(tr):
    """A command reads the journal again after its appends, decoding only
    the new lines; a file that no longer begins with what it read (another
    process rewrote it) is read whole."""
    fs = HostFS(tr)
    engine.tune(fs, rt_vm(tr))
    journal = Journal.for_host(fs)
    assert journal.load().baseline["cpu:40"] is True
    text = journal.path.read_bytes()
    edited = text.replace(b'{"key":"cpu:40","label":"CPU 40","op":"old","value":true}',
                          b'{"key":"cpu:40","label":"CPU 40","op":"old","value":false}')
    assert edited != text
    journal.path.write_bytes(edited)
    assert journal.load().baseline["cpu:40"] is False
    journal.path.write_bytes(edited + b'{"key":"cpu:40","op":"settled"}\n')
    assert "cpu:40" not in journal.load().baseline
