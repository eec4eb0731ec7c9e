"""Many orphans appearing together are one finding in the daemon (issue 10
item 13); one by one they stay one by one."""

from __future__ import annotations

from pathlib import Path

from cocoond.core.findings import Finding, Key
from cocoond.daemon.bursts import SUMMARY_KEY, OrphanBursts
from cocoond.sizes import total_usage


def orphan(sid: str, root: str = "/r") -> tuple[Key, Finding]:
    f = Finding(
        "orphan_data_dir",
        sid,
        f"{sid} has no record",
        snapshot_id=sid,
        path=f"{root}/snapshot/localfile/{sid}",
    )
    return f.key, f


def never(_key: Key) -> bool:
    return False


def grouped(
    bursts: OrphanBursts, changes: list[tuple[Key, Finding | None]], threshold: int
) -> list[tuple[Key, Finding | None]]:
    """One DB load left these dirs without records; their findings follow."""
    bursts.expect([k for k, _ in changes], never, threshold)
    return bursts.regroup(list(changes))


def test_at_most_the_threshold_stay_single() -> None:
    bursts = OrphanBursts("/r")
    changes = [orphan(f"S{i}") for i in range(3)]
    assert grouped(bursts, list(changes), threshold=3) == changes
    assert bursts.members == {}


def test_beyond_the_threshold_one_summary_that_shrinks_then_resolves() -> None:
    bursts = OrphanBursts("/r")
    changes = [orphan(f"S{i}") for i in range(5)]
    other = Finding("missing_blob", "h1", "m")
    bursts.expect([k for k, _ in changes], never, 3)
    out = bursts.regroup([*changes, (other.key, other)])
    assert [k for k, _ in out] == [other.key, SUMMARY_KEY]
    summary = out[-1][1]
    assert summary is not None and summary.kind == "orphan_data_dir"
    assert summary.subject == "snapshot/localfile" and summary.severity == "warning"
    assert summary.message.startswith("5 data dirs") and "S0, S1, S2, ..." in summary.message
    # Two get their records back: the summary counts three.
    out = bursts.regroup([(changes[0][0], None), (changes[1][0], None)])
    assert out == [(SUMMARY_KEY, bursts.summary())]
    assert out[0][1] is not None and out[0][1].message.startswith("3 data dirs")
    # A new single orphan meanwhile is its own finding.
    lone = orphan("LONE")
    assert bursts.regroup([lone]) == [lone]
    # The rest resolve: so does the summary.
    out = bursts.regroup([(k, None) for k, _ in changes[2:]])
    assert out == [(SUMMARY_KEY, None)]


def test_orphans_already_reported_stay_single_and_zero_turns_grouping_off() -> None:
    changes = [orphan(f"S{i}") for i in range(5)]
    tracked = {changes[0][0]}
    bursts = OrphanBursts("/r")
    bursts.expect([k for k, _ in changes], tracked.__contains__, 3)
    out = bursts.regroup(list(changes))
    assert [k for k, _ in out] == [changes[0][0], SUMMARY_KEY]
    assert grouped(OrphanBursts("/r"), list(changes), threshold=0) == changes


def test_the_summary_waits_for_every_member_and_drops_those_that_vanish() -> None:
    bursts = OrphanBursts("/r")
    changes = [orphan(f"S{i}") for i in range(6)]
    bursts.expect([k for k, _ in changes], never, 3)
    # Two are quiet already, two more later: no finding until all are in.
    assert bursts.regroup(changes[:2]) == [(SUMMARY_KEY, None)]
    assert bursts.regroup(changes[2:4]) == [(SUMMARY_KEY, None)]
    # S4 and S5 got their records back before they were quiet: dropped,
    # and the summary opens with the four.
    still = {k for k, _ in changes[:4]}
    pruned = bursts.prune(still.__contains__)
    assert [k for k, _ in pruned] == [SUMMARY_KEY]
    assert pruned[0][1] is not None and pruned[0][1].message.startswith("4 data dirs")
    assert set(bursts.members) == still
    # A later lone orphan named like one of them is single again.
    assert bursts.regroup([changes[4]]) == [changes[4]]


def test_the_summary_counts_the_members_bytes(tmp_path: Path) -> None:
    lf = tmp_path / "snapshot" / "localfile"
    changes: list[tuple[Key, Finding | None]] = []
    for i in range(3):
        (lf / f"S{i}").mkdir(parents=True)
        (lf / f"S{i}" / "mem").write_bytes(b"x" * 10000)
        changes.append(orphan(f"S{i}", str(tmp_path)))
    bursts = OrphanBursts(str(tmp_path))
    out = grouped(bursts, [*changes], threshold=2)
    summary = out[-1][1]
    assert summary is not None
    paths = bursts.member_paths(summary)
    assert paths is not None and paths == tuple(str(lf / f"S{i}") for i in range(3))
    assert bursts.member_paths(orphan("S0", str(tmp_path))[1]) is None  # not the summary
    # What the daemon's sizer adds up for it (off the event loop).
    assert total_usage(paths).bytes >= 3 * 10000
