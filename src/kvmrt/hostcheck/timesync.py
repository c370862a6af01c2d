"""Guest time: guidance for ``ptp_kvm`` with chrony in the guests.

``ptp_kvm`` is a guest driver: it gives the guest a PTP clock (``/dev/ptp0``)
that reads the host's clock through KVM. On x86, KVM offers that only
while the host's clocksource is the TSC, so that is what is checked here
(``/sys/devices/system/clocksource/clocksource0/current_clocksource``).
"""

from __future__ import annotations

from kvmrt.hostcheck.context import Context
from kvmrt.hostcheck.kernelknobs import CLOCKSOURCE
from kvmrt.hostcheck.registry import check
from kvmrt.hostcheck.result import Finding, ok, warn

GUIDANCE = ("in each guest, load ptp_kvm (echo ptp_kvm > /etc/modules-load.d/ptp_kvm.conf) "
            "and add 'refclock PHC /dev/ptp0 poll 2' to chrony.conf")


@check("ptp-kvm")
def ptp_kvm(ctx: Context) -> Finding:
    """Guests can sync to this host's clock with ptp_kvm + chrony (host clocksource tsc)."""
    current = ctx.fs.read(f"{CLOCKSOURCE}/current_clocksource", default=None)
    if current is None or current == "tsc":
        return ok(f"guests can keep time from this host: {GUIDANCE}")
    return warn(f"guests' ptp_kvm cannot read this host's clock while its clocksource is "
                f"{current} (KVM offers it only on tsc)",
                "switch the host to the tsc clocksource (see clocksource), then "
                f"{GUIDANCE}")
