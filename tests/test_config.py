"""cocoond.config: defaults, the example file, root precedence and the
one-line errors that must name the file and the key."""

from __future__ import annotations

import dataclasses
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cocoond.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    KEYS,
    LOG_FORMATS,
    LOG_LEVELS,
    MAX_CONFIG_BYTES,
    MAX_SECONDS,
    STATE_ENV,
    AlertConfig,
    Config,
    ConfigChoice,
    LimitsConfig,
    LogConfig,
    Thresholds,
    WatchConfig,
    find_config,
    load_config,
    show_lines,
)
from cocoond.errors import ConfigError
from cocoond.storage.paths import DEFAULT_ROOT_DIR, ROOT_ENV

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"

# Written out by hand from contract section 6 (plus the keys added since:
# state_dir, alerts.orphan_burst_threshold, limits.max_db_bytes,
# metrics.textfile), not derived from the module, so a key dropped from (or
# added to) the code fails here.
CONTRACT_KEYS = {
    "state_dir",
    "alerts.orphan_burst_threshold",
    "limits.max_db_bytes",
    "metrics.textfile",
    "root_dir",
    "run_dir",
    "log_dir",
    "watch.debounce_seconds",
    "watch.settle_seconds",
    "watch.full_rescan_seconds",
    "thresholds.pending_stale_seconds",
    "thresholds.temp_stale_seconds",
    "alerts.heartbeat_seconds",
    "alerts.reminder_seconds",
    "log.format",
    "log.level",
}
DURATION_KEYS = sorted(k for k in CONTRACT_KEYS if k.endswith("_seconds"))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toml_for(dotted: str, literal: str) -> str:
    """A config setting one dotted key to a TOML literal."""
    table, _, key = dotted.rpartition(".")
    return f"[{table}]\n{key} = {literal}\n" if table else f"{dotted} = {literal}\n"


def get(config: Config, dotted: str) -> Any:
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def error_for(path: Path | str, **kwargs: Any) -> str:
    """The ConfigError message, checked for what every such message must do:
    name the file, and fit on one line (journald and `check` show one)."""
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={}, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


def error_in(tmp_path: Path, text: str) -> str:
    return error_for(write(tmp_path, text))


# -- defaults and the example file


def test_defaults_without_file() -> None:
    config = load_config(environ={})
    assert config == Config(root_dir=DEFAULT_ROOT_DIR)
    assert config.source is None
    assert config.watch == WatchConfig(debounce_seconds=0.2, settle_seconds=2.0, full_rescan_seconds=300.0)
    assert config.thresholds == Thresholds(pending_stale_seconds=3600.0, temp_stale_seconds=3600.0)
    assert config.alerts == AlertConfig(
        heartbeat_seconds=300.0, reminder_seconds=3600.0, orphan_burst_threshold=50
    )
    assert config.limits == LimitsConfig(max_db_bytes=805306368)
    assert config.log == LogConfig(format="json", level="info")
    assert config.state_dir is None


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path, environ={}) == Config(root_dir=DEFAULT_ROOT_DIR, source=str(path))


def test_partial_table_keeps_other_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[watch]\nsettle_seconds = 5\n"), environ={})
    assert config.watch == WatchConfig(settle_seconds=5.0)
    assert config.alerts == AlertConfig()


def test_config_is_frozen() -> None:
    config = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.root_dir = "/elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.watch.settle_seconds = 1.0  # type: ignore[misc]


