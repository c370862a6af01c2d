"""Reading real machines as the kernel writes them.

sysfs values that end in NUL bytes (firmware and device-tree strings on
ARM and some x86 machines), lack the newline, or carry stray blanks, read
as the kernel and hwloc read them; NUMA layouts without a node 0, and
kernels without NUMA. Fixture trees from :mod:`hostgen`, read in-process
and by the installed tools (``KVMRT_FSROOT``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import hostcheck_fixtures as F
import hostgen
from kvmrt.errors import HostReadError
from kvmrt.host import HostFS, read_host
from kvmrt.host.cgroups import read_cpusets
from kvmrt.host.cpuctl import is_online, set_online
from kvmrt.host.irqs import read_default_affinity, read_irqs, read_workqueue_mask

BIN = Path(sys.executable).parent
CPU = hostgen.CPU

# How some kernels write a value ``v`` (the fixtures write ``v\n``).
QUIRKS = {
    "nul": lambda v: v + "\0",
    "nul-padded": lambda v: v + "\0" * 7,
    "newline-nul": lambda v: v + "\n\0",
    "nul-newline": lambda v: v + "\0\n",
    "no-newline": lambda v: v,
    "blanks": lambda v: f" {v} \t\n",
    "crlf": lambda v: v + "\r\n",
    "two-newlines": lambda v: v + "\n\n",
}


def tool(name: str, *args: str, root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KVMRT_FSROOT": str(root)}
    exe = shutil.which(name, path=str(BIN)) or name
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=60)


def snapshot(root: Path) -> dict:
    """What kvmrt reads of a host: topology, PCI, IRQs, masks, cpusets, online state."""
    fs = HostFS(root)
    host = read_host(fs)
    return {"host": host, "irqs": read_irqs(fs), "default": read_default_affinity(fs),
            "workqueue": read_workqueue_mask(fs), "cpusets": read_cpusets(fs),
            "online": {c: is_online(fs, c) for c in host.topology.all_cpus}}


def quirky(make_host, spec: hostgen.HostSpec, quirk: str) -> tuple[Path, Path]:
    """A clean tree of ``spec`` and one whose one-line sys and proc/irq values
    are written the ``quirk`` way."""
    clean, odd = make_host(spec), make_host(spec)
    changed = [p for below in ("sys", "proc/irq")
               for p in hostgen.rewrite_values(odd, below, QUIRKS[quirk])]
    assert len(changed) > 50
    return clean, odd


# -- values with NULs and odd whitespace ------------------------------------------
@pytest.mark.parametrize("quirk", QUIRKS)
@pytest.mark.parametrize("spec", [hostgen.threadripper_cgroup_v1, hostgen.offline_4c2t,
                                  hostgen.legacy_1s2c2t])
def test_quirky_values_read_like_clean_ones(make_host, spec, quirk: str) -> None:
    clean, odd = quirky(make_host, spec(), quirk)
    assert snapshot(odd) == snapshot(clean)


@pytest.mark.parametrize("quirk", ["nul", "newline-nul", "blanks"])
def test_show_host_reads_quirky_values(make_host, quirk: str) -> None:
    clean, odd = quirky(make_host, hostgen.threadripper_5975wx(), quirk)
    for args in ((), ("--json",)):
        want = tool("kvmrt-show-host", *args, root=clean)
        got = tool("kvmrt-show-host", *args, root=odd)
        assert (got.returncode, got.stderr) == (0, "")
        assert got.stdout == want.stdout
    assert "node n3" in got.stdout or json.loads(got.stdout)["nodes"][3]["cpus"]


def test_validate_host_reads_quirky_values(tmp_path: Path) -> None:
    spec = hostgen.threadripper_5975wx()
    clean = F.build_rt_host(tmp_path / "clean", spec, F.tuned())
    odd = F.build_rt_host(tmp_path / "odd", spec, F.tuned())
    hostgen.rewrite_values(odd, "sys", QUIRKS["nul"])
    hostgen.rewrite_values(odd, "proc/sys", QUIRKS["no-newline"])
    want = json.loads(tool("kvmrt-validate-host", "--json", "-c", "test:///default",
                           root=clean).stdout)
    got = json.loads(tool("kvmrt-validate-host", "--json", "-c", "test:///default",
                          root=odd).stdout)
    assert got == want


def test_a_cpu_online_file_ending_in_nul_reads_and_writes(offline_host: Path) -> None:
    fs = HostFS(offline_host)
    (offline_host / CPU / "cpu5/online").write_text("0\0")
    (offline_host / CPU / "cpu1/online").write_text("1\0\n")
    assert not is_online(fs, 5) and is_online(fs, 1)
    topo = read_host(fs).topology
    assert not topo.cpus[5].online and topo.cpus[1].online
    set_online(fs, 5, True)
    assert is_online(fs, 5)


def test_a_nul_inside_a_value_is_still_refused_naming_the_file(small: Path) -> None:
    (small / CPU / "online").write_text("0-1\0garbage\n")
    with pytest.raises(HostReadError) as err:
        read_host(HostFS(small))
    assert f"{small / CPU / 'online'}: not a cpulist" in str(err.value)
    proc = tool("kvmrt-show-host", root=small)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{small / CPU / 'online'}" in proc.stderr
