"""The `pdarts-ray` command line.

Every command has --help, --json (JSON and nothing else on stdout) and --quiet.
Bad input is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import importlib
import shlex
import sys

from ..core.errors import SearchDiverged, Stopped, UserError, stop_on_sigterm
from ..core.version import VERSION as __version__
from ..core.waiting import apply_wait_policy
from .common import Parser

# Modules that add commands, in the order --help lists them: each has
# `register(subparsers, groups)`, where groups maps a command group ("genotype", "bench",
# ...) to its subparsers, for modules that add a command to another's group.
COMMAND_MODULES: tuple[str, ...] = (
    "search",
    "genotype",
    "bench",
    "evaluate",
    "results",
    "sweep",
    "plot",
    "reproduce",
)


def build_parser() -> Parser:
    parser = Parser(
        prog="pdarts-ray", description="P-DARTS architecture search, locally or on a Ray cluster."
    )
    parser.add_argument("--version", action="version", version=f"pdarts-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    groups: dict = {}
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").register(sub, groups)
    return parser


def report_interrupt(stop: KeyboardInterrupt) -> int:
    """One line on stderr: how to resume the search or sweep that was running, or that the
    search had finished (exit 0: its result is whole); 130 for Ctrl-C, 143 for SIGTERM otherwise."""
    what, code = ("stopped (SIGTERM)", 143) if isinstance(stop, Stopped) else ("interrupted", 130)
    run_dir = getattr(stop, "run_dir", None)
    if run_dir is not None:
        from ..core.run_folder import RunFolder

        if RunFolder(run_dir).finished:
            print(f"{what} after the search had finished; its result is in {run_dir}", file=sys.stderr)
            return 0
        if RunFolder(run_dir).started:
            what += f"; continue with: pdarts-ray search --resume {shlex.quote(str(run_dir))}"
    hint = getattr(stop, "resume_hint", None)
    if hint is not None:
        what += f"; {hint}"
    print(what, file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        apply_wait_policy(warn=False)  # before any command loads torch: libgomp reads it once
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    previous = stop_on_sigterm()
    try:
        args = parser.parse_args(argv)
        if not hasattr(args, "func"):
            # a command group without its subcommand: show what it offers
            if getattr(args, "command", None) in ("genotype", "bench"):
                parser.parse_args([args.command, "--help"])
            parser.print_help()
            return 2
        return args.func(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except SearchDiverged as err:
        print(f"error: search diverged: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM as Stopped
        return report_interrupt(stop)
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
