"""`cocoond` command line: parse arguments, load the config, hand over.

Exit codes are part of the contract: `check` follows the monitoring-plugin
convention (0 ok, 1 warning, 2 error, 3 unknown); `run` exits 0 when told
to stop and 78 (EX_CONFIG) when its config is bad, which the systemd unit
excludes from restarts. A usage error must not look like a result, so it is
never argparse's 2 (check's "errors found"): it is check's UNKNOWN (3), and
64 (EX_USAGE) everywhere else, which the unit does not restart either.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

from cocoond import __version__
from cocoond.cli import gcplan, helptext
from cocoond.cli import show as show_cmd
from cocoond.cli.check import (
    EXIT_UNKNOWN,
    CannotCheck,
    CheckResult,
    load_for,
    run_check,
    status_line,
    write_human,
    write_json,
)
from cocoond.cli.helptext import EX_CONFIG, EX_USAGE, Section
from cocoond.config import Config, ConfigChoice, show_lines
from cocoond.core import gcmodel
from cocoond.core.rootview import judge
from cocoond.daemon.journald import stderr_prefix
from cocoond.errors import ConfigError
from cocoond.output import escape_controls
from cocoond.rootlook import look
from cocoond.storage.paths import Paths

DESCRIPTION = "Watches a Cocoon root and reports where its snapshot DB and the disk disagree."
#: syslog's LOG_ERR: the priority of a line that says why a command failed.
ERR = 3
COMMANDS_HELP = "cocoond COMMAND --help gives its exit codes, files and an example."


class Parser(argparse.ArgumentParser):
    """argparse with an exit code per command for usage errors, and the help
    sections (exit codes, signals, files...) kept as data for the man page."""

    def __init__(
        self, *args: Any, usage_status: int = EX_USAGE, sections: Sequence[Section] = (), **kwargs: Any
    ) -> None:
        if sections:
            kwargs.setdefault("epilog", helptext.epilog(sections))
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.usage_status = usage_status
        self.sections = tuple(sections)
        self.commands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        if self.usage_status == EXIT_UNKNOWN:
            # check is a monitoring plugin: its first stdout line is the status.
            print(status_line(EXIT_UNKNOWN, f"usage error: {message}"), flush=True)
        self.exit(self.usage_status, f"{self.prog}: error: {message}\n")

    def command(self, sub: Any, name: str, help_text: str, **kwargs: Any) -> Parser:
        """A subcommand; `help_text` is both its line in our list and its description."""
        description = textwrap.fill(help_text, helptext.WIDTH)
        parser: Parser = sub.add_parser(name, help=help_text, description=description, **kwargs)
        parser.set_defaults(parser=parser)
        self.commands[name] = parser
        return parser


def _config_options(parser: Parser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--config",
        metavar="FILE",
        help="read this TOML config (see config.example.toml) instead of the default one",
    )
    which.add_argument("--no-config", action="store_true", help="read no config file: built-in defaults only")
    parser.add_argument("--root", metavar="DIR", help="cocoon root (overrides root_dir and COCOON_ROOT_DIR)")


def build_parser() -> Parser:
    parser = Parser(
        prog="cocoond",
        description=f"{DESCRIPTION}\n\n{COMMANDS_HELP}",
        sections=helptext.TOP,
    )
    parser.add_argument("--version", action="version", version=f"cocoond {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = parser.command(
        sub,
        "run",
        "watch the root and log findings as JSON lines (the systemd service)",
        sections=helptext.RUN,
    )
    _config_options(run)
    check = parser.command(
        sub,
        "check",
        "reconcile once, print findings, exit 0/1/2/3 (ok/warning/error/unknown)",
        sections=helptext.CHECK,
        usage_status=EXIT_UNKNOWN,
    )
    _config_options(check)
    check.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    check.add_argument(
        "-t",
        "--timeout",
        metavar="SECONDS",
        type=_timeout,
        help="give up after SECONDS: UNKNOWN, exit 3 (default: no limit; set it below the "
        "monitoring agent's own timeout)",
    )
    show = parser.command(
        sub,
        "show",
        "one snapshot, image or VM as cocoon resolves REF: its record, disk, references, whether "
        "restore / clone / VM create would work now, its findings; exit 0/1/2/3 as check",
        sections=helptext.SHOW,
        usage_status=EXIT_UNKNOWN,
    )
    _config_options(show)
    show.add_argument(
        "ref", metavar="REF", help="snapshot ID, name or ID prefix; image ref or digest; VM ID or name"
    )
    show.add_argument("--kind", choices=show_cmd.KINDS, help="look only among snapshots, images or VMs")
    show.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    gc_plan = parser.command(
        sub,
        "gc-plan",
        "what `cocoon gc` would remove now, module by module with sizes, or why it would remove "
        "nothing; exit 0/1/3 (runs/aborts/unknown)",
        sections=helptext.GC_PLAN,
        usage_status=EXIT_UNKNOWN,
    )
    _config_options(gc_plan)
    gc_plan.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    config = parser.command(
        sub, "config", "test the config, or show the values in effect", sections=helptext.CONFIG
    )
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text, sections in (
        (
            "check",
            "test the config: exit 0, or 78 with a one-line error (like nginx -t)",
            helptext.CONFIG_CHECK,
        ),
        (
            "show",
            "print every key with its effective value and where it came from (a file, an environment "
            "variable, --root, or default)",
            helptext.CONFIG_SHOW,
        ),
    ):
        action = config.command(config_sub, name, help_text, sections=sections)
        _config_options(action)
        if name == "check":
            action.add_argument(
                "--strict",
                action="store_true",
                help="also fail (exit 78) when root_dir is not a cocoon root cocoond can see: "
                "missing, unreadable, or none of cocoon's DB dirs (a typo, an unmounted disk); "
                "without it that is a warning line and exit 0. The unit's ExecReload uses it",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            # argparse reports these at the top level; they belong to the command.
            getattr(args, "parser", parser).error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # --help, --version, a usage error
        return exc.code if isinstance(exc.code, int) else EX_USAGE
    if args.command == "check":
        return _check(args)
    if args.command == "gc-plan":
        return _gc_plan(args)
    if args.command == "show":
        return _show(args)
    if args.command == "config":
        return _config(args)
    return _run(args)


def _choice(args: argparse.Namespace) -> ConfigChoice:
    return ConfigChoice(path=args.config, use_default=not args.no_config, root=args.root)


def _timeout(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return seconds


def _check(args: argparse.Namespace) -> int:
    """One reconcile. Whatever goes wrong is UNKNOWN (exit 3), never a
    traceback's exit 1, which an agent would show as WARNING: without
    --json the reason is the first stdout line (`COCOOND UNKNOWN - ...`),
    with --json it is one line on stderr and stdout stays empty."""
    output = _Output(json=args.json)
    if args.timeout is not None:
        output.give_up_after(args.timeout)
    try:
        config = _choice(args).load()
        result = run_check(
            Paths(os.path.abspath(config.root_dir)),
            pending_stale_seconds=config.thresholds.pending_stale_seconds,
            temp_stale_seconds=config.thresholds.temp_stale_seconds,
            orphan_quiet_seconds=config.watch.settle_seconds,
            max_db_bytes=config.limits.max_db_bytes,
            root_from=config.sources.get("root_dir"),
            run_dir=config.run_dir,
            log_dir=config.log_dir,
        )
    except (ConfigError, CannotCheck, OSError) as exc:
        # One line, never a traceback: a monitoring agent shows it as is.
        return output.unknown(str(exc))
    except Exception as exc:  # a bug: say UNKNOWN, and keep the traceback for the report
        traceback.print_exc(file=sys.stderr)
        return output.unknown(f"internal error: {type(exc).__name__}: {exc}")
    output.group_over = config.alerts.orphan_burst_threshold
    return output.result(result)


class _Output:
    """check's stdout, written once: by the check, or by the --timeout timer
    if that fires first. The timer ends the process (os._exit) because the
    check may be blocked in a system call (a hung NFS root) that no Python
    exception could interrupt."""

    def __init__(self, *, json: bool) -> None:
        self.json = json
        #: [alerts] orphan_burst_threshold: more missing data dirs are one row.
        self.group_over = 0
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def give_up_after(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._timed_out, args=(seconds,))
        self._timer.daemon = True
        self._timer.start()

    def _timed_out(self, seconds: float) -> None:
        if self._lock.acquire(blocking=False):
            self._write_unknown(f"timed out after {seconds:g}s (--timeout)")
            os._exit(EXIT_UNKNOWN)

    def _take(self) -> None:
        """Stop the timer and own stdout. If the timer has fired, it holds
        the lock until it ends the process, so this waits for that."""
        if self._timer is not None:
            self._timer.cancel()
        self._lock.acquire()

    def unknown(self, why: str) -> int:
        self._take()
        self._write_unknown(why)
        return EXIT_UNKNOWN

    def result(self, result: CheckResult) -> int:
        self._take()
        if self.json:
            write_json(result, sys.stdout)
        else:
            write_human(result, sys.stdout, group_over=self.group_over)
        return result.exit_code

    def _write_unknown(self, why: str) -> None:
        if self.json:
            print(f"cocoond check: {escape_controls(why)}", file=sys.stderr, flush=True)
        else:
            print(status_line(EXIT_UNKNOWN, why), flush=True)


def _show(args: argparse.Namespace) -> int:
    try:
        config = _choice(args).load()
        shown = show_cmd.show(config, args.ref, args.kind)
    except (ConfigError, CannotCheck, OSError) as exc:
        # One line, where `check` puts it: the plugin-form status line on
        # stdout for a person or an agent, stderr beside --json's object.
        if args.json:
            print(f"cocoond show: {escape_controls(str(exc))}", file=sys.stderr)
        else:
            print(status_line(EXIT_UNKNOWN, str(exc)), flush=True)
        return EXIT_UNKNOWN
    if args.json:
        show_cmd.write_json(shown, sys.stdout)
    else:
        show_cmd.write_human(shown, sys.stdout)
    return shown.exit_code


def _gc_plan(args: argparse.Namespace) -> int:
    try:
        config = _choice(args).load()
        sized = gc_plan(config)
    except (ConfigError, CannotCheck, OSError) as exc:
        print(f"cocoond gc-plan: {escape_controls(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    if args.json:
        gcplan.write_json(sized, sys.stdout)
    else:
        gcplan.write_human(sized, sys.stdout)
    return sized.exit_code


def gc_plan(config: Config) -> gcplan.SizedPlan:
    """One consistent reading of the tree, gc's plan on it, measured."""
    loaded = load_for(config, contents=False)
    plan = gcmodel.plan(loaded.index.gc_view(time.time()))
    sized = gcplan.measure(loaded.index.root, plan)
    sized.consistent, sized.attempts = loaded.consistent, loaded.attempts
    return sized


