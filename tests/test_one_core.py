"""kvmrt-boot, kvmrt-shutdown and the dashboard run one core
(kvmrt.lifecycle.boot / shutdown): what the dashboard's API says and does
is what the tools say and do (fixture host, libvirt's test driver)."""

from __future__ import annotations

import pytest

from kvmrt import api
from kvmrt.config.file import load_config
from test_boot_cli import EXAMPLE, NODE, host, kvmrt  # noqa: F401 (fixture)


def session_of(root) -> api.Session:
    return api.Session(path=str(EXAMPLE), uri=NODE, fs=api.HostFS(root))


def test_the_dashboard_warns_of_irqbalance_with_the_line_kvmrt_boot_gives(host):  # noqa: F811
    cli = [line.removeprefix("warning: ") for line in
           kvmrt(host, "kvmrt-boot", "--dry-run").stderr.splitlines() if "irqbalance" in line]
    report = api.boot(session_of(host), load_config(str(EXAMPLE)), dry_run=True)
    assert report.warnings == cli
    assert cli[0].endswith("IRQBALANCE_BANNED_CPULIST=8-23,40-55")


def test_a_planned_shutdown_counts_a_paused_vm_as_kvmrt_shutdown_does(host):  # noqa: F811
    session = session_of(host)
    config = load_config(str(EXAMPLE))
    session.domains.conn.lookupByUUIDString(config.vms[0].uuid).suspend()
    report = api.shutdown(session, config, dry_run=True)
    assert report.would_stop == [config.vms[0].name]


def test_config_errors_come_before_libvirt_is_asked(host, tmp_path):  # noqa: F811
    """kvmrt-boot validates first: with libvirt unreachable, a bad config
    is still answered with the validator's lines, as the dashboard is."""
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(EXAMPLE.read_text().replace("cpuset = n1,n2", "cpuset = 999"))
    proc = kvmrt(host, "kvmrt-boot", "--dry-run", "-f", str(cfg), "-c",
                 f"test://{tmp_path}/no-such-node.xml", check=1)
    assert "cpuset" in proc.stderr and "999" in proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"kvmrt-boot: {cfg}: 1 error(s); fix them first (kvmrt-edit-config)")
    session = api.Session(path=str(cfg), uri=f"test://{tmp_path}/no-such-node.xml",
                          fs=api.HostFS(host))
    with pytest.raises(api.ConfigHasErrors) as exc:
        api.boot(session, load_config(str(cfg)), dry_run=True)
    assert exc.value.diagnostics[0].format() in proc.stderr


def test_the_dashboards_shutdown_says_what_kvmrt_shutdown_says(host):  # noqa: F811
    """After a boot tuned the host, the dashboard's 'Shutdown all' prints
    the tool's lines: each VM as it stops, then 'host: restored' and the
    count of what went back."""
    from kvmrt.dashboard.jobs import Job

    kvmrt(host, "kvmrt-boot", "RedHawk-8.4-RT")
    lines: list[str] = []
    assert Job("shutdown").run(session_of(host), lines.append)
    assert lines[:2] == ["RedHawk-8.4-RT: shutting down", "RedHawk-8.4-RT: stopped"]
    restored = lines.index("host: restored")
    assert lines[restored + 1].startswith("  changed: CPUs online/offline 16, ")