def test_path_object_accepted_and_source_is_str(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    config = load_config(path, environ={})
    assert config.source == str(path)
    assert isinstance(config.source, str)


def test_example_loads_and_equals_defaults() -> None:
    config = load_config(EXAMPLE, environ={ROOT_ENV: "/from/env"})
    # root_dir in the example file beats the environment (contract precedence).
    assert config == Config(root_dir="/data01/cocoon", source=str(EXAMPLE))


def _flatten(table: dict[str, Any], prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for key, value in table.items():
        dotted = prefix + key
        keys |= _flatten(value, dotted + ".") if isinstance(value, dict) else {dotted}
    return keys


def test_keys_match_contract() -> None:
    assert set(KEYS) == CONTRACT_KEYS
    assert len(KEYS) == len(set(KEYS))
    assert set(DURATION_KEYS) <= set(KEYS)


def test_example_documents_every_key() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert _flatten(tomllib.loads(text)) == set(KEYS)
    # ... and each key is explained: a comment directly above its line.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"undocumented: {line!r}"


def _comment_above(text: str, key: str) -> str:
    """The comment block directly above the line that sets `key`."""
    lines = text.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(f"{key} ="))
    block: list[str] = []
    while i > 0 and lines[i - 1].startswith("#"):
        i -= 1
        block.insert(0, lines[i])
    return " ".join(block)


@pytest.mark.parametrize("key", ["heartbeat_seconds", "reminder_seconds", "full_rescan_seconds"])
def test_example_says_zero_turns_timer_off(key: str) -> None:
    assert "0 turns" in _comment_above(EXAMPLE.read_text(encoding="utf-8"), key)


@pytest.mark.parametrize("key", ["settle_seconds", "debounce_seconds"])
def test_example_says_zero_means_immediately(key: str) -> None:
    assert "immediately" in _comment_above(EXAMPLE.read_text(encoding="utf-8"), key)


# -- root precedence


def test_root_argument_wins(tmp_path: Path) -> None:
    path = write(tmp_path, 'root_dir = "/from/file"\n')
    config = load_config(path, root="/from/cli", environ={ROOT_ENV: "/from/env"})
    assert config.root_dir == "/from/cli"


def test_root_argument_without_file() -> None:
    assert load_config(root="/from/cli", environ={ROOT_ENV: "/from/env"}).root_dir == "/from/cli"


def test_file_root_beats_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'root_dir = "/from/file"\n')
    assert load_config(path, environ={ROOT_ENV: "/from/env"}).root_dir == "/from/file"


def test_environment_used_when_file_has_no_root(tmp_path: Path) -> None:
    path = write(tmp_path, "[log]\nlevel = 'debug'\n")
    assert load_config(path, environ={ROOT_ENV: "/from/env"}).root_dir == "/from/env"
    assert load_config(environ={ROOT_ENV: "/from/env"}).root_dir == "/from/env"


def test_default_root_last(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}).root_dir == DEFAULT_ROOT_DIR
    assert load_config(environ={"UNRELATED": "x"}).root_dir == DEFAULT_ROOT_DIR


def test_empty_environment_variable_ignored(tmp_path: Path) -> None:
    assert load_config(environ={ROOT_ENV: ""}).root_dir == DEFAULT_ROOT_DIR
    assert load_config(write(tmp_path, ""), environ={ROOT_ENV: ""}).root_dir == DEFAULT_ROOT_DIR


def test_environ_defaults_to_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ROOT_ENV, "/from/os/environ")
    assert load_config().root_dir == "/from/os/environ"
    monkeypatch.delenv(ROOT_ENV)
    assert load_config().root_dir == DEFAULT_ROOT_DIR


def test_empty_root_argument_rejected() -> None:
    with pytest.raises(ConfigError, match="--root"):
        load_config(root="", environ={})


# -- values accepted


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_integer_seconds_accepted_as_float(tmp_path: Path, dotted: str) -> None:
    value = get(load_config(write(tmp_path, toml_for(dotted, "7")), environ={}), dotted)
    assert value == 7.0
    assert type(value) is float


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_zero_allowed(tmp_path: Path, dotted: str) -> None:
    for literal in ("0", "0.0", "-0.0"):
        value = get(load_config(write(tmp_path, toml_for(dotted, literal)), environ={}), dotted)
        assert value == 0.0
        assert str(value) == "0.0"


@given(st.floats(min_value=0.1, max_value=MAX_SECONDS) | st.just(0.0))
def test_any_duration_in_range_round_trips(seconds: float) -> None:
    # Hypothesis reruns the body, so no function-scoped tmp_path here.
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), f"[alerts]\nreminder_seconds = {seconds!r}\n")
        assert load_config(path, environ={}).alerts.reminder_seconds == seconds


@pytest.mark.parametrize(("key", "allowed"), [("format", LOG_FORMATS), ("level", LOG_LEVELS)])
def test_every_log_choice_accepted(tmp_path: Path, key: str, allowed: tuple[str, ...]) -> None:
    for choice in allowed:
        config = load_config(write(tmp_path, f'[log]\n{key} = "{choice}"\n'), environ={})
        assert getattr(config.log, key) == choice


