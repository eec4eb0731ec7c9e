"""The daemon's TOML config, checked strictly at load time.

cocoond runs unattended under systemd: a typo in a key that silently fell back
to a default would leave a host watched with settings nobody chose, and a bad
value found hours later (a negative timer, NaN) would surface as a crash far
from its cause. So every problem is a `ConfigError` raised here, on one line
that names the file and the dotted key, which `check` turns into exit 3 and
`run` and `config check` into exit 78 before anything is watched.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from typing import Any, Final

from cocoond.errors import ConfigError
from cocoond.storage.paths import DEFAULT_ROOT_DIR, ROOT_ENV

#: The config both commands read when no --config is given and it exists.
DEFAULT_CONFIG: Final = "/etc/cocoond/config.toml"
#: Names another file as that default (tests, a second instance on a host).
CONFIG_ENV: Final = "COCOOND_CONFIG"
#: Set by systemd from the unit's StateDirectory= (colon-separated if several).
STATE_ENV: Final = "STATE_DIRECTORY"
#: What systemd sets it to for systemd/cocoond.service (StateDirectory=cocoond),
#: named by `config show` when run by hand, outside the unit.
UNIT_STATE_DIR: Final = "/var/lib/cocoond"
#: A config is a short text file: anything bigger is not one (a log, a
#: device, a disk image symlinked by mistake) and is refused before reading.
MAX_CONFIG_BYTES: Final = 1 << 20

#: cocoon's own defaults for its run and log dirs (cmd/root.go:58-59), and
#: the environment variables that override them there (viper's COCOON_ prefix).
DEFAULT_RUN_DIR: Final = "/var/lib/cocoon/run"
DEFAULT_LOG_DIR: Final = "/var/log/cocoon"
RUN_ENV: Final = "COCOON_RUN_DIR"
LOG_ENV: Final = "COCOON_LOG_DIR"

#: Values of `log.format`: one JSON object per line for journald and alert
#: rules, or aligned text for a person at a terminal.
LOG_FORMATS: Final = ("json", "console")
#: Values of `log.level`, lowest first.
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

#: Every duration is 0 (each key says what 0 means) or within these bounds:
#: below the minimum the loop would only spin (1e-300 s debounce), above the
#: maximum a timer or threshold would never fire, and neither can be meant.
MIN_SECONDS: Final = 0.01
MAX_SECONDS: Final = 365 * 86400.0
#: Timers that write a log line (or rescan the tree) each time they fire.
_TIMER_MIN_SECONDS: Final = 0.1
_MIN_SECONDS_OF: Final[dict[str, float]] = {
    "watch.full_rescan_seconds": _TIMER_MIN_SECONDS,
    "alerts.heartbeat_seconds": _TIMER_MIN_SECONDS,
    "alerts.reminder_seconds": _TIMER_MIN_SECONDS,
}
#: Integer keys: (smallest value, what the number counts).
_INTEGERS: Final[dict[str, tuple[int, str]]] = {
    "limits.max_db_bytes": (1 << 20, "bytes"),
    "alerts.orphan_burst_threshold": (0, "data dirs"),
}


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
    """Timers of the periodic log events; 0 turns either one off. A burst of
    orphaned data dirs (a DB restored from an old backup) becomes one
    summary finding past `orphan_burst_threshold` dirs; 0 turns that off."""

    heartbeat_seconds: float = 300.0
    reminder_seconds: float = 3600.0
    orphan_burst_threshold: int = 50


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Sizes past which a file is refused rather than read: a DB of many GB is
    damage (or a file that is not a DB), and reading it would take the
    host's memory with it. Cocoon's own DB is about 0.65 GB at 1M snapshots.
    The default, 768 MiB (about 1.15M snapshots), is what the unit's
    MemoryMax=3G holds with room: the daemon's peak is about 2.3x the DB's
    size (1.44 GiB at 1M snapshots, a whole reload, bench/big.py; ~1.7 GiB
    at this cap), a foreign writer's layout included."""

    max_db_bytes: int = 768 << 20