def _loaded(choice: ConfigChoice, command: str) -> Config | None:
    """The config, or None once its one-line error is on stderr."""
    try:
        return choice.load()
    except ConfigError as exc:
        # Under systemd this is the line that says why a start or a
        # reload (ExecReload= runs `config check`) failed: at err.
        print(f"{stderr_prefix(ERR)}cocoond {command}: {exc}", file=sys.stderr)
        return None


def _config(args: argparse.Namespace) -> int:
    config = _loaded(_choice(args), f"config {args.action}")
    if config is None:
        return EX_CONFIG
    if args.action == "check":
        root = os.path.abspath(config.root_dir)
        if (cause := judge(look(root), None)) is not None:
            # A mistyped or unmounted root must not pass a reload silently.
            level = "error" if args.strict else "warning"
            prefix = stderr_prefix(ERR if args.strict else 4)
            print(
                f"{prefix}cocoond config check: {level}: root_dir {escape_controls(root)} "
                f"is not a cocoon root cocoond can see: {escape_controls(cause)}",
                file=sys.stderr,
            )
            if args.strict:
                return EX_CONFIG
        print(f"{_described(config)}: ok")
    else:
        print(f"# cocoond {__version__}: the effective config ({_described(config)})")
        print("\n".join(show_lines(config)))
    return 0


def _described(config: Config) -> str:
    return config.source or "no config file: built-in defaults"


def _run(args: argparse.Namespace) -> int:
    choice = _choice(args)
    config = _loaded(choice, "run")
    if config is None:
        return EX_CONFIG
    try:
        from cocoond.daemon.loop import run_daemon
    except Exception as exc:  # a broken install: before logging exists, still at crit
        print(f"{stderr_prefix(2)}cocoond run: cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 70
    return run_daemon(config, choice=choice)


if __name__ == "__main__":
    sys.exit(main())
