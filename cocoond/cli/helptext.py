"""What `--help` says beyond the options: exit codes, signals, files, the
environment and an example, per command. The man page (`manpage.py`) is
made from these same objects and from the parser, so the two cannot drift.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cocoond.cli.check import EXIT_ERROR, EXIT_OK, EXIT_UNKNOWN, EXIT_WARNING
from cocoond.config import CONFIG_ENV, DEFAULT_CONFIG, MAX_CONFIG_BYTES, STATE_ENV, UNIT_STATE_DIR
from cocoond.storage.paths import DEFAULT_ROOT_DIR, ROOT_ENV

#: sysexits.h: the command was used wrongly; bad config.
EX_USAGE: Final = 64
EX_CONFIG: Final = 78
#: The file `run` keeps its open findings in, under the state directory.
STATE_FILE: Final = "findings.json"

WIDTH: Final = 80
#: The section whose items are (command line, what it does).
EXAMPLE: Final = "example"


@dataclass(frozen=True, slots=True)
class Section:
    """A titled list of (term, text), such as exit codes or signals."""

    title: str
    items: tuple[tuple[str, str], ...]


def epilog(sections: Sequence[Section]) -> str:
    """The sections as `--help` prints them after the options: argparse's
    own layout (a title line, then two columns), wrapped to WIDTH."""
    blocks = []
    for section in sections:
        lines = [f"{section.title}:"]
        if section.title == EXAMPLE:
            for command, text in section.items:
                lines += [f"  # {text}", f"  {command}"]
            blocks.append("\n".join(lines))
            continue
        term_width = min(max(len(term) for term, _ in section.items), 24) + 2
        for term, text in section.items:
            first, *rest = textwrap.wrap(text, WIDTH - 2 - term_width) or [""]
            if len(term) + 2 > term_width:
                lines.append(f"  {term}")
                lines.append(" " * (2 + term_width) + first)
            else:
                lines.append(f"  {term:<{term_width}}{first}")
            lines.extend(" " * (2 + term_width) + line for line in rest)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


_CONFIG_ITEM = (
    DEFAULT_CONFIG,
    f"the config, read when it exists (${CONFIG_ENV} names another file; --config FILE reads "
    f"that one and must exist, --no-config reads none). Only a regular file of at most "
    f"{MAX_CONFIG_BYTES >> 20} MiB is a config.",
)
_ROOT_ITEM = (
    DEFAULT_ROOT_DIR,
    f"the default Cocoon root: --root DIR, else root_dir in the config, else ${ROOT_ENV}, else this.",
)
_STATE_ITEM = (
    f"${STATE_ENV}/{STATE_FILE}",
    "the findings `run` has open, kept across restarts so that a restart announces only what "
    "changed (state_dir in the config names another directory; with neither, nothing is kept).",
)
_ENV_ROOT = (ROOT_ENV, "the Cocoon root when neither --root nor root_dir in the config sets it.")
_ENV_STATE = (
    STATE_ENV,
    f"set by systemd from StateDirectory= ({UNIT_STATE_DIR} for the unit): the state_dir, where `run` "
    "keeps its open findings, when the config leaves it empty.",
)
_ENV_CONFIG = (CONFIG_ENV, f"the config file read by default, instead of {DEFAULT_CONFIG}.")
_USAGE = (str(EX_USAGE), "usage error: an unknown option or a missing argument (nothing was done).")
_BAD_CONFIG = (
    str(EX_CONFIG),
    "the config is bad: a one-line error naming the file and the key is on stderr.",
)

TOP: Final = (
    Section(
        "exit status",
        (
            ("0", "--help or --version."),
            (str(EX_USAGE), "usage error: no command, or an unknown one."),
        ),
    ),
    Section(
        "files",
        (_CONFIG_ITEM, _ROOT_ITEM),
    ),
)

RUN: Final = (
    Section(
        "exit status",
        (
            ("0", "stopped by SIGTERM or SIGINT."),
            _USAGE,
            (_BAD_CONFIG[0], _BAD_CONFIG[1] + " The systemd unit restarts on neither 64 nor 78."),
            (
                "70",
                "a crash: one daemon.crashed event at error with the traceback; "
                "the systemd unit restarts it after 5 s.",
            ),
            ("75", "another process holds the state dir (state.dir_busy); the unit tries again after 5 s."),
        ),
    ),
    Section(
        "signals",
        (
            ("SIGTERM, SIGINT", "stop within a second (daemon.stopping, STOPPING=1), exit 0."),
            (
                "SIGHUP",
                "reload the config (RELOADING=1, then READY=1). A bad config is logged as "
                "config.reload_failed and the old one kept; `systemctl reload cocoond` runs "
                "`cocoond config check --strict` first, so the reload itself fails instead (also for "
                "a root_dir that is not a cocoon root cocoond can see).",
            ),
        ),
    ),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM, _STATE_ITEM)),
    Section(
        "environment",
        (
            _ENV_ROOT,
            _ENV_CONFIG,
            _ENV_STATE,
            ("NOTIFY_SOCKET", "set by systemd (Type=notify): READY=1, STATUS=, WATCHDOG=1 go there."),
            ("WATCHDOG_USEC", "set by systemd from WatchdogSec=: the daemon pings at half of it."),
            (
                "JOURNAL_STREAM",
                "set by systemd when stdout goes to the journal: each log line is then sent as a "
                "journal entry (PRIORITY from its level, COCOOND_* fields) to journald's native socket, "
                "which COCOOND_JOURNAL_SOCKET replaces in tests.",
            ),
        ),
    ),
    Section(
        EXAMPLE,
        (("cocoond run --config /etc/cocoond/config.toml", "what the systemd unit runs"),),
    ),
)

CHECK: Final = (
    Section(
        "exit status",
        (
            (str(EXIT_OK), "no finding above info (OK)."),
            (str(EXIT_WARNING), "warnings, no errors (WARNING)."),
            (str(EXIT_ERROR), "errors (CRITICAL)."),
            (
                str(EXIT_UNKNOWN),
                "could not check (UNKNOWN): a bad config, a root that is missing, cannot be read or "
                "holds none of cocoon's DB dirs (an unmounted mount point, a mistyped root), a "
                "usage error (an unknown option), an internal error, or --timeout ran out, so a mistyped "
                "monitoring check is UNKNOWN, not CRITICAL.",
            ),
        ),
    ),
    Section(
        "output",
        (
            (
                "first line",
                "a monitoring plugin's status line (the monitoring-plugins guidelines, as Nagios, Icinga "
                "and Sensu read it): 'COCOOND OK|WARNING|CRITICAL|UNKNOWN - summary | perfdata', the "
                "perfdata being errors, warnings, infos, snapshots, blobs and seconds "
                "(label=value[UOM];warn;crit;min). Without --json an UNKNOWN says why on this line; "
                "with --json stdout is the JSON object or nothing, and the reason is on stderr.",
            ),
            ("then", "a note if cocoon changed its DBs during every pass, and one row per finding."),
        ),
    ),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG)),
    Section(
        EXAMPLE,
        (
            ("cocoond check --root /var/lib/cocoon --json", "one reconcile of another root, as JSON"),
            ("cocoond check -t 50", "as a monitoring plugin, giving up (UNKNOWN) before the agent's 60 s"),
        ),
    ),
)

CONFIG: Final = (
    Section("exit status", (("0", "done."), _USAGE, _BAD_CONFIG)),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG)),
)

CONFIG_CHECK: Final = (
    Section(
        "exit status",
        (
            (
                "0",
                "the config is valid (one line on stdout says which file); a root_dir that is missing, "
                "unreadable or holds none of cocoon's DB dirs (mistyped? unmounted?) adds a warning line "
                "on stderr naming it.",
            ),
            _USAGE,
            (
                _BAD_CONFIG[0],
                _BAD_CONFIG[1] + " With --strict, also a root_dir that is not a cocoon root "
                "cocoond can see (the systemd unit's ExecReload uses --strict, so a mistyped root fails "
                "the reload).",
            ),
        ),
    ),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG)),
    Section(
        EXAMPLE,
        (
            (
                "cocoond config check --config /etc/cocoond/config.toml.new",
                "test an edited copy before moving it into place",
            ),
        ),
    ),
)

CONFIG_SHOW: Final = (
    Section("exit status", (("0", "printed."), _USAGE, _BAD_CONFIG)),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG, _ENV_STATE)),
    Section(
        EXAMPLE,
        (("cocoond config show --root /var/lib/cocoon", "what the daemon would use with that root"),),
    ),
)

_ENV_RUN_LOG = (
    "COCOON_RUN_DIR, COCOON_LOG_DIR",
    "cocoon's run and log dirs when run_dir / log_dir are not in the config "
    "(defaults /var/lib/cocoon/run, /var/log/cocoon): gc deletes VM dirs there without a record.",
)

GC_PLAN: Final = (
    Section(
        "exit status",
        (
            ("0", "`cocoon gc` would run: the plan lists what it removes (maybe nothing)."),
            ("1", "`cocoon gc` would abort before deleting anything: the module whose DB stops it is named."),
            (
                "2",
                "`cocoon gc` would run and remove a whole dir (oci/boot, oci, snapshot/localfile, "
                "snapshot) that a blob's or pending record's name turns its path into: see the "
                "gc_destroys finding.",
            ),
            (
                "3",
                "could not tell: a bad config, a root that is missing or cannot be read, a DB or dir "
                "cocoond may not read, or a usage error.",
            ),
        ),
    ),
    Section(
        "notes",
        (
            (
                "locks",
                "gc-plan takes no lock, as gc TryLocks every module and aborts on a busy one; a cocoon "
                "command holding a lock when gc starts also makes gc abort, which no plan can see.",
            ),
        ),
    ),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG, _ENV_RUN_LOG)),
    Section(
        EXAMPLE,
        (("cocoond gc-plan --json | jq .modules[].bytes", "bytes gc would free, per module"),),
    ),
)

SHOW: Final = (
    Section(
        "exit status",
        (
            (
                "0",
                "nothing above info is open about it: every operation shown works, but where cocoon "
                "refuses it on a healthy record (restoring a snapshot no VM lists: clone only).",
            ),
            ("1", "warnings about it."),
            ("2", "errors about it (an operation shown FAILS, with the findings' reasons)."),
            (
                "3",
                "could not tell: REF names nothing (one line) or more than one thing (the candidates; "
                "use --kind or more of the ID), a DB cannot be read, a bad config or a usage error.",
            ),
        ),
    ),
    Section(
        "output",
        (
            (
                "first line",
                "check's monitoring-plugin status line: 'COCOOND OK|WARNING|CRITICAL|UNKNOWN - <kind> <id> "
                "(<backend>; REF resolved by <rule>): restore works, clone FAILS'; an unknown or ambiguous "
                "REF is that one line with UNKNOWN (on stderr with --json).",
            ),
            ("then", "the record, the data dir, references, each operation's verdict and reasons, findings."),
        ),
    ),
    Section(
        "notes",
        (
            (
                "resolution",
                "as cocoon: snapshots and VMs by exact ID, then name, then a unique ID prefix of 3+ "
                "characters (utils/resolve.go); images by ref as pulled (OCI refs are not normalized), "
                "then ID digest or "
                "a digest prefix of 12+ hex digits (images/index.go). A REF two kinds resolve is ambiguous.",
            ),
        ),
    ),
    Section("files", (_CONFIG_ITEM, _ROOT_ITEM)),
    Section("environment", (_ENV_ROOT, _ENV_CONFIG, _ENV_RUN_LOG)),
    Section(
        EXAMPLE,
        (
            (
                "cocoond show web-1 --json | jq .operations",
                "would restore and clone of snapshot web-1 work now?",
            ),
        ),
    ),
)
