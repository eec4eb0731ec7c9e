"""Many orphans at once are one finding.

A snapshots.json rewritten as `null` (or emptied, or restored from an old
copy) turns every data dir into an orphan in one change: 2,240 warnings at
once tell an operator less than one that says how many, how much space and
what probably happened. `check --json` still lists each dir (a script wants
them all); the daemon groups those that appear together beyond a threshold
into one finding under the `orphan_data_dir` kind (so every alert rule on
that kind still fires) with `snapshot/localfile` as its subject. A dir of
the group that gets its record back (or is deleted) leaves the group; when
none is left, the group's finding resolves. Orphans that appear later, one
by one, are reported one by one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cocoond.core import findings as fk
from cocoond.core.findings import Finding, Key
from cocoond.core.rules import LOCALFILE

#: More than this many new orphans in one evaluation make one finding
#: (`[alerts] orphan_burst_threshold`; 0 turns grouping off).
DEFAULT_BURST_THRESHOLD = 50
SUMMARY_KEY: Key = (fk.ORPHAN_DATA_DIR, LOCALFILE)
#: Orphan dirs the message names as examples.
EXAMPLES = 3

Change = tuple[Key, Finding | None]


class OrphanBursts:
    """Sits between the index and the lifecycle: rewrites changes of grouped
    orphans into changes of the one summary finding."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.members: dict[Key, Finding] = {}

    def regroup(self, changes: list[Change], tracked: Callable[[Key], bool], threshold: int) -> list[Change]:
        """`changes` as the lifecycle should see them. `tracked(key)` says
        whether the lifecycle already settles or reports a key (those stay
        single). The caller passes a threshold only for changes that follow
        a new snapshots.json (0: none are grouped, known groups still shrink)."""
        new = [
            key
            for key, finding in changes
            if finding is not None
            and key[0] == fk.ORPHAN_DATA_DIR
            and key != SUMMARY_KEY
            and key not in self.members
            and not tracked(key)
        ]
        grouping = threshold > 0 and len(new) > threshold
        out: list[Change] = []
        touched = False
        for key, finding in changes:
            if (grouping and key in new) or key in self.members:
                touched = True
                if finding is None:
                    del self.members[key]
                else:
                    self.members[key] = finding
            else:
                out.append((key, finding))
        if touched:
            out.append((SUMMARY_KEY, self.summary()))
        return out

    def summary(self) -> Finding | None:
        if not self.members:
            return None
        subjects = sorted(key[1] for key in self.members)
        examples = ", ".join(subjects[:EXAMPLES]) + (", ..." if len(subjects) > EXAMPLES else "")
        return Finding(
            fk.ORPHAN_DATA_DIR,
            LOCALFILE,
            f"{len(subjects)} data dirs in {LOCALFILE}/ lost their records in one change of "
            f"snapshots.json ({examples}): "
            "was snapshots.json rewritten, emptied or restored from an old copy? "
            "`cocoon gc` deletes them all: restore the DB from its last good copy if they are still needed",
            path=os.path.join(self.root, LOCALFILE),
        )

    def member_paths(self, finding: Finding) -> tuple[str, ...] | None:
        """The dirs whose sizes the summary's `bytes` adds up (measured off
        the event loop, daemon/sizer.py), or None when `finding` is not the
        summary."""
        if finding.key != SUMMARY_KEY:
            return None
        return tuple(sorted(member.path for member in self.members.values() if member.path))