@dataclass(frozen=True, slots=True)
class LogConfig:
    """Where log lines go is fixed (stdout, for journald); only their shape is not."""

    format: str = "json"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """Prometheus metrics through node_exporter's textfile collector: the
    `*.prom` file `run` keeps current ("": none)."""

    textfile: str = ""


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the daemon and `check` need, resolved: `root_dir` and
    `state_dir` have already gone through their precedence, so callers never
    look at the environment themselves."""

    root_dir: str
    #: Where `run` keeps its open findings across restarts; None: nowhere.
    state_dir: str | None = None
    #: cocoon's run_dir and log_dir: per-VM dirs that `cocoon gc` deletes
    #: when no VM record claims them (read only, never written).
    run_dir: str = DEFAULT_RUN_DIR
    log_dir: str = DEFAULT_LOG_DIR
    watch: WatchConfig = field(default_factory=WatchConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    alerts: AlertConfig = field(default_factory=AlertConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    #: The file this came from, kept so later messages can point at it.
    source: str | None = None
    #: Dotted key -> where its value came from, for keys not at their default:
    #: the file, `--root`, or an environment variable (`config show`).
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)


_Section = WatchConfig | Thresholds | AlertConfig | LimitsConfig | LogConfig | MetricsConfig

# Table name -> its dataclass; the table names are also Config's field names,
# and this order is config.example.toml's.
_SECTIONS: Final[dict[str, type[_Section]]] = {
    "watch": WatchConfig,
    "thresholds": Thresholds,
    "alerts": AlertConfig,
    "limits": LimitsConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
}
_CHOICES: Final[dict[str, tuple[str, ...]]] = {"log.format": LOG_FORMATS, "log.level": LOG_LEVELS}
#: Keys outside any table.
_TOP_KEYS: Final = ("root_dir", "state_dir", "run_dir", "log_dir")

#: Every valid dotted key, in the order config.example.toml documents them.
#: Derived from the dataclasses so a new field cannot be forgotten here.
KEYS: Final[tuple[str, ...]] = (
    *_TOP_KEYS,
    *(f"{table}.{f.name}" for table, cls in _SECTIONS.items() for f in fields(cls)),
)


@dataclass(frozen=True, slots=True)
class ConfigChoice:
    """What the command line said about the config, kept so that a reload
    (SIGHUP) makes the same choice again: a default file created since the
    start is read then, as it would be by a fresh start."""

    #: --config FILE: this file, which must exist.
    path: str | None = None
    #: False with --no-config: no file at all, not even the default.
    use_default: bool = True
    #: --root DIR.
    root: str | None = None

    def file(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The file to read, or None for defaults only."""
        env = os.environ if environ is None else environ
        return find_config(self.path, use_default=self.use_default, environ=env)

    def load(self, environ: Mapping[str, str] | None = None) -> Config:
        env = os.environ if environ is None else environ
        return load_config(self.file(env), root=self.root, environ=env)


def default_config_path(environ: Mapping[str, str]) -> str:
    """`$COCOOND_CONFIG` when set and non-empty, else /etc/cocoond/config.toml."""
    return environ.get(CONFIG_ENV) or DEFAULT_CONFIG


