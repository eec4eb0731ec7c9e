"""Sizes for people, byte-for-byte as the Go seed prints them."""

from __future__ import annotations

#: The seed's units: G is the largest (1 TiB prints as 1024.0G).
_UNITS = "KMG"


def human_size(b: int) -> str:
    """`1023B`, `1.0K`, `512.0M`, `1.5G`: the seed's loop, `%.1f` and binary
    units. Values under 1024 (negatives included) print as plain bytes, as
    the seed does; the unit stops at G (epoch internal/util/util.go)."""
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
