"""Guest time: guidance for ``ptp_kvm`` with chrony in the guests.

``ptp_kvm`` is a guest driver: it gives the guest a PTP clock that reads
the host's clock through KVM. udev names it ``/dev/ptp_kvm`` (a link to
its ``/dev/ptpN``); ``/dev/ptp0`` may be another clock, such as the PHC of
a passthrough NIC. On x86, KVM offers the host's clock only while the
host's clocksource is the TSC, so that is what is checked here
(``/sys/devices/system/clocksource/clocksource0/current_clocksource``).
"""

from __future__ import annotations

from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.kernelknobs import CLOCKSOURCE
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, skipped, warn

# The steps of the chrony guide, in each guest.
GUIDANCE = ("in each guest: modprobe ptp_kvm, and load it at boot "
            "(echo ptp_kvm > /etc/modules-load.d/ptp_kvm.conf); add "
            "'refclock PHC /dev/ptp_kvm poll 3 dpoll -2' to chrony.conf (/dev/ptp_kvm, not "
            "/dev/ptp0, which a passthrough NIC's clock may own); systemctl restart chronyd; "
            "chronyc sources shows PHC0 selected (*)")


@check("ptp-kvm")
def ptp_kvm(ctx: Context) -> Finding:
    """Guests can sync to this host's clock with ptp_kvm + chrony (host clocksource tsc)."""
    current = ctx.fs.read(f"{CLOCKSOURCE}/current_clocksource", default=None)
    if current is None:
        return skipped(f"the host's clocksource is unknown (no /{CLOCKSOURCE}/"
                       "current_clocksource), so whether KVM offers guests its clock is "
                       f"too; the guests' side: {GUIDANCE}")
    if current == "tsc":
        return ok(f"guests can keep time from this host's clock (clocksource tsc): {GUIDANCE}")
    return warn(f"guests' ptp_kvm cannot read this host's clock while its clocksource is "
                f"{current} (KVM offers it only on tsc)",
                "switch the host to the tsc clocksource (see clocksource), then "
                f"{GUIDANCE}")
