"""Keeping a 100k-record index small.

json.loads allocates the strings we keep (IDs, names) in between the far
more numerous objects we throw away; once those are freed, every memory
arena still holds a few survivors and none can go back to the OS: the
daemon would sit at its parse peak (measured: 180 MB at 100k records vs
75 MB with the two helpers below)."""

from __future__ import annotations

import contextlib
import functools
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import ctypes

T = TypeVar("T")
#: The most entries a memo that shares equal values (an interning table)
#: holds. Such memos live as long as the daemon (months) while what they
#: saw comes and goes: full, one is emptied and fills again with what is
#: current (entries the index still uses stay alive there, merely no longer
#: shared with newcomers). A host has far fewer distinct blobs, key orders
#: or data dir layouts than this, so the hit rate stays what it was.
MEMO_CAP = 16384


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
    # Imported here: ctypes.util pulls in subprocess, tempfile and shutil,
    # a tenth of a one-shot command's imports, for a daemon-only call.
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def interned(memo: dict[T, T], value: T, cap: int | None = None) -> T:
    """The one object equal to `value` that `memo` keeps (`value` itself
    the first time), the memo emptied first when it holds `cap` (default
    MEMO_CAP) entries: bounded, whatever the daemon ever saw."""
    kept = memo.get(value)
    if kept is not None:
        return kept
    bound(memo, cap)
    memo[value] = value
    return value


def bound(memo: dict[Any, Any], cap: int | None = None) -> None:
    """Empty `memo` when it holds `cap` (default MEMO_CAP) entries or more:
    for hot loops that use dict.setdefault and check between batches."""
    if len(memo) >= (MEMO_CAP if cap is None else cap):
        memo.clear()