def test_log_choices_match_contract() -> None:
    assert set(LOG_FORMATS) == {"json", "console"}
    assert set(LOG_LEVELS) == {"debug", "info", "warning", "error"}


# -- errors: reading the file


def test_missing_file(tmp_path: Path) -> None:
    msg = error_for(tmp_path / "nope.toml")
    assert "no such" in msg


def test_directory_as_path(tmp_path: Path) -> None:
    msg = error_for(tmp_path)
    assert "directory" in msg


def test_unreadable_path(tmp_path: Path) -> None:
    # A path through a regular file fails with ENOTDIR even for root, which
    # chmod 000 would not.
    blocker = write(tmp_path, "", name="file")
    msg = error_for(blocker / "config.toml")
    assert "cannot read" in msg


def test_invalid_toml_is_one_line(tmp_path: Path) -> None:
    msg = error_in(tmp_path, "[watch]\nsettle_seconds = \n")
    assert "invalid TOML" in msg
    assert "line 2" in msg


def test_duplicate_key_is_invalid_toml(tmp_path: Path) -> None:
    msg = error_in(tmp_path, "[log]\nlevel = 'info'\nlevel = 'debug'\n")
    assert "invalid TOML" in msg


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'root_dir = "/data\xff"\n')
    msg = error_for(path)
    assert "invalid TOML" in msg


# -- errors: keys


@pytest.mark.parametrize(
    ("text", "named", "suggested"),
    [
        ("[watch]\nsetle_seconds = 2\n", "unknown key 'watch.setle_seconds'", "'watch.settle_seconds'"),
        # a key in the wrong table, or at the top, is pointed to its table
        (
            "[watch]\nheartbeat_seconds = 60\n",
            "unknown key 'watch.heartbeat_seconds'",
            "'alerts.heartbeat_seconds'",
        ),
        ('root_directory = "/x"\n', "unknown key 'root_directory'", "'root_dir'"),
        ("settle_seconds = 2\n", "unknown key 'settle_seconds'", "'watch.settle_seconds'"),
        ("[log]\nzzzzzz = 1\n", "unknown key 'log.zzzzzz'", None),
        ("[wach]\nsettle_seconds = 2\n", "unknown table 'wach'", "'watch'"),
        ("[log.extra]\nx = 1\n", "unknown table 'log.extra'", ""),  # "" : suggestion not checked
    ],
)
def test_unknown_names_are_named_with_a_suggestion(
    tmp_path: Path, text: str, named: str, suggested: str | None
) -> None:
    msg = error_in(tmp_path, text)
    assert named in msg
    if suggested is None:
        assert "did you mean" not in msg
    elif suggested:
        assert f"did you mean {suggested}?" in msg


# -- errors: types and values


def test_wrong_type_for_seconds(tmp_path: Path) -> None:
    msg = error_in(tmp_path, "[watch]\nsettle_seconds = 'abc'\n")
    assert msg.endswith("watch.settle_seconds: expected a number of seconds, got 'abc'")


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_bool_rejected(tmp_path: Path, dotted: str) -> None:
    msg = error_in(tmp_path, toml_for(dotted, "true"))
    assert f"{dotted}: expected a number of seconds, got true" in msg


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_negative_rejected(tmp_path: Path, dotted: str) -> None:
    msg = error_in(tmp_path, toml_for(dotted, "-5"))
    assert msg.endswith(f"{dotted}: must not be negative, got -5")
    msg = error_in(tmp_path, toml_for(dotted, "-0.5"))
    assert msg.endswith(f"{dotted}: must not be negative, got -0.5")


@pytest.mark.parametrize("literal", ["nan", "inf", "+inf", "-inf", "-nan"])
@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_non_finite_rejected(tmp_path: Path, dotted: str, literal: str) -> None:
    msg = error_in(tmp_path, toml_for(dotted, literal))
    assert f"{dotted}: expected a finite number of seconds" in msg


def test_int_too_large_for_float_rejected(tmp_path: Path) -> None:
    msg = error_in(tmp_path, toml_for("alerts.reminder_seconds", "1" + "0" * 400))
    assert "alerts.reminder_seconds: expected a finite number of seconds" in msg


