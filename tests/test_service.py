"""The systemd unit: scripts/install-service writes it with this install's
paths, not enabled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_install_service_writes_the_unit(tmp_path):
    bindir = Path(sys.executable).parent
    out = subprocess.run([str(ROOT / "scripts/install-service"), str(bindir), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    unit = (tmp_path / "kvmrt.service").read_text()
    assert f"ExecStart={bindir.resolve()}/kvmrt-boot --clean" in unit
    assert f"ExecStop={bindir.resolve()}/kvmrt-shutdown --timeout 120 --force" in unit
    assert "@BINDIR@" not in unit and "not enabled" in out
    assert (tmp_path / "kvmrt.service").stat().st_mode & 0o777 == 0o644


def test_install_service_refuses_a_bindir_without_kvmrt(tmp_path):
    proc = subprocess.run([str(ROOT / "scripts/install-service"), str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "no kvmrt-boot" in proc.stderr
    assert not (tmp_path / "kvmrt.service").exists()


def test_the_unit_stops_before_libvirt_guests_would_suspend_the_vms(tmp_path):
    """systemd stops units in the reverse order of After=: kvmrt-shutdown must
    run (and put the host back) before libvirt-guests suspends the guests."""
    bindir = Path(sys.executable).parent
    subprocess.run([str(ROOT / "scripts/install-service"), str(bindir), str(tmp_path)],
                   capture_output=True, check=True)
    unit = (tmp_path / "kvmrt.service").read_text()
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert "libvirt-guests.service" in after.split("=", 1)[1].split()
