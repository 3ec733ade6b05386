"""What every command shares: a parser whose usage errors are one line, the --json and
--quiet flags, output, and reading the JSON files commands are given."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from ..core.config import did_you_mean
from ..core.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2), and a mistyped choice,
    command or subcommand names the closest one."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")

    def _check_value(self, action, value):  # argparse's check, with the closest choice named
        if action.choices is not None and value not in action.choices:
            raise argparse.ArgumentError(
                action,
                f"invalid choice: {value!r}{did_you_mean(value, action.choices)} "
                f"(choose from {', '.join(map(repr, action.choices))})",
            )


def names(registry, default: str | None = None) -> str:
    """A registry's names for a help text: `a, b (default), c`."""
    return ", ".join(f"{name} (default)" if name == default else name for name in registry)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON and nothing else on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def emit(args, data, text: str | None = None) -> None:
    """JSON on stdout with --json; otherwise `text` unless --quiet."""
    if args.json:
        print(json.dumps(data, indent=1))
    elif text is not None and not args.quiet:
        print(text)


def stdout_console():
    """A rich console on stdout: the terminal's width or $COLUMNS; in a pipe or a file
    without $COLUMNS, wide enough that rows stay whole in logs."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240)


def print_table(table, console=None) -> None:
    """Print a rich table with every value whole. Rich fits a table to the width by cutting
    its widest columns down to "…" or nothing; here no column is narrower than its longest
    word, a table too wide for that drops its borders, and one still too wide (a pipe at 80
    columns) is printed as `column: value` lines, row by row."""
    from rich import box
    from rich.measure import Measurement
    from rich.text import Text

    console = console or stdout_console()
    for column in table.columns:
        column.min_width = max(
            Measurement.get(console, console.options, cell).minimum for cell in (column.header, *column.cells)
        )
    if not _fits(table, console):
        table.box, table.show_edge, table.collapse_padding = box.SIMPLE_HEAD, False, True
    if _fits(table, console):
        console.print(table)
        return
    if table.title:
        console.print(table.title)
    headers = [column.header for column in table.columns]
    for first, *rest in zip(*(column.cells for column in table.columns)):
        console.print(Text.assemble(f"{headers[0]} ", console.render_str(first)), highlight=False)
        for header, cell in zip(headers[1:], rest):
            console.print(Text.assemble(f"  {header}: ", console.render_str(cell)), highlight=False)


def _fits(table, console) -> bool:
    from rich.segment import Segment

    lines = Segment.split_lines(console.render(table, console.options))
    return all(Segment.get_line_length(line) <= console.width for line in lines)


def format_cell(genes) -> str:
    """`n0 = sep_conv_3x3(c_k-2) + skip_connect(c_k-1); n1 = ...`: one node after another."""
    name = lambda j: ("c_k-2", "c_k-1")[j] if j < 2 else f"n{j - 2}"  # noqa: E731
    return "; ".join(
        f"n{i // 2} = {genes[i][0]}({name(genes[i][1])}) + {genes[i + 1][0]}({name(genes[i + 1][1])})"
        for i in range(0, len(genes), 2)
    )


@contextlib.contextmanager
def stdout_to_stderr():
    """stdout carries the table (or the JSON) alone: Ray Tune's and its workers' output goes
    to stderr, at the file-descriptor level since some of it bypasses sys.stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
