#!/usr/bin/env python3
"""Writes attnstudio(1) in roff to stdout, generated from the argparse parser, so the page never disagrees
with `attnstudio --help`. Usage: python packaging/make_manpage.py > attnstudio.1"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attnstudio import __version__
from attnstudio.cli import build_parser


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text[:1] in (".", "'") else text


def option_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = []
    for action in parser._actions:  # argparse has no public way to list a parser's arguments
        if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            flags = ", ".join(f"\\fB{roff(flag)}\\fR" for flag in action.option_strings)
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                flags += f" \\fI{roff(str(metavar))}\\fR"
        else:
            flags = f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
        help_text = (action.help or "") % {"default": action.default, "prog": parser.prog} if action.help else ""
        if action.choices and not isinstance(action.choices, dict):
            help_text += f" (one of: {', '.join(map(str, action.choices))})"
        lines += [".TP", flags, roff(help_text)]
    return lines


def manpage() -> str:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subparsers._choices_actions}
    lines = [
        f'.TH ATTNSTUDIO 1 "" "attnstudio {__version__}" "User Commands"',
        ".SH NAME", f"attnstudio \\- {roff(parser.description.rstrip('.').lower())}",
        ".SH SYNOPSIS",
        "\\fBattnstudio\\fR [\\fIOPTIONS\\fR]",
    ]
    lines += [f".br\n\\fBattnstudio {name}\\fR [\\fIOPTIONS\\fR]" for name in subparsers.choices]
    lines += [
        ".SH DESCRIPTION",
        roff(parser.description),
        "Without a command it opens the window; the commands below run without one, for scripts.",
        ".SH OPTIONS", ".TP", "\\fB\\-h\\fR, \\fB\\-\\-help\\fR", "show a help message and exit",
    ]
    lines += option_lines(parser)
    lines.append(".SH COMMANDS")
    for name, sub in subparsers.choices.items():
        usage = " ".join(sub.format_usage().split(": ", 1)[-1].split())
        lines += [f".SS {name}", roff(helps.get(name) or ""), ".PP", f"Usage: {roff(usage)}"]
        lines += option_lines(sub)
    lines += [
        ".SH EXIT STATUS",
        "0 on success; 2 for bad input (one line on standard error says what is wrong); 1 for other failures.",
        ".SH FILES",
        ".TP", "\\fI~/.config/attnstudio/attnstudio.conf\\fR", "settings, recent files and the window layout",
        ".SH SEE ALSO",
        "/usr/share/doc/attnstudio/copyright for the licences of attnstudio and everything it bundles.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manpage())
