"""Kernel hex CPU masks: ``/proc/irq/default_smp_affinity``, the workqueue
``cpumask``, ``Cpus_allowed`` in ``/proc/PID/status``.

The kernel prints them with ``%*pb``: hex digits for ``nr_cpu_ids`` bits,
most significant first, a comma every 32 bits (``ff,ffffffff`` for 40
CPUs, ``3`` for 2). It accepts them back with or without the padding.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Protocol

from kvmrt.errors import HostReadError, SetSyntaxError


class MaskFiles(Protocol):
    """What :func:`read_mask` needs of a :class:`kvmrt.host.fs.HostFS` (fs
    rewrites masks in status files: it imports this module, not the reverse)."""

    def read(self, rel: str, default: None) -> str | None: ...

    def path(self, rel: str) -> Path: ...

_HEX = frozenset("0123456789abcdefABCDEF")


@functools.lru_cache(maxsize=1024)
def parse_mask(text: str) -> frozenset[int]:
    """``"ff,ffffffff"`` -> CPUs 0-39. Raises :class:`SetSyntaxError` naming the text.

    The parse of each text is kept: few distinct masks, read again and again."""
    digits = text.strip().replace(",", "")
    if not digits or not set(digits) <= _HEX:
        raise SetSyntaxError(text.strip(), "not a hex CPU mask such as ff,ffffffff")
    value = int(digits, 16)
    return frozenset(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_mask(cpus: Iterable[int], nbits: int) -> str:
    """The kernel's ``%*pb`` text of ``cpus`` for a mask of ``nbits`` bits.

    ``nbits`` is the width of the file being replaced (:func:`mask_bits`),
    normally ``nr_cpu_ids``; a CPU beyond it widens the text rather than
    being dropped.
    """
    if isinstance(cpus, frozenset):
        return _format_frozen(cpus, nbits)
    return _format_value(sum(1 << cpu for cpu in set(cpus)), nbits)


@functools.lru_cache(maxsize=1024)
def _format_frozen(cpus: frozenset[int], nbits: int) -> str:
    """A frozenset's text is kept: few distinct masks, written again and again."""
    return _format_value(sum(1 << cpu for cpu in cpus), nbits)


def _format_value(value: int, nbits: int) -> str:
    width = max(1, (nbits + 3) // 4, (value.bit_length() + 3) // 4)
    digits = f"{value:0{width}x}"
    head = len(digits) % 8 or 8
    chunks = [digits[:head]] + [digits[i:i + 8] for i in range(head, len(digits), 8)]
    return ",".join(chunks)


def mask_bits(text: str) -> int:
    """The width in bits of a mask as the kernel printed it (``"3"`` -> 4)."""
    return 4 * len(text.strip().replace(",", ""))


def read_mask(fs: MaskFiles, rel: str) -> frozenset[int] | None:
    """A hex-mask file as CPU ids; ``None`` when the file is absent.

    Raises :class:`HostReadError` naming the file when it does not parse.
    """
    text = fs.read(rel, default=None)
    if text is None:
        return None
    try:
        return parse_mask(text)
    except SetSyntaxError as err:
        raise HostReadError(str(fs.path(rel)), f"not a CPU mask: {err}") from err
