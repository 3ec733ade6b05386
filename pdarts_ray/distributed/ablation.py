"""What the ablation scripts share: their flags, running their sweeps, the table of trials.

A script in `ablations/` is a docstring (the paper's context and the run commands) and a
sweep definition; `main(DEFINITION, __doc__)` does the rest. Ray is joined as `ray.init()`
finds it: under `ray submit` the running cluster, elsewhere a new local Ray (`--address`
names another).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import UserError, stop_on_sigterm

SHOWN_KEYS = (
    "cells",
    "ops_kept",
    "skip_dropout",
    "seed",
    "space_seed",
    "lr",
    "batch_size",
    "channels",
    "epochs",
)


def parser(doc: str | None) -> argparse.ArgumentParser:
    first = (doc or "").strip().splitlines()[0] if doc else None
    p = argparse.ArgumentParser(description=first, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="base preset (default: the script's)")
    p.add_argument(
        "--storage", metavar="PATH", help="results root (default $PDARTS_STORAGE, else ~/pdarts_results)"
    )
    p.add_argument("--name", help="experiment name (default: the script's name and the time)")
    p.add_argument("--num-samples", type=int, metavar="N", help="repeats of the grid")
    p.add_argument("--concurrent", type=int, metavar="K", help="trials running at once")
    p.add_argument(
        "--gpus-per-trial", metavar="F|auto", help="GPU share per worker of a trial, or auto (default)"
    )
    p.add_argument(
        "--workers-per-trial",
        type=int,
        metavar="N",
        help="data-parallel workers of each trial's search (default 1)",
    )
    p.add_argument("--address", metavar="ADDR", help="Ray cluster to join")
    p.add_argument("--mlflow", metavar="URI", help="log every trial to this MLflow tracking URI")
    return p


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(_fmt(v) for v in value)
    return str(value)


def trials_table(out: dict, title: str | None = None):
    """A rich table of a sweep's stored trials; one row per (trial, M) when the sweep names M values."""
    from rich.table import Table

    from ..results import expand_m

    trials = out["trials"]
    ms = out.get("m_values")
    varying = [k for k in SHOWN_KEYS if len({json.dumps(t.get(f"cfg_{k}")) for t in trials}) > 1]
    rows = []
    for trial in trials:
        expanded = expand_m([trial], ms) if ms and trial["status"] == "finished" else []
        rows.extend(
            expanded
            or [{**trial, "M": trial.get("cfg_skip_connects") if trial["status"] == "finished" else None}]
        )
    table = Table(title=title or f"{out['name']}: {len(trials)} trials")
    for col in (
        "trial",
        "status",
        *varying,
        "M",
        "skip-connects",
        "best valid",
        "final valid",
        "seconds",
        "failure",
    ):
        table.add_column(col, overflow="fold")
    for r in rows:
        seconds = sum(r["stage_seconds"]) if r.get("stage_seconds") else None
        table.add_row(
            r["trial_id"],
            r["status"],
            *[_fmt(r.get(f"cfg_{k}")) for k in varying],
            _fmt(r.get("M")),
            _fmt(r.get("skip_connects_after_refinement")),
            _fmt(r.get("best_valid_acc")),
            _fmt(r.get("final_valid_acc")),
            _fmt(seconds),
            r.get("failure") or "",
        )
    return table


def run(definitions: dict[str, dict], doc: str | None, argv: list[str] | None = None) -> list[dict]:
    """Run one sweep per definition (their names get the --name prefix) and print their tables.
    Exit code 2 with one line on bad input, as the CLI."""
    import time

    from rich.console import Console

    from .connect import ray_connected
    from .definition import apply_flags, parse_sweep
    from .sweep import run_sweep, sweep_cpus

    args = parser(doc).parse_args(argv)
    stop_on_sigterm()
    console = Console(width=None if sys.stdout.isatty() else 240)  # whole rows in logs and pipes
    try:
        prefix = (
            args.name
            or f"{next(iter(definitions.values())).get('name', 'ablation')}-{time.strftime('%Y%m%d-%H%M%S')}"
        )
        sweeps = []
        for suffix, definition in definitions.items():
            name = prefix if len(definitions) == 1 else f"{prefix}-{suffix}"
            definition = apply_flags(
                {k: v for k, v in definition.items() if k != "name"},
                args.preset,
                args.num_samples,
                args.concurrent,
                args.gpus_per_trial,
                args.storage,
                name,
                args.workers_per_trial,
                args.mlflow,
            )
            sweeps.append(parse_sweep(definition, suffix))  # every sweep is checked before any starts
        with ray_connected(args.address, sweep_cpus(sweeps[0])):
            outs = [run_sweep(s) for s in sweeps]
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for out in outs:
        console.print(trials_table(out))
        console.print(f"experiment: {out['path']}")
    return outs
