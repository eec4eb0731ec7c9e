"""The daemon's TOML config, checked strictly at load time.

cocoond runs unattended under systemd: a typo in a key that silently fell back
to a default would leave a host watched with settings nobody chose, and a bad
value found hours later (a negative timer, NaN) would surface as a crash far
from its cause. So every problem is a `ConfigError` raised here, on one line
that names the file and the dotted key, which `check` turns into exit 3 and
`run` into exit 78 before anything is watched.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from typing import Any, Final

from cocoond.errors import ConfigError
from cocoond.storage.paths import DEFAULT_ROOT_DIR, ROOT_ENV

#: Values of `log.format`: one JSON object per line for journald and alert
#: rules, or aligned text for a person at a terminal.
LOG_FORMATS: Final = ("json", "console")
#: Values of `log.level`, lowest first.
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How eagerly the watcher reacts to file events (contract section 5)."""

    debounce_seconds: float = 0.2
    settle_seconds: float = 2.0
    full_rescan_seconds: float = 300.0


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Ages past which an in-flight state is no longer believed to be in flight."""

    pending_stale_seconds: float = 3600.0
    temp_stale_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Timers of the periodic log events; 0 turns either one off."""

    heartbeat_seconds: float = 300.0
    reminder_seconds: float = 3600.0


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Where log lines go is fixed (stdout, for journald); only their shape is not."""

    format: str = "json"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon and `check` need, resolved: `root_dir` has
    already gone through the contract's precedence, so callers never look
    at the environment themselves."""

    root_dir: str
    watch: WatchConfig = field(default_factory=WatchConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    log: LogConfig = field(default_factory=LogConfig)
    #: The file this came from, kept so later messages can point at it.
    source: str | None = None


_Section = WatchConfig | Thresholds | AlertConfig | LogConfig

# Table name -> its dataclass; the table names are also Config's field names.
_SECTIONS: Final[dict[str, type[_Section]]] = {
    "watch": WatchConfig,
    "thresholds": Thresholds,
    "alerts": AlertConfig,
    "log": LogConfig,
}
_CHOICES: Final[dict[str, tuple[str, ...]]] = {"log.format": LOG_FORMATS, "log.level": LOG_LEVELS}

#: Every valid dotted key, in the order config.example.toml documents them.
#: Derived from the dataclasses so a new field cannot be forgotten here.
KEYS: Final[tuple[str, ...]] = (
    "root_dir",
    *(f"{table}.{f.name}" for table, cls in _SECTIONS.items() for f in fields(cls)),
)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and check the config at `path` (None: no file, all defaults) and
    resolve the root as the contract orders it: `root` (the CLI's --root),
    then `root_dir` in the file, then a non-empty COCOON_ROOT_DIR in
    `environ` (default os.environ), then DEFAULT_ROOT_DIR. `environ` is a
    parameter so tests need not touch the process environment."""
    if environ is None:
        environ = os.environ
    if root is not None and not root:
        # An empty --root is a mistake in a unit file, not a request for the default.
        raise ConfigError("--root: must not be empty")
    if path is None:
        return Config(root_dir=root or environ.get(ROOT_ENV) or DEFAULT_ROOT_DIR)

    source = os.fspath(path)
    data = _read_toml(source)
    file_root: str | None = None
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key == "root_dir":
            file_root = _root_dir(source, value)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key}: expected a table, got {_describe(value)}")
            sections[key] = _section(source, key, value)
        else:
            raise ConfigError(f"{source}: {_unknown(key, value)}")
    resolved = root or file_root or environ.get(ROOT_ENV) or DEFAULT_ROOT_DIR
    # Tables the file leaves out keep Config's defaults.
    return Config(root_dir=resolved, source=source, **sections)


def _read_toml(source: str) -> dict[str, Any]:
    """tomllib's messages carry the line and column but not the file; every
    error here gets the file prepended and is folded onto one line, because
    journald and `check` show the first line only."""
    try:
        with open(source, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {_one_line(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 (byte {exc.start})") from None


def _root_dir(source: str, value: object) -> str:
    """An empty root_dir would silently mean the current directory."""
    if not isinstance(value, str):
        raise ConfigError(f"{source}: root_dir: expected a non-empty string, got {_describe(value)}")
    if not value:
        raise ConfigError(f"{source}: root_dir: must not be empty")
    if "\0" in value:
        raise ConfigError(f"{source}: root_dir: must not contain a NUL character")
    return value


def _section(source: str, table: str, values: dict[str, Any]) -> _Section:
    """Every key that is not a choice is a duration, which holds for all of
    contract section 6; a new key of another kind needs its own check here."""
    cls = _SECTIONS[table]
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        dotted = f"{table}.{name}"
        if name not in known:
            raise ConfigError(f"{source}: {_unknown(dotted, value)}")
        if dotted in _CHOICES:
            kwargs[name] = _choice(source, dotted, value, _CHOICES[dotted])
        else:
            kwargs[name] = _seconds(source, dotted, value)
    return cls(**kwargs)


def _seconds(source: str, key: str, value: object) -> float:
    """TOML has separate int and float types and people write `300`, so ints
    count; booleans do not, although Python calls them ints, because
    `heartbeat_seconds = true` is a mistake and not one second."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{source}: {key}: expected a number of seconds, got {_describe(value)}")
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ConfigError(f"{source}: {key}: expected a finite number of seconds, got {_describe(value)}")
    if seconds < 0:
        raise ConfigError(f"{source}: {key}: must not be negative, got {_describe(value)}")
    return seconds + 0.0  # -0.0 becomes 0.0, so it prints and compares like the 0 it means


def _choice(source: str, key: str, value: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        expected = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{source}: {key}: expected one of {expected}, got {_describe(value)}")
    return value


def _unknown(key: str, value: object) -> str:
    """The message for a key that does not exist, with the key it most likely
    meant: a misspelling, or a right name put in the wrong table."""
    what = "table" if isinstance(value, dict) else "key"
    leaf = key.rpartition(".")[2]
    same_leaf = [k for k in KEYS if k.rpartition(".")[2] == leaf]
    if same_leaf:
        guess: str | None = same_leaf[0]
    else:
        candidates = list(KEYS) + list(_SECTIONS)
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        guess = close[0] if close else None
    hint = f"; did you mean '{guess}'?" if guess else ""
    return f"unknown {what} '{key}'{hint}"


def _describe(value: object) -> str:
    """A value as the operator wrote it, short and on one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, datetime | date | time):
        return f"a date/time {value.isoformat()}"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
