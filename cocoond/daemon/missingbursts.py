"""Many committed snapshots losing their data dirs at once are one finding.

A wrong `rm -rf snapshot/localfile/*`, or the data disk mounted on
snapshot/localfile unmounted, makes every committed record a
`missing_data_dir` in one go: 10,055 error lines at 10k snapshots, which
journald's default rate limit then cuts (unrelated lines too). As for
orphan bursts (bursts.py), the daemon groups them beyond the threshold
(`[alerts] orphan_burst_threshold`, which counts both) into one finding of
the same kind, subject `snapshot/localfile`, that says how many, which, and
the likely cause; `check --json` still lists each one.

A group starts when more than the threshold of them appear in one
evaluation, and takes in those of the same kind still settling (not yet
announced); while it is open, more that appear join it (the rm is still
running). A member whose dir comes back (or whose record goes) leaves the
group; when none is left, the summary resolves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from cocoond.core import findings as fk
from cocoond.core import rules
from cocoond.core.findings import Finding, Key
from cocoond.core.rules import LOCALFILE

SUMMARY_KEY: Key = (fk.MISSING_DATA_DIR, LOCALFILE)
Change = tuple[Key, Finding | None]


class MissingBursts:
    def __init__(self, root: str) -> None:
        self.root = root
        self.members: dict[Key, Finding] = {}

    def regroup(
        self,
        changes: Sequence[Change],
        *,
        announced: Callable[[Key], bool],
        settling: Callable[[], Iterable[Key]],
        current: Callable[[Key], Finding | None],
        threshold: int,
    ) -> list[Change]:
        """`changes` as the lifecycle should see them. `announced(key)`: the
        lifecycle has logged it opened (it stays single); `settling()`: the
        keys it tracks but has not announced; `current(key)`: the index's
        finding."""
        if threshold <= 0 and not self.members:
            return list(changes)
        fresh = [
            key
            for key, finding in changes
            if _single(key) and finding is not None and key not in self.members and not announced(key)
        ]
        out: list[Change] = []
        touched = False
        if not self.members and len(fresh) > threshold:
            # A group starts: those of its kind still settling join it too.
            for key in settling():
                if _single(key) and not announced(key) and (finding := current(key)) is not None:
                    self.members[key] = finding
                    out.append((key, None))  # the lifecycle forgets it silently
                    touched = True
        grouping = bool(self.members) or len(fresh) > threshold
        for key, finding in changes:
            if not _single(key):
                out.append((key, finding))
            elif key in self.members:
                touched = True
                if finding is None:
                    del self.members[key]
                else:
                    self.members[key] = finding
            elif grouping and finding is not None and not announced(key):
                self.members[key] = finding
                touched = True
            else:
                out.append((key, finding))
        if touched:
            out.append((SUMMARY_KEY, self.summary()))
        return out

    def summary(self) -> Finding | None:
        if not self.members:
            return None
        return rules.missing_data_dirs_summary([key[1] for key in self.members], self.root)


def _single(key: Key) -> bool:
    return key[0] == fk.MISSING_DATA_DIR and key != SUMMARY_KEY
