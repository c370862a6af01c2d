"""Fuzzed inputs (issue 11, "Inputs"): no config text and no set string
gives a traceback, takes over 2 s or allocates over 200 MB.

A fixed seed makes every run try the same 10,000 inputs: 5,000 set strings
(CPUSET and ID-set forms, huge and wide numbers) resolved on the fixture
hosts, and 5,000 config texts (hostile values, control characters,
comments, quoting, continuations) loaded, validated, written back and, for
each VM that places, written into a libvirt domain XML with lxml.
Everything runs in-process. Each run gets a 2 s alarm (SIGALRM) and the
address space is limited to what the process had plus 200 MB
(RLIMIT_AS), so a run that would take more fails fast with MemoryError
instead of taking the machine down; tracemalloc would be exact but makes
the 10,000 runs six times slower.
"""

from __future__ import annotations

import random
import resource
import signal
import time
from contextlib import contextmanager

import pytest

from kvmrt.config.file import config_text, format_config, parse_config
from kvmrt.config.model import ATTRIBUTES
from kvmrt.sets import CpuSpec, IdSet
from kvmrt.errors import KvmrtError
from kvmrt.host import HostFS, read_host
from kvmrt.libvirt_sync.domxml import apply_config
from kvmrt.placement import place
from kvmrt.validate import validate

SEED = 20251111
SETS = 5_000
CONFIGS = 5_000
MAX_SECONDS = 2.0
MAX_BYTES = 200 * 1024 * 1024
DOMAIN_XML = """<domain type='kvm'>
  <name>fuzz</name>
  <uuid>6b8b4567-4567-4567-4567-456745674567</uuid>
  <memory unit='KiB'>1048576</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc-q35-8.2'>hvm</type></os>
  <devices/>
</domain>
"""


