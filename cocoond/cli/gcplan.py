"""`cocoond gc-plan`: what `cocoon gc` would remove if run now, or why it
would remove nothing, module by module, from the same model
(cocoond/core/gcmodel.py) that words the findings and feeds the metrics.

It takes no lock, like `check`: gc TryLocks every module and aborts on a
busy one, so a plan that held a lock would make gc abort. Bytes are what
`du` counts (st_blocks, each inode once, symlinks not followed)."""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from cocoond.core import gcmodel
from cocoond.core.gcmodel import Item, Plan
from cocoond.output import json_line, printable
from cocoond.sizes import SIZE_MAX_SECONDS, disk_usage
from cocoond.storage.units import human_size

#: gc-plan's exit codes, in check's convention: 0 gc runs (whatever it
#: removes), 1 gc would abort (a warning, as the gc_blocked finding), 2 gc
#: runs and removes a whole dir a name turns its path into (an error, as
#: the gc_destroys finding), 3 cocoond cannot tell (a DB or dir it may not
#: read).
EXIT_RUNS, EXIT_ABORTS, EXIT_DESTROYS, EXIT_UNKNOWN = 0, 1, 2, 3
#: All of gc-plan's size walks share this budget (a cut walk is a lower bound).
MEASURE_BUDGET_SECONDS = 6 * SIZE_MAX_SECONDS


@dataclass(frozen=True, slots=True)
class Sized:
    item: Item
    bytes: int | None
    partial: bool = False


@dataclass(slots=True)
class SizedPlan:
    """A plan with every path measured."""

    root: str
    plan: Plan
    items: list[Sized] = field(default_factory=list)
    consistent: bool = True
    attempts: int = 1

    @property
    def exit_code(self) -> int:
        if self.plan.blocker is not None:
            return EXIT_ABORTS
        if self.plan.unknown:
            return EXIT_UNKNOWN
        return EXIT_DESTROYS if self.plan.subtrees() else EXIT_RUNS

    @property
    def verdict(self) -> str:
        return {EXIT_RUNS: "runs", EXIT_ABORTS: "aborts", EXIT_DESTROYS: "runs", EXIT_UNKNOWN: "unknown"}[
            self.exit_code
        ]

    def module_bytes(self) -> dict[str, int]:
        """Total bytes per gc module, every module present (0 included)."""
        out = {m.name: 0 for m in gcmodel.MODULES}
        for sized in self.items:
            out[sized.item.module] += sized.bytes or 0
        return out

    @property
    def total(self) -> int:
        return sum(s.bytes or 0 for s in self.items)

    @property
    def partial(self) -> bool:
        return any(s.partial for s in self.items)


def measure(
    root: str, plan: Plan, *, budget_seconds: float = MEASURE_BUDGET_SECONDS, clock: Any = time.monotonic
) -> SizedPlan:
    """Each item's allocated bytes (du's count); an inode counted once over
    the whole plan would need one shared walk, but gc's targets do not share
    inodes as cocoon makes them. Past the budget a size is a lower bound."""
    deadline = clock() + budget_seconds
    out = SizedPlan(root, plan)
    for item in plan.items:
        if item.path is None:
            out.items.append(Sized(item, None))
            continue
        left = deadline - clock()
        if left <= 0:
            out.items.append(Sized(item, 0, partial=True))
            continue
        usage = disk_usage(item.path, max_seconds=left, clock=clock)
        out.items.append(Sized(item, usage.bytes, partial=not usage.complete))
    return out


def shown_path(root: str, path: str | None) -> str:
    """A path under the root relative to it (as findings' subjects are), else absolute."""
    if path is None:
        return ""
    rel = os.path.relpath(path, root)
    return path if rel.startswith("..") else rel


def to_json(sized: SizedPlan) -> dict[str, Any]:
    plan = sized.plan
    per_module = sized.module_bytes()
    by_module: dict[str, list[Sized]] = {m.name: [] for m in gcmodel.MODULES}
    for s in sized.items:
        by_module[s.item.module].append(s)
    return {
        "root": sized.root,
        "gc": sized.verdict,
        "blocker": None
        if plan.blocker is None
        else {"module": plan.blocker.module, "path": plan.blocker.relpath, "reason": plan.blocker.reason},
        "unknown": plan.unknown,
        "locks": gcmodel.LOCK_CAVEAT,
        "bytes": sized.total,
        "bytes_partial": sized.partial,
        "modules": [
            {
                "module": m.name,
                "lock": m.lock,
                "db": m.db,
                "bytes": per_module[m.name],
                "items": [_item_json(sized.root, s) for s in by_module[m.name]],
            }
            for m in gcmodel.MODULES
        ],
        "notes": plan.notes,
        "consistent": sized.consistent,
        "attempts": sized.attempts,
    }


def _item_json(root: str, s: Sized) -> dict[str, Any]:
    out: dict[str, Any] = {"what": s.item.what, "subject": s.item.subject}
    if s.item.path is not None:
        out["path"] = s.item.path
        out["bytes"] = s.bytes
        if s.partial:
            out["bytes_partial"] = True
    return out


def write_json(sized: SizedPlan, out: TextIO) -> None:
    out.write(json_line(to_json(sized)))


def _size(s: Sized) -> str:
    if s.item.path is None:
        return "-"
    return (">=" if s.partial else "") + human_size(s.bytes or 0)


def write_human(sized: SizedPlan, out: TextIO) -> None:
    plan = sized.plan
    root = printable(sized.root)
    if plan.blocker is not None:
        out.write(f"GC ABORTS: {root}: {printable(plan.blocker.sentence())}\n")
        out.write(f"gc deletes nothing until {printable(plan.blocker.relpath)} {plan.blocker.fix()}.\n")
    else:
        status = "GC UNKNOWN" if plan.unknown else "GC RUNS"
        size = (">=" if sized.partial else "") + human_size(sized.total)
        count = len(sized.items)
        out.write(
            f"{status}: {root}: `cocoon gc` would remove {count} item{'' if count == 1 else 's'}, {size}\n"
        )
    lines = [
        f"WARNING: gc removes all of {printable(shown_path(sized.root, item.path))}/ "
        "(a blob or record name turns its path into that dir: see the gc_destroys finding)"
        for item in plan.subtrees()
    ]
    lines += [f"unknown: {printable(why)}" for why in plan.unknown]
    lines += [f"note: {gcmodel.LOCK_CAVEAT}", *(f"note: {printable(note)}" for note in plan.notes)]
    if not sized.consistent:
        lines.append(f"note: cocoon changed its DBs during each of {sized.attempts} passes")
    for line in lines:
        out.write(textwrap.fill(line, 80, subsequent_indent="      ", break_long_words=False) + "\n")
    if plan.blocker is not None:
        return
    rows = [
        (
            s.item.module,
            s.item.what,
            _size(s),
            printable(shown_path(sized.root, s.item.path) or s.item.subject),
        )
        for s in sized.items
    ]
    header = ("MODULE", "WHAT", "SIZE", "PATH")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(3)]
    for row in (header, *rows):
        out.write("  ".join([*(c.ljust(widths[i]) for i, c in enumerate(row[:3])), row[3]]).rstrip() + "\n")
    per_module = {m: b for m, b in sized.module_bytes().items() if b}
    parts = ", ".join(f"{m} {human_size(b)}" for m, b in per_module.items())
    out.write(f"TOTAL  {human_size(sized.total)}" + (f" ({parts})" if parts else "") + "\n")
