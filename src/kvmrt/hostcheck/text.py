"""The report as a person reads it: one aligned line per check, the remedy
indented below each WARN and FAIL (and below a SKIP that can be made to
run), the kernel parameters the remedies ask for gathered into one line,
and a summary."""

from __future__ import annotations

from kvmrt.hostcheck.result import Report, Result, Status

INDENT = " " * 6
BOOTLOADER = ("GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub or "
              "grub2-mkconfig; or grubby --update-kernel=ALL --args=\"...\"; then reboot")


def shown(report: Report, *, quiet: bool = False) -> list[Result]:
    return [r for r in report.results if not quiet or r.status is not Status.PASS]


def format_report(report: Report, *, quiet: bool = False) -> str:
    """The text report; with ``quiet`` all but PASS, and nothing at all when
    every check passed."""
    results = shown(report, quiet=quiet)
    width = max([len(r.id) for r in results] + [12]) + 2
    lines = []
    for r in results:
        lines.append(f"{r.status.value:<4}  {r.id:<{width}}{r.finding.message}")
        if r.status is not Status.PASS and r.finding.remedy:
            lines.append(f"{INDENT}-> {r.finding.remedy}")
    if report.kernel_params:
        lines += ["", f"kernel command line: add or change {' '.join(report.kernel_params)}",
                  f"{INDENT}({BOOTLOADER})"]
    if results or not quiet:
        lines += ["", summary(report)]
    return "".join(f"{line}\n" for line in lines)


def summary(report: Report) -> str:
    counts = f"{report.fails} FAIL, {report.warnings} WARN, {report.passes} PASS"
    if report.skips:
        counts += f", {report.skips} SKIP"
    if report.fails:
        return f"{counts}: not fit to be a real-time KVM host until the FAILs are fixed"
    if report.warnings:
        return f"{counts}: usable; each WARN costs real-time latency or a feature"
    if report.skips:
        return f"{counts}: fit to be a real-time KVM host as far as checked"
    return f"{counts}: fit to be a real-time KVM host"