@pytest.mark.parametrize("literal", ["'300'", "[300]", "1979-05-27", "07:32:00", "{ a = 1 }"])
def test_other_non_numbers_rejected(tmp_path: Path, literal: str) -> None:
    msg = error_in(tmp_path, toml_for("alerts.heartbeat_seconds", literal))
    assert "alerts.heartbeat_seconds: expected a number of seconds" in msg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[log]\nformat = "xml"\n', "log.format: expected one of 'json', 'console', got 'xml'"),
        (
            '[log]\nlevel = "verbose"\n',
            "log.level: expected one of 'debug', 'info', 'warning', 'error', got 'verbose'",
        ),
        ('[log]\nlevel = "INFO"\n', "log.level: expected one of"),  # case-sensitive
        ("[log]\nformat = 1\n", "log.format: expected one of 'json', 'console', got 1"),
        ("watch = 3\n", "watch: expected a table, got 3"),
        ("log = [1, 2]\n", "log: expected a table"),
        ("log = 'x'\n", "log: expected a table"),
        ("log = true\n", "log: expected a table"),
        (
            "[watch.settle_seconds]\nx = 1\n",
            "watch.settle_seconds: expected a number of seconds, got a table",
        ),
        ("[root_dir]\npath = '/x'\n", "root_dir: expected a non-empty string, got a table"),
        ("root_dir = 42\n", "root_dir: expected a non-empty string, got 42"),
        ('root_dir = ""\n', "root_dir: must not be empty"),
        ('root_dir = "/data\\u0000x"\n', "root_dir: must not contain a NUL"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert message in error_in(tmp_path, text)


def test_bad_file_root_is_an_error_even_with_root_argument(tmp_path: Path) -> None:
    # --root wins, but a broken file is still a broken file: the operator
    # would otherwise learn of it only when --root is dropped.
    path = write(tmp_path, "root_dir = 42\n")
    error_for(path, root="/from/cli")


def test_long_value_is_shortened(tmp_path: Path) -> None:
    msg = error_in(tmp_path, f"[log]\nformat = '{'x' * 500}'\n")
    assert "log.format" in msg
    assert len(msg) < len(str(tmp_path)) + 200


# -- bounds: values that cannot be meant (issue 10)

#: Smallest non-zero value of each duration; the timers write a line (or
#: rescan the tree) each time they fire.
TIMER_KEYS = {"watch.full_rescan_seconds", "alerts.heartbeat_seconds", "alerts.reminder_seconds"}


def minimum_of(dotted: str) -> float:
    return 0.1 if dotted in TIMER_KEYS else 0.01


@pytest.mark.parametrize("literal", ["1e-300", "5e-324", "0.000001"])
@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_tiny_positive_duration_rejected(tmp_path: Path, dotted: str, literal: str) -> None:
    msg = error_in(tmp_path, toml_for(dotted, literal))
    assert f"{dotted}: must be 0 or at least {minimum_of(dotted):g} seconds, got" in msg


@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_duration_bounds_are_inclusive(tmp_path: Path, dotted: str) -> None:
    low = minimum_of(dotted)
    assert get(load_config(write(tmp_path, toml_for(dotted, repr(low))), environ={}), dotted) == low
    high = load_config(write(tmp_path, toml_for(dotted, "31536000")), environ={})
    assert get(high, dotted) == MAX_SECONDS == 365 * 86400
    below = error_in(tmp_path, toml_for(dotted, repr(low * 0.99)))
    assert "must be 0 or at least" in below


@pytest.mark.parametrize("literal", ["31536001", "1e300", "1" + "0" * 30])
@pytest.mark.parametrize("dotted", DURATION_KEYS)
def test_huge_duration_rejected(tmp_path: Path, dotted: str, literal: str) -> None:
    msg = error_in(tmp_path, toml_for(dotted, literal))
    assert f"{dotted}: must be at most 31536000 seconds (365 days)" in msg


# -- integer keys


@pytest.mark.parametrize(
    ("dotted", "literal", "value"),
    [
        ("limits.max_db_bytes", "1048576", 1 << 20),
        ("limits.max_db_bytes", "10_000_000_000", 10**10),
        ("alerts.orphan_burst_threshold", "0", 0),
        ("alerts.orphan_burst_threshold", "1", 1),
        ("alerts.orphan_burst_threshold", "100000", 100000),
    ],
)
def test_integer_keys_accepted(tmp_path: Path, dotted: str, literal: str, value: int) -> None:
    got = get(load_config(write(tmp_path, toml_for(dotted, literal)), environ={}), dotted)
    assert got == value
    assert type(got) is int


@pytest.mark.parametrize(
    ("dotted", "literal", "message"),
    [
        ("limits.max_db_bytes", "1048575", "limits.max_db_bytes: must be at least 1048576, got 1048575"),
        ("limits.max_db_bytes", "0", "must be at least 1048576, got 0"),
        ("limits.max_db_bytes", "-1", "must be at least 1048576, got -1"),
        ("limits.max_db_bytes", "1e9", "max_db_bytes: expected an integer number of bytes, got 1000000000.0"),
        ("limits.max_db_bytes", "'1G'", "expected an integer number of bytes, got '1G'"),
        ("limits.max_db_bytes", "true", "expected an integer number of bytes, got true"),
        ("alerts.orphan_burst_threshold", "-1", "orphan_burst_threshold: must not be negative, got -1"),
        ("alerts.orphan_burst_threshold", "2.5", "expected an integer number of data dirs, got 2.5"),
        ("alerts.orphan_burst_threshold", "false", "expected an integer number of data dirs, got false"),
    ],
)
def test_integer_keys_rejected(tmp_path: Path, dotted: str, literal: str, message: str) -> None:
    assert message in error_in(tmp_path, toml_for(dotted, literal))


# -- state_dir


def test_state_dir_precedence(tmp_path: Path) -> None:
    assert load_config(environ={}).state_dir is None
    assert load_config(environ={STATE_ENV: ""}).state_dir is None
    assert load_config(environ={STATE_ENV: "/var/lib/cocoond"}).state_dir == "/var/lib/cocoond"
    # systemd joins several StateDirectory= entries with ':'; the first is ours.
    assert load_config(environ={STATE_ENV: "/var/lib/a:/var/lib/b"}).state_dir == "/var/lib/a"
    empty = write(tmp_path, 'state_dir = ""\n')
    assert load_config(empty, environ={STATE_ENV: "/from/env"}).state_dir == "/from/env"
    assert load_config(empty, environ={}).state_dir is None
    own = write(tmp_path, 'state_dir = "/srv/state"\n', name="own.toml")
    assert load_config(own, environ={STATE_ENV: "/from/env"}).state_dir == "/srv/state"


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        ("'relative/dir'", "state_dir: must be an absolute path, got 'relative/dir'"),
        ("3", "state_dir: expected a string (an absolute path), got 3"),
        ('"/x\\u0000y"', "state_dir: must not contain a NUL"),
    ],
)
def test_bad_state_dir(tmp_path: Path, literal: str, message: str) -> None:
    assert message in error_in(tmp_path, f"state_dir = {literal}\n")