def _number(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return str(rng.randrange(0, 70))
    if kind < 0.7:
        return str(rng.choice([511, 512, 1023, 1024, 4095, 4096, 8191, 8192, 2**32 - 1]))
    if kind < 0.85:
        return str(rng.randrange(0, 10**rng.randrange(1, 40)))
    if kind < 0.95:
        return "9" * rng.choice([4299, 4300, 4301, 5000, 20_000])
    return rng.choice(["", "-1", "+3", "0x10", "1e3", "٣", "\u0661", " 7 "])


def _element(rng: random.Random) -> str:
    prefix = rng.choice(["", "", "", "n", "c", "d", "p", "x", "N"])
    first = _number(rng)
    if rng.random() < 0.5:
        second = rng.choice(["", prefix, "n"]) + _number(rng)
        return f"{prefix}{first}-{second}"
    return prefix + first


def set_string(rng: random.Random) -> str:
    elements = [_element(rng) for _ in range(rng.choice([1, 1, 2, 3, 8, 200]))]
    text = rng.choice([",", ", ", ",,"]).join(elements)
    return ("~" if rng.random() < 0.2 else "") + text


_JUNK = ["\x00", "\x01", "\x1f", "\x7f", "\ufffe", "\uffff", "\u2028", "\r", "\t", '"',
         "\\", "=", "#", ";", "[", "]", "/", ".", "..", " ", "é", "\U0001f600"]


def _text(rng: random.Random) -> str:
    parts = [rng.choice(_JUNK) if rng.random() < 0.4 else rng.choice(["web", "VM 1", "x"])
             for _ in range(rng.randrange(0, 6))]
    return "".join(parts)


def _value(rng: random.Random, key: str) -> str:
    kind = rng.random()
    if key in ("cpuset", "numatune") and kind < 0.7:
        return set_string(rng)
    if key in ("nr_vcpus",) and kind < 0.7:
        return rng.choice(["auto", _number(rng), "-5", "100000000"])
    if key == "cpu_topology" and kind < 0.7:
        return ",".join(_number(rng) for _ in range(rng.choice([2, 3, 3, 4])))
    if key == "pcidevs" and kind < 0.7:
        return " ".join(rng.choice(["0000:21:00.0", "0000:21:00.1", "ffff:ff:1f.7",
                                    "0000:00:20.0", "10000:00:00.0", "zz"])
                        for _ in range(rng.randrange(0, 4)))
    if kind < 0.8:
        return rng.choice(["true", "no", "auto", "1", "0", "", "yes please"])
    if kind < 0.9:
        return '"' + _text(rng) + '"'
    return _text(rng)


def _uuid(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(["", "not-a-uuid", " x ", "[nested]"])
    return "%08x-%04x-4%03x-8%03x-%012x" % (rng.getrandbits(32), rng.getrandbits(16),
                                            rng.getrandbits(12), rng.getrandbits(12),
                                            rng.getrandbits(48))


def config_string(rng: random.Random) -> str:
    keys = list(ATTRIBUTES) + ["Name", "cpus", ""]
    lines: list[str] = []
    for _ in range(rng.randrange(0, 4)):
        lines.append(f"[{_uuid(rng)}]" if rng.random() < 0.95 else "[broken")
        for _ in range(rng.randrange(0, 8)):
            key = rng.choice(keys)
            lines.append(f"{key} = {_value(rng, key)}")
            while rng.random() < 0.15:
                lines.append(rng.choice(["    ", "\t", ""]) + _value(rng, key))
            if rng.random() < 0.15:
                lines.append(rng.choice(["# cpuset = 1", "; nr_vcpus=2", "", "  # x = y"]))
    return "\n".join(lines) + rng.choice(["\n", "", "\r\n"])


@pytest.fixture(scope="module")
def hosts(tmp_path_factory, big_host):
    import hostgen

    made = [read_host(HostFS(big_host))]
    for spec in (hostgen.small_4c1t(), hostgen.threadripper_5975wx(),
                 hostgen.offline_4c2t()):
        root = hostgen.build_host(tmp_path_factory.mktemp(spec.name), spec)
        made.append(read_host(HostFS(root)))
    return made


class _Alarm(Exception):
    pass


def _ring(signum, frame):
    raise _Alarm(f"over {MAX_SECONDS} s")


@contextmanager
def _bounded():
    """Limit the address space to its current size plus MAX_BYTES and
    arm SIGALRM for each run (see :meth:`_Runs.run`)."""
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    old_limit = resource.getrlimit(resource.RLIMIT_AS)
    old_handler = signal.signal(signal.SIGALRM, _ring)
    resource.setrlimit(resource.RLIMIT_AS, (size + MAX_BYTES, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old_limit)
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)


class _Runs:
    """Runs each input under an alarm; collects the failures."""

    def __init__(self) -> None:
        self.failures: list[str] = []
        self.count = 0
        self.slowest = 0.0

    def run(self, what: str, work) -> None:
        self.count += 1
        start = time.perf_counter()
        failure = None
        signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS)
        try:
            work()
        except KvmrtError:
            pass
        except (Exception, _Alarm) as exc:  # a traceback, MemoryError or the alarm
            failure = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if failure is not None:
            self.failures.append(f"{type(failure).__name__}: {str(failure)[:200]} "
                                 f"for {what[:200]!r}")
        self.slowest = max(self.slowest, time.perf_counter() - start)


def _try_set(text: str, host) -> None:
    for parse in (IdSet.parse, IdSet.parse_nodes):
        try:
            parse(text)
        except KvmrtError:
            pass
    CpuSpec.parse(text).resolve(host.topology)


def _try_config(text: str, host) -> None:
    config = parse_config(text, "fuzz.cfg")
    validate(config, host, include_disabled=True)
    config_text(config)
    format_config(config.vms)
    for vm in config.vms:
        if vm.invalid or not vm.values.get("name"):
            continue
        apply_config(DOMAIN_XML, place(vm, host.topology))


def test_fuzzed_inputs_never_crash_hang_or_exhaust_memory(hosts):
    rng = random.Random(SEED)
    runs = _Runs()
    inputs = [set_string(rng) for _ in range(SETS)] + [config_string(rng)
                                                       for _ in range(CONFIGS)]
    tries = [_try_set] * SETS + [_try_config] * CONFIGS
    begin = time.perf_counter()
    with _bounded():
        for i, (text, attempt) in enumerate(zip(inputs, tries)):
            runs.run(text, lambda: attempt(text, hosts[i % len(hosts)]))
    elapsed = time.perf_counter() - begin
    assert runs.count >= 10_000
    assert runs.failures == []
    assert runs.slowest < MAX_SECONDS      # also a run the alarm could not interrupt (C code)
    assert elapsed < 60, f"{runs.count} inputs took {elapsed:.0f} s"
    print(f"{runs.count} inputs in {elapsed:.1f} s, slowest {runs.slowest:.3f} s")
