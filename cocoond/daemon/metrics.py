"""Prometheus metrics, through node_exporter's textfile collector.

The daemon runs with no network (PrivateNetwork=yes), so it serves no
port: it keeps one `*.prom` file current in the collector's directory
(`[metrics] textfile`), and node_exporter, which every host already runs,
exposes it. The file is rewritten whole after each change of the open
findings, each full rescan and each heartbeat, as a temp file in the same
directory renamed over it, so a scrape never reads half of one.

Rendered by prometheus_client from a `HostView` the loop assembles, so
the format (escaping, HELP/TYPE lines) is the library's, not hand-made.
`cocoond_reclaimable_bytes` is what `cocoon gc` would free: the `bytes` of
the open `orphan_data_dir` findings (a summary finding counts all its dirs)
and `unreferenced_blob` findings. An orphan's size comes from a bounded walk
on another thread: until it is known, or when the walk was cut, the sum is
a lower bound and `cocoond_reclaimable_bytes_exact` is 0.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from cocoond import __version__
from cocoond.core import findings as fk
from cocoond.core.findings import Finding
from cocoond.storage.atomic import atomic_write

#: Findings whose `bytes` `cocoon gc` would give back.
RECLAIMABLE: Final = (fk.ORPHAN_DATA_DIR, fk.UNREFERENCED_BLOB)
#: Readable by node_exporter, which runs as its own user (the unit's UMask=0077
#: would otherwise make the file root's alone).
MODE: Final = 0o644


@dataclass(frozen=True, slots=True)
class HostView:
    """What the metrics say, as the loop knows it at one moment."""

    #: The open findings, orphans with their size where it is known.
    open: Sequence[Finding]
    snapshots: int
    pending: int
    blobs: int
    #: Wall clock of the end of the last full rescan; None before the first.
    last_full_scan: float | None
    #: `[watch] full_rescan_seconds` (0: no timer), for the staleness alert.
    full_rescan_seconds: float


class _ViewCollector(Collector):
    def __init__(self, view: HostView, index_load_seconds: float | None) -> None:
        self.view = view
        self.index_load_seconds = index_load_seconds

    def collect(self) -> Iterator[Metric]:
        view = self.view
        build = GaugeMetricFamily("cocoond_build_info", "cocoond's version (always 1)", labels=["version"])
        build.add_metric([__version__], 1)
        yield build
        counts = dict.fromkeys(fk.KINDS, 0)
        reclaimable = dict.fromkeys(RECLAIMABLE, 0)
        exact = dict.fromkeys(RECLAIMABLE, True)
        for finding in view.open:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
            if finding.kind in reclaimable:
                reclaimable[finding.kind] += finding.bytes or 0
                exact[finding.kind] &= finding.bytes is not None and not finding.bytes_partial
        opened = GaugeMetricFamily(
            "cocoond_findings_open", "Open findings by kind and severity", labels=["kind", "severity"]
        )
        for kind, count in counts.items():
            opened.add_metric([kind, fk.SEVERITY_OF.get(kind, "info")], count)
        yield opened
        yield _gauge("cocoond_snapshots", "Snapshot records in snapshots.json", view.snapshots)
        yield _gauge("cocoond_pending_snapshots", "Pending snapshot records (creating)", view.pending)
        yield _gauge("cocoond_blobs", "Image blob files under cloudimg/blobs and oci/blobs", view.blobs)
        by_kind = GaugeMetricFamily(
            "cocoond_reclaimable_bytes",
            "Bytes `cocoon gc` would free: open orphan_data_dir and unreferenced_blob findings",
            labels=["kind"],
        )
        is_exact = GaugeMetricFamily(
            "cocoond_reclaimable_bytes_exact",
            "1 if cocoond_reclaimable_bytes is exact, 0 if a lower bound (a size walk cut or not done yet)",
            labels=["kind"],
        )
        for kind in RECLAIMABLE:
            by_kind.add_metric([kind], reclaimable[kind])
            is_exact.add_metric([kind], 1 if exact[kind] else 0)
        yield by_kind
        yield is_exact
        yield _gauge(
            "cocoond_full_rescan_interval_seconds",
            "[watch] full_rescan_seconds: interval of the safety-net rescan (0: off)",
            view.full_rescan_seconds,
        )
        if view.last_full_scan is not None:
            yield _gauge(
                "cocoond_last_full_scan_timestamp_seconds",
                "When the last full rescan of the Cocoon root ended (Unix time)",
                view.last_full_scan,
            )
        if self.index_load_seconds is not None:
            yield _gauge(
                "cocoond_index_load_seconds",
                "How long the last load of snapshots.json into the index took",
                self.index_load_seconds,
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def render(view: HostView, index_load_seconds: float | None = None) -> bytes:
    """The textfile's content, in Prometheus' text format. `index_load_seconds`:
    how long the last load of snapshots.json took (None before the first)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_ViewCollector(view, index_load_seconds))
    return generate_latest(registry)


class MetricsFile:
    """The loop's handle on the textfile: `changed()` when something the
    metrics show has changed, `flush()` once per loop turn to write if so.
    A failed write is logged (once until one succeeds) and never stops the
    daemon; the next change or heartbeat tries again."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._dirty = bool(path)
        self._failed: str | None = None
        self._written = False
        self.index_load_seconds: float | None = None

    def changed(self) -> None:
        self._dirty = bool(self.path)

    def index_loaded(self, seconds: float) -> None:
        self.index_load_seconds = seconds
        self.changed()

    def flush(self, log: Any, view: Callable[[], HostView]) -> None:
        if not self._dirty:
            return
        self._dirty = False
        try:
            atomic_write(self.path, render(view(), self.index_load_seconds), mode=MODE)
        except OSError as exc:
            error = exc.strerror or str(exc)
            if error != self._failed:
                log.warning("metrics.write_failed", path=self.path, error=error)
            self._failed = error
            return
        self._failed = None
        self._written = True

    def reconfigure(self, path: str) -> None:
        """A new `[metrics] textfile` (SIGHUP): the old file, if this run
        wrote it, is removed rather than left to go stale."""
        if path != self.path and self._written:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            self._written = False
        self.path = path
        self._failed = None
        self.changed()
