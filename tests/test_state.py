"""daemon/state.py: the open set as saved, read back exactly, and every way
a state file can be unusable (which is never an error for the daemon)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cocoond.core.findings import Finding
from cocoond.core.lifecycle import Lifecycle, Reminder, Resolved
from cocoond.daemon.state import FORMAT, STATE_FILE, StateError, StateKeeper, decode, encode, load, rfc3339

NOW = 1_790_000_000.5  # wall clock, epoch seconds


class Log:
    """Records what the keeper logs: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.lines.append((level, event, fields))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


def sample() -> list[tuple[Finding, float]]:
    return [
        (
            Finding("missing_data_dir", "A" * 26, "gone", snapshot_id="A" * 26, name="web-1", path="/r/x"),
            NOW - 60,
        ),
        # A name that is not UTF-8 (surrogate-escaped) and a control character.
        (Finding("dangling_name", "n\udcff\x1b", "dangling", name="n\udcff\x1b"), NOW - 3600.25),
        (Finding("orphan_data_dir", "B" * 26, "orphan", bytes=4096, age_seconds=12.5), NOW - 1),
    ]


def test_round_trip_is_exact() -> None:
    data = encode("/data01/cocoon", sample(), NOW)
    data.decode("ascii")  # plain ASCII whatever the names hold
    saved = decode(data)
    assert saved.root == "/data01/cocoon" and saved.skipped == 0
    got = {f.key: (f, at) for f, at in saved.open}
    for finding, opened_at in sample():
        back, at = got[finding.key]
        assert back == finding
        assert at == pytest.approx(opened_at, abs=1e-6)


def test_file_layout() -> None:
    doc = json.loads(encode("/r", sample()[:1], NOW))
    assert doc["format"] == FORMAT
    assert doc["saved_at"] == rfc3339(NOW)
    (entry,) = doc["open"]
    assert entry["severity"] == "error"
    assert entry["opened_at"] == rfc3339(NOW - 60)
    assert entry["opened_at"].endswith("Z")
    assert {"kind", "subject", "message", "snapshot_id", "name", "path"} <= set(entry)
    assert "bytes" not in entry  # fields that do not apply are left out


def test_rfc3339() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339(1.25) == "1970-01-01T00:00:01.250000Z"


def test_unknown_kind_is_skipped_not_fatal() -> None:
    """A state file from a newer cocoond may hold kinds this one lacks."""
    doc = json.loads(encode("/r", sample(), NOW))
    doc["open"][0]["kind"] = "from_the_future"
    saved = decode(json.dumps(doc).encode())
    assert (len(saved.open), saved.skipped) == (2, 1)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda d: b"{not json", "not JSON"),
        (lambda d: b"\xff\xfe", "not JSON"),
        (lambda d: b"[]", "not a JSON object"),
        (lambda d: json.dumps({**d, "format": 99}).encode(), "format 99"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "root"}).encode(), "no 'root'"),
        (lambda d: json.dumps({**d, "open": {}}).encode(), "'open' list"),
        (lambda d: json.dumps({**d, "open": [1]}).encode(), "open[0]: not an object"),
        (lambda d: json.dumps({**d, "open": [{**d["open"][0], "subject": 7}]}).encode(), "open[0].subject"),
        (lambda d: json.dumps({**d, "open": [{**d["open"][0], "bytes": "x"}]}).encode(), "open[0].bytes"),
        (lambda d: json.dumps({**d, "open": [{**d["open"][0], "bytes": True}]}).encode(), "open[0].bytes"),
        (
            lambda d: json.dumps({**d, "open": [{**d["open"][0], "opened_at": "yesterday"}]}).encode(),
            "RFC 3339",
        ),
        (
            lambda d: json.dumps(
                {**d, "open": [{**d["open"][0], "opened_at": "2026-01-01T00:00:00"}]}
            ).encode(),
            "offset",
        ),
        (lambda d: json.dumps({**d, "open": [{**d["open"][0], "opened_at": None}]}).encode(), "opened_at"),
    ],
)
def test_corrupt_files_are_named(mangle: Any, reason: str) -> None:
    doc = json.loads(encode("/r", sample()[:1], NOW))
    with pytest.raises(StateError, match=reason.replace("[", r"\[").replace("]", r"\]")) as info:
        decode(mangle(doc))
    assert "\n" not in str(info.value)


def test_load(tmp_path: Path) -> None:
    assert load(str(tmp_path / "absent.json")) is None
    with pytest.raises(StateError, match="not a regular file \\(a directory\\)"):
        load(str(tmp_path))  # a directory


# ------------------------------------------------------------ the keeper
def test_keeper_saves_atomically_and_restores(tmp_path: Path) -> None:
    log = Log()
    keeper = StateKeeper(str(tmp_path / "state"))  # created on first save, 0700
    life = Lifecycle(settle=0, reminder=0)
    kept, fixed = sample()[0][0], sample()[2][0]
    life.restore(10.0, [(kept, 60.0), (fixed, 1.0)])
    keeper.changed()
    keeper.flush(log, life, "/r", 10.0, NOW)
    path = tmp_path / "state" / STATE_FILE
    assert oct((tmp_path / "state").stat().st_mode & 0o777) == "0o700"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert os.listdir(tmp_path / "state") == [STATE_FILE]  # no temp file left
    assert {f.key for f, _ in decode(path.read_bytes()).open} == {kept.key, fixed.key}

    # A new run, 100 s (wall) later, on another monotonic clock.
    again = Lifecycle(settle=0, reminder=0)
    assert keeper.restore(log, again, "/r", 5.0, NOW + 100) == []
    assert log.lines[-1][1:] == ("state.restored", {"path": str(path), "open": 2, "skipped": 0, "root": "/r"})
    again.observe(5.0, [(kept.key, kept)])
    events = again.settle_restored(5.0)
    reminder, gone = events
    assert isinstance(reminder, Reminder) and isinstance(gone, Resolved)
    assert reminder.finding == kept and abs(reminder.open_seconds - 160.0) < 1e-6
    assert (gone.kind, gone.subject) == fixed.key and abs(gone.open_seconds - 101.0) < 1e-6


