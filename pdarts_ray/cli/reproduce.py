"""The `reproduce` command (registered through cli.COMMAND_MODULES)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..core.errors import SweepInterrupted, UserError
from .common import add_common_flags, names, stdout_to_stderr


def cmd_reproduce(args) -> int:
    from rich.console import Console

    from .. import api
    from ..distributed.reproduce import ReproduceFailed
    from ..experiments import get_experiment
    from ..results.tables.render import default_out, rich_effects, rich_table

    setup = get_experiment(args.table).setup(args.preset, args.dataset, args.runs, args.repeats)
    out = Path(args.out) if args.out else default_out(args.table, setup)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    err_console = Console(stderr=True)
    quiet = args.quiet or args.json

    def log(line: str) -> None:
        if not args.quiet:
            err_console.print(line, markup=False, highlight=False)

    t0 = time.perf_counter()
    try:
        with stdout_to_stderr():
            r = api.reproduce(
                args.table,
                args.preset,
                dataset=args.dataset,
                runs=args.runs,
                repeats=args.repeats,
                storage=args.storage,
                address=args.address,
                out=out,
                run=not args.no_run,
                take_over=args.take_over,
                verbose=0 if quiet else 1,
                progress=not args.quiet,
                log=log,
            )
    except ReproduceFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except SweepInterrupted as stop:  # the family's own naming, not a sweep's, continues it
        stop.resume_hint = "the same command continues it (the finished searches are kept)"
        raise
    seconds = time.perf_counter() - t0
    if args.json:
        import json

        print(
            json.dumps(
                {
                    "table": r.table,
                    "preset": setup.preset,
                    "dataset": setup.dataset,
                    "experiment": r.experiment,
                    "searches_started": r.searches_started,
                    "evaluations_started": r.evaluations_started,
                    "columns": r.columns,
                    "rows": r.rows,
                    "notes": r.notes,
                    "effects": r.effects,
                    "missing": r.missing,
                    "files": r.files,
                    "seconds": round(seconds, 1),
                },
                indent=1,
            )
        )
        return 0
    if not args.quiet:
        # piped output keeps whole rows (rich would fold them at 80 columns)
        console = Console(width=None if sys.stdout.isatty() else 220)
        console.print(rich_table(r))
        if r.effects:
            console.print(rich_effects(r.effects))
        if r.missing:
            console.print("missing (not run): " + "; ".join(r.missing), markup=False, highlight=False)
        console.print(
            f"started {r.searches_started} searches and {r.evaluations_started} retrainings "
            f"in {seconds:.0f} s; written: {', '.join(r.files)}",
            markup=False,
            highlight=False,
        )
    return 0


def register(sub, groups) -> None:
    from ..experiments import get_experiment, list_experiments
    from ..results.tables.common import DATASETS, LAPTOP_DATASETS, PRESET_PAIRS, PRESETS

    choices = list_experiments(with_table=True)
    tables = "; ".join(f"{name}: {get_experiment(name).summary}" for name in choices)
    default = "tiny"
    presets = ", ".join(
        "paper (paper-c10 + eval-c10, or paper-c100 + eval-c100 with --dataset cifar100)"
        if name == "paper"
        else f"{name} ({' + '.join(PRESET_PAIRS.get(name, (name, f'eval-{name}')))}"
        f"{'; default' if name == default else ''})"
        for name in PRESETS
    )

    p = sub.add_parser(
        "reproduce",
        help="the paper's diagnostic tables from the results store, beside the paper's numbers",
        description="Compute one of the paper's tables from the results store, "
        "starting only the searches and "
        "retrainings the store still lacks, and write it as <table>.md, <table>.csv and "
        "<table>.png. Tables: " + tables + ".",
    )
    p.add_argument("table", choices=choices, metavar="TABLE", help=names(choices))
    p.add_argument("--preset", choices=PRESETS, default=default, help=presets)
    p.add_argument(
        "--dataset",
        choices=DATASETS + LAPTOP_DATASETS,
        help=f"with --preset paper: {names(DATASETS, DATASETS[0])}; with another preset: "
        f"{names(LAPTOP_DATASETS)} (opt-in data, a larger test split; default: the preset's own)",
    )
    p.add_argument(
        "--runs",
        type=int,
        metavar="N",
        help="independent searches for table3, refine and the random "
        "op spaces of approx (default 3; seeds differ)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        metavar="N",
        help="searches (seeds counting up) per row of depth, skip, dropout, table1 and approx's "
        "approximated row (default 1, as the paper ran them; 3 with --preset small)",
    )
    p.add_argument(
        "--address", metavar="ADDR", help="Ray cluster to join (retrainings then run as Ray tasks)"
    )
    p.add_argument(
        "--storage", metavar="PATH", help="results root (default $PDARTS_STORAGE, else ~/pdarts_results)"
    )
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default ./pdarts-reproduce/<table>-<preset>/)"
    )
    p.add_argument(
        "--no-run",
        action="store_true",
        help="start nothing: render what the store holds, missing cells as -, and list what is missing",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="claim the table's family even if another reproduce holds it (one that is gone)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_reproduce)
