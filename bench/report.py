"""Tables (plain text or Markdown), number formatting and the machine header."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime

OK = "✓"
FAIL = "✗"


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        row = list(cells)
        row += [""] * (len(self.headers) - len(row))
        self.rows.append(row)

    def note(self, text: str) -> int:
        """Add a footnote; returns its number (for '(see note N)')."""
        self.notes.append(text)
        return len(self.notes)

    def text(self) -> str:
        widths = [len(h) for h in self.headers]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

        out = [self.title, "=" * len(self.title), fmt(self.headers), fmt(["-" * w for w in widths])]
        out += [fmt(r) for r in self.rows]
        out += [f"  [{i}] {n}" for i, n in enumerate(self.notes, 1)]
        return "\n".join(out)

    def markdown(self) -> str:
        def esc(c: str) -> str:
            return c.replace("|", "\\|")

        out = [f"### {self.title}", "", "| " + " | ".join(esc(h) for h in self.headers) + " |"]
        out.append("|" + "|".join("---" for _ in self.headers) + "|")
        out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in self.rows]
        if self.notes:
            out.append("")
            out += [f"{i}. {esc(n)}" for i, n in enumerate(self.notes, 1)]
        return "\n".join(out)

    def render(self, markdown: bool) -> str:
        return self.markdown() if markdown else self.text()


def fmt_s(seconds: float | None) -> str:
    """Seconds, humanly: '850 µs', '12.3 ms', '1.23 s', '95 s'."""
    if seconds is None:
        return "—"
    a = abs(seconds)
    if a < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if a < 0.1:
        return f"{seconds * 1e3:.1f} ms"
    if a < 1:
        return f"{seconds * 1e3:.0f} ms"
    if a < 60:
        return f"{seconds:.2f} s"
    return f"{seconds:.0f} s"


def fmt_mib(kib: int | None) -> str:
    if kib is None:
        return "—"
    return f"{kib / 1024:.1f} MiB"


def mark(ok: bool | None) -> str:
    if ok is None:
        return "—"
    return OK if ok else FAIL


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def ram_gib() -> str:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def machine_header(cocoond_version: str, markdown: bool) -> str:
    cores = os.cpu_count() or 0
    lines = [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Machine", f"{cpu_model()}, {cores} cores, {ram_gib()} RAM, Linux {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("cocoond", cocoond_version),
    ]
    if markdown:
        return "\n".join(f"- **{k}**: {v}" for k, v in lines)
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
