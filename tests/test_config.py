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
    KEYS,
    LOG_FORMATS,
    LOG_LEVELS,
    AlertConfig,
    Config,
    LogConfig,
    Thresholds,
    WatchConfig,
    load_config,
)
from cocoond.errors import ConfigError
from cocoond.storage.paths import DEFAULT_ROOT_DIR, ROOT_ENV

EXAMPLE = Path(__file__).resolve().parents[1] / "config.example.toml"

# Written out by hand from contract section 6, not derived from the module,
# so a key dropped from (or added to) the code without the contract fails here.
CONTRACT_KEYS = {
    "root_dir",
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
    assert config.alerts == AlertConfig(heartbeat_seconds=300.0, reminder_seconds=3600.0)
    assert config.log == LogConfig(format="json", level="info")


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


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_any_finite_nonnegative_duration_round_trips(seconds: float) -> None:
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
