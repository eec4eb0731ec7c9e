"""Prometheus metrics, as a file for node_exporter's textfile collector.

The daemon has no network (the unit's PrivateNetwork=yes), so it serves no
HTTP port: it writes `[metrics] textfile` (a `*.prom` file in the
collector's directory), which node_exporter already on the host exports.
The loop marks the file `changed()` when the open findings change, at each
heartbeat and after each full scan, and calls `flush`, which writes at
most once per MIN_INTERVAL (scrapes are 15 s or more apart, and at 100k
open findings a write costs tens of ms).

The write replaces the file atomically (a temp file in the same directory,
then rename), so node_exporter never reads half a file, and makes it
world-readable (0644) although the unit's UMask is 0077: node_exporter runs
as another user. The text is prometheus_client's exposition format.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from cocoond import __version__
from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.storage.atomic import atomic_write

#: Shortest time between two writes; a change within it is written when it ends.
MIN_INTERVAL = 1.0
#: Longest wait before a failed write is tried again.
MAX_RETRY = 30.0
#: Findings whose `bytes` `cocoon gc` would free: it deletes orphan data
#: dirs and unreferenced blobs.
RECLAIMABLE_KINDS = (fk.ORPHAN_DATA_DIR, fk.UNREFERENCED_BLOB)


@dataclass(frozen=True, slots=True)
class Readings:
    """What the file says: the daemon's state at one moment."""

    #: Open findings as announced (orphans with their measured `bytes`).
    open_findings: Sequence[Finding]
    snapshots: int
    pending_snapshots: int
    blobs: int
    #: Wall-clock time the last full scan finished; None before the first.
    last_full_scan: float | None
    #: Seconds the last good load of snapshots.json took; None before one.
    index_load_seconds: float | None
    #: The config's intervals (0: off), so alert rules can tell stale from quiet.
    full_rescan_interval: float
    heartbeat_interval: float


class _Snapshot(Collector):
    """The registry's only collector: yields the families of one Readings."""

    def __init__(self, readings: Readings) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        r = self._readings
        open_by_kind = Counter(f.kind for f in r.open_findings)
        reclaimable = Counter[str]()
        for f in r.open_findings:
            if f.kind in RECLAIMABLE_KINDS and f.bytes is not None:
                reclaimable[f.kind] += f.bytes

        findings = GaugeMetricFamily(
            "cocoond_findings_open",
            "Findings open now (announced by finding.opened, not yet resolved), by kind.",
            labels=["kind", "severity"],
        )
        for kind, severity in fk.SEVERITY_OF.items():
            findings.add_metric([kind, severity], open_by_kind[kind])
        yield findings
        yield _gauge("cocoond_snapshots", "Snapshot records in snapshots.json.", r.snapshots)
        yield _gauge("cocoond_pending_snapshots", "Snapshot records still pending.", r.pending_snapshots)
        yield _gauge("cocoond_blobs", "Image blob files under the root.", r.blobs)
        bytes_ = GaugeMetricFamily(
            "cocoond_reclaimable_bytes",
            "Bytes `cocoon gc` would free: open orphan data dirs and unreferenced blobs "
            "(a lower bound: an orphan whose size is not known yet counts nothing).",
            labels=["kind"],
        )
        for kind in RECLAIMABLE_KINDS:
            bytes_.add_metric([kind], reclaimable[kind])
        yield bytes_
        if r.last_full_scan is not None:
            yield _gauge(
                "cocoond_last_full_scan_timestamp_seconds",
                "When the last full scan of the root finished (Unix time).",
                r.last_full_scan,
            )
        if r.index_load_seconds is not None:
            yield _gauge(
                "cocoond_index_load_seconds",
                "Seconds the last load of snapshots.json into the index took.",
                r.index_load_seconds,
            )
        yield _gauge(
            "cocoond_full_rescan_interval_seconds",
            "[watch] full_rescan_seconds: interval of the safety-net full scan (0: off).",
            r.full_rescan_interval,
        )
        yield _gauge(
            "cocoond_heartbeat_interval_seconds",
            "[alerts] heartbeat_seconds: interval at which this file is rewritten (0: off).",
            r.heartbeat_interval,
        )
        yield InfoMetricFamily("cocoond_build", "The running cocoond.", value={"version": __version__})


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def render(readings: Readings) -> bytes:
    """The file's text, in Prometheus' text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(readings))
    return generate_latest(registry)


class MetricsFile:
    """The daemon's side: where the file is, whether it needs writing, and
    saying once (not at every write) that it cannot be written."""

    def __init__(self, path: str | None) -> None:
        self.path = path or None
        self._dirty = self.path is not None
        self._next_write = float("-inf")  # on the daemon's clock
        self._last_error: str | None = None
        self._failures = 0  # writes failed in a row

    def move(self, path: str | None) -> None:
        """A reload named another file (or none). The old one is left as it is."""
        if (path or None) != self.path:
            self.path = path or None
            self._last_error = None
        self.changed()

    def changed(self) -> None:
        self._dirty = self.path is not None

    def due(self) -> float | None:
        """When a pending write may happen (the daemon's clock), or None."""
        return self._next_write if self._dirty else None

    def flush(self, log: Any, now: float, readings: Callable[[], Readings]) -> None:
        """Write if something changed and MIN_INTERVAL has passed since the
        last write; `readings` is called only then. A failed write (the
        directory not there yet: node_exporter installed later) is tried
        again after 2, 4 ... up to MAX_RETRY seconds, so the file appears
        without a restart once it can."""
        if self.path is None or not self._dirty or now < self._next_write:
            return
        self._dirty = False
        self._next_write = now + MIN_INTERVAL
        try:
            atomic_write(self.path, render(readings()), mode=0o644, sync=False)
        except OSError as exc:
            error = f"{exc.strerror or exc}"
            if error != self._last_error:
                log.warning("metrics.write_failed", path=self.path, error=error, hint=_hint(exc))
            self._last_error = error
            self._dirty = True
            self._failures += 1
            self._next_write = now + min(MAX_RETRY, MIN_INTERVAL * 2.0**self._failures)
            return
        if self._last_error is not None:
            log.info("metrics.written", path=self.path, after_failures=self._failures)
        self._last_error = None
        self._failures = 0


def _hint(exc: OSError) -> str:
    """What an operator can do about a failed write."""
    if exc.errno == errno.EROFS:
        return (
            "read-only to the daemon: under the unit, a directory made after the daemon started "
            "is only writable after `systemctl restart cocoond` (the unit makes "
            "/var/lib/prometheus/node-exporter before it starts; another directory needs a "
            "ReadWritePaths= drop-in)"
        )
    if exc.errno == errno.ENOENT:
        return "the directory does not exist (yet): retried, the file appears once it does"
    return "retried with backoff"
