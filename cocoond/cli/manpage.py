"""cocoond(8), made from the same parser and help sections that `--help`
prints, so the man page and the help cannot say different things.

    python -m cocoond.cli.manpage > cocoond.8      (scripts/install does this)

Nothing here is written by hand except the roff structure: every sentence
comes from `main.build_parser()` or `helptext`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from collections.abc import Iterator

from cocoond import __version__
from cocoond.cli.helptext import EXAMPLE, Section
from cocoond.cli.main import DESCRIPTION, Parser, build_parser

#: Man sections in the order man-pages(7) gives, with the help section
#: titles that fill them.
_SECTIONS = (
    ("OUTPUT", "output"),
    ("EXIT STATUS", "exit status"),
    ("SIGNALS", "signals"),
    ("ENVIRONMENT", "environment"),
    ("FILES", "files"),
    ("EXAMPLES", EXAMPLE),
)
#: The help sections that differ per command: one subsection each.
_PER_COMMAND = ("exit status", "output")


def escape(text: str) -> str:
    """Text as roff prints it literally: backslashes, minus signs (a plain
    '-' may become a hyphen, which breaks copied options), and a leading '.'
    or "'" that roff would take for a request."""
    text = " ".join(text.split()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def commands(parser: Parser, prefix: str = "cocoond") -> Iterator[tuple[str, Parser]]:
    """Every command that does something, depth first: `run`, `check`,
    `config check`, `config show` (not the `config` group itself)."""
    for name, sub in parser.commands.items():
        if sub.commands:
            yield from commands(sub, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", sub


def _synopsis(parser: Parser) -> str:
    usage = " ".join(parser.format_usage().split())
    prog, _, args = usage.removeprefix("usage: ").partition(f"{parser.prog} ")
    return f".B {escape(parser.prog)}\n{escape(args)}" if not prog else f".B {escape(usage)}"


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:  # argparse keeps no public list
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        term = ", ".join(f"\\fB{escape(o)}\\fR" for o in action.option_strings)
        if action.nargs != 0:
            term += f" \\fI{escape(str(action.metavar or action.dest.upper()))}\\fR"
        out += [".TP", term, escape(action.help or "")]
    return out


def _items(section: Section) -> list[str]:
    out = []
    for term, text in section.items:
        if section.title == EXAMPLE:
            out += [".PP", escape(text) + ":", ".PP", ".RS", f".B {escape(term)}", ".RE"]
        else:
            out += [".TP", f".B {escape(term)}", escape(text)]
    return out


def render(parser: Parser | None = None, *, date: str | None = None) -> str:
    """The whole page. `date` defaults to SOURCE_DATE_EPOCH (reproducible
    builds), else today."""
    parser = parser or build_parser()
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = dt.datetime.fromtimestamp(int(epoch), dt.UTC) if epoch else dt.datetime.now(dt.UTC)
        date = when.strftime("%Y-%m-%d")
    leaves = list(commands(parser))
    lines = [
        '.\\" cocoond(8): made by `python -m cocoond.cli.manpage` from the parser',
        '.\\" behind `cocoond --help`; edit cocoond/cli/ rather than this file.',
        f'.TH COCOOND 8 "{date}" "cocoond {__version__}" "System Administration"',
        # Paths and options must not be hyphenated or stretched.
        ".nh",
        ".ad l",
        ".SH NAME",
        f"cocoond \\- {escape(DESCRIPTION[0].lower() + DESCRIPTION[1:].rstrip('.'))}",
        ".SH SYNOPSIS",
    ]
    for i, (_, sub) in enumerate(leaves):
        lines += ([".br"] if i else []) + [_synopsis(sub)]
    lines += [".br", _synopsis(parser), ".SH DESCRIPTION", escape(parser.description or "")]
    lines += [".SH COMMANDS"]
    for name, sub in leaves:
        lines += [f'.SS "{escape(name)}"', escape(sub.description or ""), *_options(sub)]
    lines += ['.SS "cocoond"', *_options(parser)]
    for man_title, title in _SECTIONS:
        lines += _section(man_title, title, [("cocoond", parser), *leaves])
    lines += [".SH SEE ALSO", "systemctl(1), journalctl(1), systemd.service(5), systemd.exec(5)"]
    return "\n".join(lines) + "\n"


def _section(man_title: str, title: str, sources: list[tuple[str, Parser]]) -> list[str]:
    """One man section from every command's help section of that title.
    Exit codes and output differ per command, so each gets a subsection; the
    rest is shared (files, environment), so each term appears once, and a
    term two commands describe differently is a bug in `helptext`."""
    found = [(name, s) for name, p in sources for s in p.sections if s.title == title]
    if not found:
        return []
    lines = [f".SH {man_title}"]
    if title in _PER_COMMAND:
        for name, section in found:
            lines += [f'.SS "{escape(name)}"', *_items(section)]
        return lines
    seen: dict[str, str] = {}
    for _, section in found:
        fresh = []
        for term, text in section.items:
            if term not in seen:
                seen[term] = text
                fresh.append((term, text))
            elif seen[term] != text:
                raise ValueError(f"{title}: {term} is described two ways: {seen[term]!r} and {text!r}")
        lines += _items(Section(section.title, tuple(fresh)))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cocoond.cli.manpage", description=__doc__)
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    args = parser.parse_args(argv)
    page = render()
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