# -- what a config file may be (issue 10): only a regular file of sane size


# A FIFO and a symlink to /dev/zero are tested through the CLI (test_cli.py),
# in a subprocess with a deadline and a memory cap: the loader this replaced
# hung on the one and read the other without end.


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "config.toml"
    with big.open("wb") as fh:
        fh.write(b"# " + b"x" * MAX_CONFIG_BYTES + b"\n")
    assert f"over {MAX_CONFIG_BYTES} bytes (1 MiB)" in error_for(big)
    # A file of exactly the limit is still read (and here, valid TOML).
    with big.open("wb") as fh:
        fh.write(b"#" * (MAX_CONFIG_BYTES - 1) + b"\n")
    assert load_config(big, environ={}).source == str(big)


# -- which file: the default config and its override


def test_find_config_explicit_wins(tmp_path: Path) -> None:
    present = write(tmp_path, "")
    env = {CONFIG_ENV: str(present)}
    assert find_config("/given.toml", use_default=True, environ=env) == "/given.toml"
    assert find_config("/given.toml", use_default=False, environ=env) == "/given.toml"


def test_find_config_default_only_when_present(tmp_path: Path) -> None:
    path = tmp_path / "default.toml"
    env = {CONFIG_ENV: str(path)}
    assert find_config(None, use_default=True, environ=env) is None
    path.write_text("")
    assert find_config(None, use_default=True, environ=env) == str(path)
    assert find_config(None, use_default=False, environ=env) is None
    # Below a file, as good as absent.
    assert find_config(None, use_default=True, environ={CONFIG_ENV: str(path / "x.toml")}) is None