def test_keeper_resolves_findings_saved_for_another_root(tmp_path: Path) -> None:
    log = Log()
    keeper = StateKeeper(str(tmp_path))
    (tmp_path / STATE_FILE).write_bytes(encode("/old/root", sample(), NOW))
    life = Lifecycle(settle=0, reminder=0)
    events = keeper.restore(log, life, "/new/root", 0.0, NOW)
    assert sorted(e.subject for e in events if isinstance(e, Resolved)) == sorted(
        f.subject for f, _ in sample()
    )
    assert life.open_findings(0.0) == []


@pytest.mark.parametrize(
    ("content", "level", "reason"),
    [(None, "info", "no state file"), (b"garbage", "warning", "unusable state file: not JSON")],
)
def test_missing_or_corrupt_file_starts_fresh(
    tmp_path: Path, content: bytes | None, level: str, reason: str
) -> None:
    if content is not None:
        (tmp_path / STATE_FILE).write_bytes(content)
    log = Log()
    life = Lifecycle(settle=0, reminder=0)
    assert StateKeeper(str(tmp_path)).restore(log, life, "/r", 0.0, NOW) == []
    ((got_level, event, fields),) = log.lines
    assert (got_level, event) == (level, "state.fresh")
    assert fields["reason"].startswith(reason)
    assert life.open_findings(0.0) == []


def test_no_state_dir_says_so_once_and_writes_nothing(tmp_path: Path) -> None:
    log = Log()
    keeper = StateKeeper(None)
    life = Lifecycle(settle=0, reminder=0)
    assert keeper.restore(log, life, "/r", 0.0, NOW) == []
    keeper.changed()
    assert keeper.due() is None
    keeper.flush(log, life, "/r", 0.0, NOW, force=True)
    assert log.events() == ["state.off"]
    assert list(tmp_path.iterdir()) == []


def test_save_failure_is_logged_once_per_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    log = Log()
    keeper = StateKeeper(str(blocker / "state"))  # below a file: ENOTDIR, even for root
    life = Lifecycle(settle=0, reminder=0)
    for i in range(3):
        keeper.changed()
        keeper.flush(log, life, "/r", 10.0 * i, NOW)
    assert log.events() == ["state.save_failed"]
    assert log.lines[0][0] == "warning" and log.lines[0][2]["error"]


def test_writes_are_spaced_by_their_cost(tmp_path: Path) -> None:
    """A change right after a write waits for the gap (at least 1 s, and 10x
    what the last write took), then is written; stop forces it out."""
    spent = iter([0.0, 0.3, 100.0, 100.001, 200.0, 200.001])  # the first write takes 0.3 s
    keeper = StateKeeper(str(tmp_path), timer=lambda: next(spent))
    path = tmp_path / STATE_FILE
    log = Log()
    life = Lifecycle(settle=0, reminder=0)
    kept = sample()[0][0]
    keeper.flush(log, life, "/r", 0.0, NOW)
    assert not path.exists() and keeper.due() is None  # nothing changed, nothing written
    life.restore(0.0, [(kept, 1.0)])
    keeper.changed()
    keeper.flush(log, life, "/r", 0.0, NOW)
    assert len(decode(path.read_bytes()).open) == 1
    assert keeper.due() is None
    life.settle_restored(0.5)  # resolved: the open set changed
    keeper.changed()
    keeper.flush(log, life, "/r", 1.0, NOW)
    assert len(decode(path.read_bytes()).open) == 1  # 10 x 0.3 s have not passed
    assert keeper.due() == 3.0
    keeper.flush(log, life, "/r", 3.0, NOW)
    assert decode(path.read_bytes()).open == []
    assert keeper.due() is None
    # At stop, a pending change is written whatever the gap.
    life.restore(3.0, [(kept, 1.0)])
    keeper.changed()
    keeper.flush(log, life, "/r", 3.5, NOW)
    assert decode(path.read_bytes()).open == []
    keeper.flush(log, life, "/r", 3.5, NOW, force=True)
    assert len(decode(path.read_bytes()).open) == 1


def test_a_finding_not_yet_announced_is_not_saved(tmp_path: Path) -> None:
    """An orphan's `finding.opened` waits for its size; until it is logged,
    the file must not call it open, or a run after a crash in between would
    remind of what no alert rule ever saw opened."""
    keeper = StateKeeper(str(tmp_path))
    life = Lifecycle(settle=0, reminder=0)
    announced, held = sample()[0][0], sample()[2][0]
    life.restore(0.0, [(announced, 1.0), (held, 1.0)])
    keeper.changed()
    keeper.flush(Log(), life, "/r", 0.0, NOW, skip=lambda key: key == held.key)
    assert [f.key for f, _ in decode((tmp_path / STATE_FILE).read_bytes()).open] == [announced.key]
