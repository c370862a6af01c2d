"""The rules a front end follows to boot and shut down VMs (kvmrt.lifecycle),
without click: the dashboard calls them as kvmrt-boot and kvmrt-shutdown do."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kvmrt.config.file import parse_config
from kvmrt.lifecycle import (DisabledVmNamed, VmResult, already_running, exit_status,
                             to_boot, to_shut_down)

U = "00000000-0000-4000-8000-0000000000{:02d}"
CONFIG = parse_config(
    f"[{U.format(1)}]\nname = auto\nautostart = yes\n"
    f"[{U.format(2)}]\nname = manual\n"
    f"[{U.format(3)}]\nname = off\nautostart = yes\ndisabled = yes\n", "vms.cfg")


def names(vms) -> list[str]:
    return [vm.name for vm in vms]


def test_boot_takes_the_named_vms_else_the_enabled_autostart_ones():
    assert names(to_boot(CONFIG, (), every=False)) == ["auto"]
    assert names(to_boot(CONFIG, (), every=True)) == ["auto", "manual"]
    assert names(to_boot(CONFIG, ("manual", "auto"), every=False)) == ["auto", "manual"]


def test_naming_a_disabled_vm_to_boot_is_refused_with_its_line():
    with pytest.raises(DisabledVmNamed, match=r"1 disabled VM\(s\) named; nothing booted") as e:
        to_boot(CONFIG, ("auto", "off"), every=False)
    (d,) = e.value.diagnostics
    assert d.format() == ("vms.cfg:9: error: off: disabled: a disabled VM is never booted; "
                          "set disabled = false with kvmrt-edit-config to boot it")


def test_shutdown_takes_the_named_vms_even_disabled_else_the_enabled_ones():
    assert names(to_shut_down(CONFIG, (), include_disabled=False)) == ["auto", "manual"]
    assert names(to_shut_down(CONFIG, (), include_disabled=True)) == ["auto", "manual", "off"]
    assert names(to_shut_down(CONFIG, ("off",), include_disabled=False)) == ["off"]


def test_only_enabled_running_vms_block_a_clean_boot():
    running = {U.format(2), U.format(3)}
    assert names(already_running(CONFIG, running)) == ["manual"]


def test_a_run_fails_when_any_vm_failed():
    assert exit_status([VmResult("a", "started"), VmResult("b", "retuned")]) == 0
    assert exit_status([VmResult("a", "started"), VmResult("b", "failed", error="x")]) == 1
    assert exit_status([]) == 0


def test_the_core_a_front_end_imports_needs_no_click():
    code = ("import sys, kvmrt.lifecycle, kvmrt.status, kvmrt.placement, kvmrt.hostview; "
            "print('click' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