def test_find_config_dangling_symlink_is_read_not_skipped(tmp_path: Path) -> None:
    """A default config that is there but broken is an error, never a
    silent fall back to built-in defaults."""
    link = tmp_path / "default.toml"
    link.symlink_to(tmp_path / "gone.toml")
    env = {CONFIG_ENV: str(link)}
    assert find_config(None, use_default=True, environ=env) == str(link)
    with pytest.raises(ConfigError, match="no such config file"):
        ConfigChoice().load(env)


def test_default_path() -> None:
    assert DEFAULT_CONFIG == "/etc/cocoond/config.toml"
    assert find_config(None, use_default=False, environ={}) is None


def test_config_choice_loads_the_default_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'root_dir = "/from/default"\n[log]\nlevel = "debug"\n')
    env = {CONFIG_ENV: str(path)}
    config = ConfigChoice().load(env)
    assert (config.root_dir, config.log.level, config.source) == ("/from/default", "debug", str(path))
    assert ConfigChoice(use_default=False).load(env) == Config(root_dir=DEFAULT_ROOT_DIR)
    assert ConfigChoice(root="/from/cli").load(env).root_dir == "/from/cli"


# -- config show: values and where they came from


def test_sources_name_the_origin_of_each_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[watch]\nsettle_seconds = 5\n[limits]\nmax_db_bytes = 2097152\n")
    config = load_config(path, environ={ROOT_ENV: "/from/env", STATE_ENV: "/var/lib/cocoond"})
    assert dict(config.sources) == {
        "watch.settle_seconds": str(path),
        "limits.max_db_bytes": str(path),
        "root_dir": ROOT_ENV,
        "state_dir": STATE_ENV,
    }
    assert load_config(path, root="/cli", environ={}).sources["root_dir"] == "--root"


def test_show_lines_every_key_in_order_with_source(tmp_path: Path) -> None:
    path = write(tmp_path, 'root_dir = "/r"\n[alerts]\nreminder_seconds = 60\n')
    lines = show_lines(load_config(path, environ={}))
    assert [line.split(" = ")[0] for line in lines] == list(KEYS)
    by_key = {line.split(" = ")[0]: line for line in lines}
    assert by_key["root_dir"].startswith('root_dir = "/r"') and by_key["root_dir"].endswith(f"# {path}")
    assert by_key["alerts.reminder_seconds"].endswith(f"# {path}")
    assert "= 60.0 " in by_key["alerts.reminder_seconds"]
    assert by_key["watch.settle_seconds"].endswith("# default")
    assert by_key["state_dir"].startswith('state_dir = ""')


def test_show_output_is_a_config_with_the_same_values(tmp_path: Path) -> None:
    """What `config show` prints, saved as a file, loads to the same config."""
    path = write(
        tmp_path,
        'root_dir = "/r/\\u00e9 \\"q\\""\nstate_dir = "/s"\n[watch]\nsettle_seconds = 0.5\n'
        '[limits]\nmax_db_bytes = 3145728\n[log]\nformat = "console"\n',
    )
    config = load_config(path, environ={})
    again = load_config(write(tmp_path, "\n".join(show_lines(config)) + "\n", name="shown.toml"), environ={})
    assert dataclasses.replace(again, source=config.source) == config


def test_run_and_log_dir_default_to_cocoons_and_follow_its_environment(tmp_path: Path) -> None:
    """cocoon's own defaults (cmd/root.go:58-59) and COCOON_RUN_DIR / COCOON_LOG_DIR."""
    config = load_config(None, environ={})
    assert (config.run_dir, config.log_dir) == ("/var/lib/cocoon/run", "/var/log/cocoon")
    config = load_config(None, environ={"COCOON_RUN_DIR": "/run/cocoon", "COCOON_LOG_DIR": "/srv/log"})
    assert (config.run_dir, config.log_dir) == ("/run/cocoon", "/srv/log")
    assert config.sources["run_dir"] == "COCOON_RUN_DIR"
    path = write(tmp_path, 'run_dir = "/x/run"\n')
    assert load_config(path, environ={"COCOON_RUN_DIR": "/run/cocoon"}).run_dir == "/x/run"
    with pytest.raises(ConfigError, match="run_dir: must be an absolute path"):
        load_config(write(tmp_path, 'run_dir = "rel"\n'), environ={})
