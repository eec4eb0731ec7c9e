"""How much disk a directory tree takes, within bounds.

A size walk is one lstat per entry: about 3 us each on a local disk (0.6 s
for 200k files), far more on slow or network storage, and an orphan data
dir can hold millions of entries. So every walk stops at SIZE_MAX_ENTRIES
entries or SIZE_MAX_SECONDS, whichever comes first, and says whether it
was cut: a cut walk's bytes are a lower bound (`bytes_partial` on the
finding). The daemon walks on a worker thread (daemon/sizer.py); `check`
walks inline with one time budget for all its walks.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from cocoond.core import findings as fk
from cocoond.core.findings import Finding

#: Most entries one walk looks at.
SIZE_MAX_ENTRIES = 1_000_000
#: Longest one walk runs (and, in `check`, all its walks together).
SIZE_MAX_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """Bytes allocated under a path. `complete` is False when the walk was
    cut (a bound, a stop, a subdirectory it could not list): then `bytes`
    is what it counted, a lower bound."""

    bytes: int
    complete: bool = True


def disk_usage(
    path: str,
    *,
    max_entries: int | None = None,
    max_seconds: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DiskUsage:
    """Bytes allocated under `path` (st_blocks, so sparse memory files count
    what they really take), not following symlinks, each inode once; a
    vanished path is 0 bytes, complete. Bounds default to SIZE_MAX_*."""
    if max_entries is None:
        max_entries = SIZE_MAX_ENTRIES
    deadline = clock() + (SIZE_MAX_SECONDS if max_seconds is None else max_seconds)
    total = 0
    complete = True
    seen: set[tuple[int, int]] = set()
    stack = [path]
    looked = 0
    while stack:
        if looked >= max_entries or clock() >= deadline or (cancelled is not None and cancelled()):
            return DiskUsage(total, complete=False)
        current = stack.pop()
        looked += 1
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            continue  # removed while we walked: it takes nothing now
        except OSError:
            complete = False
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in seen:
            continue
        seen.add(ident)
        total += st.st_blocks * 512
        if stat.S_ISDIR(st.st_mode):
            try:
                with os.scandir(current) as it:
                    stack.extend(e.path for e in it)
            except FileNotFoundError:
                continue
            except OSError:
                complete = False
    return DiskUsage(total, complete)


def total_usage(
    paths: Iterable[str],
    *,
    budget_seconds: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DiskUsage:
    """Bytes under all of `paths` (the dirs of an orphan burst), every walk
    within one time budget (default SIZE_MAX_SECONDS): what is left
    unwalked when it runs out makes the total a lower bound."""
    deadline = clock() + (SIZE_MAX_SECONDS if budget_seconds is None else budget_seconds)
    total, complete = 0, True
    for path in paths:
        left = deadline - clock()
        if left <= 0:
            return DiskUsage(total, complete=False)
        usage = disk_usage(path, max_seconds=left, cancelled=cancelled, clock=clock)
        total += usage.bytes
        complete = complete and usage.complete
    return DiskUsage(total, complete)


def sized(finding: Finding, usage: DiskUsage) -> Finding:
    """The finding with its size: `bytes`, and `bytes_partial` when the walk was cut."""
    return dataclasses.replace(finding, bytes=usage.bytes, bytes_partial=not usage.complete)


def wants_size(finding: Finding) -> bool:
    """Only orphan dirs (data dirs, VM dirs) are walked: a walk per finding, never for the 100k
    healthy dirs."""
    return (
        finding.kind in (fk.ORPHAN_DATA_DIR, fk.ORPHAN_VM_DIR)
        and finding.bytes is None
        and bool(finding.path)
    )


def with_sizes(
    found: list[Finding],
    *,
    budget_seconds: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Finding]:
    """`check`'s sizes: each orphan walked in turn, all of them within one
    time budget (default SIZE_MAX_SECONDS). An orphan reached after the
    budget is spent gets no `bytes` (unknown), as opposed to a lower bound."""
    deadline = clock() + (SIZE_MAX_SECONDS if budget_seconds is None else budget_seconds)
    out = []
    for f in found:
        left = deadline - clock()
        if wants_size(f) and left > 0:
            assert f.path is not None
            f = sized(f, disk_usage(f.path, max_seconds=min(left, SIZE_MAX_SECONDS), clock=clock))
        out.append(f)
    return out
