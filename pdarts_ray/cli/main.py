"""The `pdarts-ray` command line.

Every command has --help, --json (JSON and nothing else on stdout) and --quiet.
Bad input is one line on stderr and exit code 2, with nothing written.
"""
from __future__ import annotations

import importlib
import sys

from ..core.version import VERSION as __version__
from ..core.errors import SearchDiverged, Stopped, UserError, stop_on_sigterm
from .common import Parser

# Modules that add commands, in the order --help lists them: each has
# `register(subparsers, groups)`, where groups maps a command group ("genotype", "bench",
# ...) to its subparsers, for modules that add a command to another's group.
COMMAND_MODULES: tuple[str, ...] = ("search", "genotype", "bench", "evaluate", "results", "sweep", "plot", "reproduce")


def build_parser() -> Parser:
    parser = Parser(prog="pdarts-ray", description="P-DARTS architecture search, locally or on a Ray cluster.")
    parser.add_argument("--version", action="version", version=f"pdarts-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    groups: dict = {}
    for module in COMMAND_MODULES:
        importlib.import_module(f"{__package__}.{module}").register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
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
    except Stopped:
        print("stopped (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