def find_config(path: str | None, *, use_default: bool, environ: Mapping[str, str]) -> str | None:
    """An explicit path as given; else the default one when something is
    there. Only a default that does not exist at all is skipped: one that
    exists but cannot be read (a dangling symlink, no permission) is an error
    when it is read, never a silent fallback to built-in defaults."""
    if path is not None:
        return path
    if not use_default:
        return None
    default = default_config_path(environ)
    try:
        os.lstat(default)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError:
        pass  # exists as far as we can tell; reading it says what is wrong
    return default


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    root: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read and check the config at `path` (None: no file, all defaults) and
    resolve the root as the contract orders it: `root` (the CLI's --root),
    then `root_dir` in the file, then a non-empty COCOON_ROOT_DIR in
    `environ` (default os.environ), then DEFAULT_ROOT_DIR. `state_dir` is the
    file's, else the first directory of STATE_DIRECTORY, else None. `environ`
    is a parameter so tests need not touch the process environment."""
    if environ is None:
        environ = os.environ
    if root is not None and not root:
        # An empty --root is a mistake in a unit file, not a request for the default.
        raise ConfigError("--root: must not be empty")
    source = os.fspath(path) if path is not None else None
    data = _read_toml(source) if source is not None else {}
    top: dict[str, str] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in _TOP_KEYS:
            top[key] = _path(str(source), key, value)
        elif key in _SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key}: expected a table, got {_describe(value)}")
            sections[key] = _section(str(source), key, value)
        else:
            raise ConfigError(f"{source}: {_unknown(key, value)}")
    sources = {f"{table}.{name}": str(source) for table in sections for name in data[table]}
    root_dir, sources["root_dir"] = _first(
        (root, "--root"), (top.get("root_dir"), source), (environ.get(ROOT_ENV), ROOT_ENV)
    ) or (DEFAULT_ROOT_DIR, "default")
    state_env = environ.get(STATE_ENV, "").split(":")[0]
    state = _first((top.get("state_dir"), source), (state_env, STATE_ENV))
    if state is not None:
        sources["state_dir"] = state[1]
    cocoon_dirs: dict[str, str] = {}
    for key, env, default in (("run_dir", RUN_ENV, DEFAULT_RUN_DIR), ("log_dir", LOG_ENV, DEFAULT_LOG_DIR)):
        cocoon_dirs[key], sources[key] = _first((top.get(key), source), (environ.get(env), env)) or (
            default,
            "default",
        )
    # Tables the file leaves out keep Config's defaults.
    return Config(
        root_dir=root_dir,
        state_dir=state[0] if state else None,
        run_dir=cocoon_dirs["run_dir"],
        log_dir=cocoon_dirs["log_dir"],
        source=source,
        sources={k: v for k, v in sources.items() if v != "default"},
        **sections,
    )


def _first(*candidates: tuple[str | None, str | None]) -> tuple[str, str] | None:
    """The first (value, where from) whose value is set and non-empty."""
    for value, origin in candidates:
        if value:
            return value, str(origin)
    return None


def _read_toml(source: str) -> dict[str, Any]:
    """tomllib's messages carry the line and column but not the file; every
    error here gets the file prepended and is folded onto one line, because
    journald and `check` show the first line only."""
    try:
        return tomllib.loads(_read_config_bytes(source).decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {_one_line(str(exc))}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 (byte {exc.start})") from None


#: What a path is when it is not a regular file, for the message.
_FILE_TYPES: Final = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _read_config_bytes(source: str) -> bytes:
    """Only a regular file of at most MAX_CONFIG_BYTES is a config. Opened
    non-blocking, so a FIFO cannot hang the open (it is then refused by its
    type), and never read past the limit, so a symlink to /dev/zero or a huge
    file cannot take the host's memory."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")
            raise ConfigError(f"{source}: is {what}, not a config file (a config is a regular file)")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: over {MAX_CONFIG_BYTES} bytes (1 MiB): not a config file")
    return b"".join(chunks)


def _path(source: str, key: str, value: object) -> str:
    """An empty root_dir would silently mean the current directory; an empty
    state_dir means "not set here" (systemd's STATE_DIRECTORY, or none), and
    a relative one would depend on the directory the daemon started in."""
    if not isinstance(value, str):
        what = "a non-empty string" if key == "root_dir" else "a string (an absolute path)"
        raise ConfigError(f"{source}: {key}: expected {what}, got {_describe(value)}")
    if key == "root_dir" and not value:
        raise ConfigError(f"{source}: root_dir: must not be empty")
    if "\0" in value:
        raise ConfigError(f"{source}: {key}: must not contain a NUL character")
    if key != "root_dir" and value and not os.path.isabs(value):
        raise ConfigError(f"{source}: {key}: must be an absolute path, got {_describe(value)}")
    return value


def _section(source: str, table: str, values: dict[str, Any]) -> _Section:
    """Each key is a choice, an integer or a duration; a new key of another
    kind needs its own check here."""
    cls = _SECTIONS[table]
    known = {f.name for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        dotted = f"{table}.{name}"
        if name not in known:
            raise ConfigError(f"{source}: {_unknown(dotted, value)}")
        if dotted in _CHOICES:
            kwargs[name] = _choice(source, dotted, value, _CHOICES[dotted])
        elif dotted in _INTEGERS:
            kwargs[name] = _integer(source, dotted, value, *_INTEGERS[dotted])
        elif dotted == "metrics.textfile":
            kwargs[name] = _textfile(source, dotted, value)
        else:
            kwargs[name] = _seconds(source, dotted, value)
    return cls(**kwargs)


def _textfile(source: str, key: str, value: object) -> str:
    """node_exporter reads only `*.prom` files, so any other name would be
    written and never exported. The directory is not checked here: it may
    appear later (node_exporter installed after cocoond); `run` logs
    `metrics.write_failed` while it is missing."""
    if not isinstance(value, str):
        raise ConfigError(
            f"{source}: {key}: expected a string (a path ending in .prom), got {_describe(value)}"
        )
    if value and (not os.path.isabs(value) or not value.endswith(".prom") or "\0" in value):
        raise ConfigError(
            f'{source}: {key}: must be "" or an absolute path ending in .prom, got {_describe(value)}'
        )
    return value


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
    minimum = _MIN_SECONDS_OF.get(key, MIN_SECONDS)
    if 0 < seconds < minimum:
        raise ConfigError(
            f"{source}: {key}: must be 0 or at least {minimum:g} seconds, got {_describe(value)}"
        )
    if seconds > MAX_SECONDS:
        raise ConfigError(
            f"{source}: {key}: must be at most {MAX_SECONDS:.0f} seconds (365 days), got {_describe(value)}"
        )
    return seconds + 0.0  # -0.0 becomes 0.0, so it prints and compares like the 0 it means


def _integer(source: str, key: str, value: object, minimum: int, unit: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{source}: {key}: expected an integer number of {unit}, got {_describe(value)}")
    if value < minimum:
        floor = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
        raise ConfigError(f"{source}: {key}: {floor}, got {_describe(value)}")
    return value


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


def value_of(config: Config, dotted: str) -> Any:
    """A dotted key's effective value."""
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def show_lines(config: Config) -> list[str]:
    """`config show`: every key, its effective value as a TOML literal and
    where it came from, one line each in config.example.toml's order. The
    lines are valid TOML (dotted keys), so the output is itself a config
    that loads to the same values."""
    rows = [
        (f"{key} = {_toml_literal(value_of(config, key))}", config.sources.get(key, "default"))
        for key in KEYS
    ]
    if config.state_dir is None:
        # Run by hand, outside the unit: say what the daemon will use there,
        # but print the value in effect here so the output still loads to it.
        at = KEYS.index("state_dir")
        rows[at] = (
            rows[at][0],
            f"default: not kept here; under the unit, {UNIT_STATE_DIR} "
            f"(its StateDirectory=, as ${STATE_ENV})",
        )
    width = max(len(text) for text, _ in rows)
    return [f"{text:<{width}}  # {origin}" for text, origin in rows]


def _toml_literal(value: object) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # A JSON string is a TOML basic string: same quotes, same escapes.
    return json.dumps(str(value), ensure_ascii=False)
