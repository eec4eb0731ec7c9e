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
from collections.abc import Callable, Collection, Sequence

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
    orphans into changes of the one summary finding.

    The group is decided when a new snapshots.json is read (`expect`): the
    dirs it left without a record, if there are more than the threshold.
    Each turns into an orphan finding once it has been quiet for a while,
    not all at the same moment, and joins the summary then."""

    def __init__(self, root: str) -> None:
        self.root = root
        #: Grouped orphans: their finding, or None while it is not one yet.
        self.members: dict[Key, Finding | None] = {}

    def expect(self, keys: Collection[Key], tracked: Callable[[Key], bool], threshold: int) -> None:
        """The orphan keys one DB load made. `tracked(key)` says whether the
        lifecycle already settles or reports a key: those stay single."""
        fresh = [key for key in keys if key not in self.members and not tracked(key)]
        if threshold > 0 and len(fresh) > threshold:
            self.members.update(dict.fromkeys(fresh))

    def regroup(self, changes: Sequence[Change]) -> list[Change]:
        """`changes` as the lifecycle should see them."""
        out: list[Change] = []
        touched = False
        for key, finding in changes:
            if key in self.members:
                touched = True
                if finding is None and self.members[key] is not None:
                    del self.members[key]  # it got its record back, or went away
                else:
                    self.members[key] = finding
            else:
                out.append((key, finding))
        if touched:
            out.append((SUMMARY_KEY, self.summary()))
        return out

    def prune(self, possible: Callable[[Key], bool]) -> list[Change]:
        """Drop expected members that can no longer become orphans (their
        record came back before they were quiet); the summary's change, if
        that changed it."""
        gone = [key for key, finding in self.members.items() if finding is None and not possible(key)]
        for key in gone:
            del self.members[key]
        return [(SUMMARY_KEY, self.summary())] if gone else []

    def summary(self) -> Finding | None:
        """The group's finding, once every member has fallen quiet (or been
        dropped), so that it opens with the whole count."""
        if not self.members or None in self.members.values():
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
        return tuple(sorted(member.path for member in self.members.values() if member and member.path))
