"""`cocoond` command line: parse arguments, load the config, hand over.

Exit codes are part of the contract: `check` follows the monitoring-plugin
convention (0 ok, 1 warning, 2 error, 3 unknown); `run` exits 0 when told
to stop and 78 (EX_CONFIG) when its config is bad, which the systemd unit
excludes from restarts."""

from __future__ import annotations

import argparse
import os
import sys

from cocoond import __version__
from cocoond.cli.check import EXIT_UNKNOWN, CannotCheck, run_check, write_human, write_json
from cocoond.config import Config, load_config
from cocoond.errors import ConfigError
from cocoond.output import escape_controls
from cocoond.storage.paths import Paths

EX_CONFIG = 78


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cocoond",
        description="Watches a Cocoon root and reports where its snapshot DB and the disk disagree.",
    )
    parser.add_argument("--version", action="version", version=f"cocoond {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "watch the root and log findings as JSON lines (the systemd service)"),
        ("check", "reconcile once, print findings, exit 0/1/2/3 (ok/warning/error/unknown)"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", metavar="FILE", help="TOML config (see config.example.toml)")
        cmd.add_argument("--root", metavar="DIR", help="cocoon root (overrides root_dir and COCOON_ROOT_DIR)")
        if name == "check":
            cmd.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
    return _run(args)


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, root=args.root)


def _check(args: argparse.Namespace) -> int:
    try:
        config = _load(args)
        result = run_check(
            Paths(os.path.abspath(config.root_dir)),
            pending_stale_seconds=config.thresholds.pending_stale_seconds,
            temp_stale_seconds=config.thresholds.temp_stale_seconds,
            orphan_quiet_seconds=config.watch.settle_seconds,
        )
    except (ConfigError, CannotCheck, OSError) as exc:
        # One line, never a traceback: a monitoring agent shows it as is.
        print(f"cocoond check: {escape_controls(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        write_json(result, sys.stdout)
    else:
        write_human(result, sys.stdout)
    return result.exit_code


def _run(args: argparse.Namespace) -> int:
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"cocoond run: {exc}", file=sys.stderr)
        return EX_CONFIG
    from cocoond.daemon.loop import run_daemon

    return run_daemon(config, config_path=args.config, root_override=args.root)


if __name__ == "__main__":
    sys.exit(main())
