"""Keeping a 100k-record index small.

json.loads allocates the strings we keep (IDs, names) in between the far
more numerous objects we throw away; once those are freed, every memory
arena still holds a few survivors and none can go back to the OS: the
daemon would sit at its parse peak (measured: 180 MB at 100k records vs
75 MB with the two helpers below)."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ctypes


def own(text: str) -> str:
    """A fresh copy of `text`, allocated now (while the parse tree is still
    alive, so it lands in an arena of survivors rather than among the
    soon-to-be-freed objects). CPython hands back the same object for
    str(text) or text[:], hence the detour."""
    return (text + ".")[:-1] if text else ""


def release_free_memory() -> None:
    """Hand freed pages back to the OS after a big parse. glibc keeps them
    otherwise; elsewhere this is a no-op."""
    with contextlib.suppress(OSError, AttributeError):
        _libc().malloc_trim(0)


@functools.cache
def _libc() -> ctypes.CDLL:
    import ctypes.util  # on first use: `check` never trims, and ctypes costs 6 ms to import

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
