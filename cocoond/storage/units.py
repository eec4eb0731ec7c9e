"""Sizes for people, byte-for-byte as the Go seed prints them."""

from __future__ import annotations

_UNITS = "KMGTPE"


def human_size(b: int) -> str:
    """`1023B`, `1.0K`, `512.0M`, `1.5G`: the seed's loop, `%.1f` and binary
    units. Values under 1024 (negatives included) print as plain bytes, as
    the seed does; the unit stops at E, where Go's int64 ends."""
    unit = 1024
    if b < unit:
        return f"{b}B"
    div, exp = unit, 0
    n = b // unit
    while n >= unit and exp < len(_UNITS) - 1:
        div *= unit
        exp += 1
        n //= unit
    return f"{b / div:.1f}{_UNITS[exp]}"
