"""`pdarts-ray sweep`: run a sweep definition on Ray Tune, or continue an interrupted one."""

from __future__ import annotations

import json
import sys

from ..core.errors import UserError
from .common import add_common_flags, emit, names, stdout_to_stderr

_RUN_FLAGS = (
    "space",
    "experiment",
    "preset",
    "num_samples",
    "concurrent",
    "gpus_per_trial",
    "workers_per_trial",
    "name",
    "mlflow",
)


def cmd_sweep(args) -> int:
    # stdout carries the trials' table (or the JSON) alone: Ray Tune's status and the trials'
    # output go to stderr
    with stdout_to_stderr():
        outs = _run(args, verbose=0 if args.quiet or args.json else 1)
    if args.json:  # one sweep's summary as it always was; an experiment of several, a list
        emit(args, _jsonable(outs[0]) if len(outs) == 1 else [_jsonable(out) for out in outs])
    elif not args.quiet:
        for out in outs:
            _print(out)
    return 0


def _run(args, verbose: int) -> list[dict]:
    import dataclasses

    from .. import api

    flags = {k: getattr(args, k) for k in sorted(api.SWEEP_FLAGS - {"preset"})}

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _RUN_FLAGS if getattr(args, k) is not None]
        if given:
            raise UserError(
                f"sweep --resume: cannot be combined with {', '.join(given)} "
                "(a resumed sweep keeps its saved definition)"
            )
        results = [
            api.resume_sweep(
                args.resume,
                storage=args.storage,
                address=args.address,
                verbose=verbose,
                take_over=args.take_over,
            )
        ]
    elif args.space and args.experiment:
        raise UserError("sweep: give --space FILE or --experiment NAME, not both")
    elif args.experiment:
        results = api.sweep_experiment(
            args.experiment,
            args.preset or "paper",
            storage=args.storage,
            name=args.name,
            address=args.address,
            verbose=verbose,
            **flags,
        )
    elif args.space:
        results = [
            api.run_sweep(
                args.space,
                storage=args.storage,
                name=args.name,
                address=args.address,
                verbose=verbose,
                preset=args.preset,
                **flags,
            )
        ]
    else:
        raise UserError("sweep: give --space FILE (a sweep definition), --experiment NAME or --resume NAME")
    return [dataclasses.asdict(result) for result in results]


def _jsonable(out: dict) -> dict:
    rows = [
        {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()} for row in out["trials"]
    ]
    return {**out, "trials": rows}


def _print(out: dict) -> None:
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 240)  # whole rows in logs and pipes
    console.print(trials_table(out))
    console.print(f"experiment: {out['path']}")


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


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(_fmt(v) for v in value)
    return str(value)


def trials_table(out: dict, title: str | None = None):
    """A rich table of a sweep's stored trials (the keys that vary among them, M, the cell's
    skip-connects, accuracies, seconds); one row per (trial, M) when the sweep names M values."""
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
    columns = ("trial", "status", *varying, "M", "skip-connects", "best valid", "final valid", "seconds")
    for col in (*columns, "failure"):
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


def register(sub, groups) -> None:
    from ..core.config import SEARCH_PRESETS
    from ..experiments import list_experiments
    from ..results.tables.common import PRESETS

    experiments = list_experiments()
    p = sub.add_parser(
        "sweep",
        help="run many searches as a Ray Tune sweep (Optuna or a grid), or resume one",
        description="Run a sweep definition (YAML/JSON: base config, search space, objective, "
        "searcher, scheduler, resources), or the sweeps of one of the paper's experiments, on Ray "
        "Tune; every trial is one three-stage search and one row in the results store.",
    )
    p.add_argument("--space", metavar="FILE", help="the sweep definition (YAML or JSON)")
    p.add_argument(
        "--experiment",
        choices=experiments,
        metavar="NAME",
        help=f"the sweeps of one of the paper's experiments: {names(experiments)}",
    )
    p.add_argument(
        "--preset",
        help=f"base preset (overrides the definition's): {names(SEARCH_PRESETS)}; with --experiment "
        f"one of {', '.join(PRESETS)} (default paper: paper-c10) or a search preset",
    )
    p.add_argument("--num-samples", type=int, metavar="N", help="trials (Optuna), or repeats of the grid")
    p.add_argument("--concurrent", type=int, metavar="K", help="trials running at once")
    p.add_argument(
        "--gpus-per-trial",
        metavar="F|auto",
        help="GPU share per worker of a trial (0.25: four per GPU) or auto",
    )
    p.add_argument(
        "--workers-per-trial",
        type=int,
        metavar="N",
        help="data-parallel workers of each trial's search (default 1)",
    )
    p.add_argument(
        "--storage",
        metavar="PATH",
        help="results root: absolute path or URI (default $PDARTS_STORAGE, else ~/pdarts_results)",
    )
    p.add_argument("--name", help="experiment name (default sweep-<time>)")
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join (default: $RAY_ADDRESS, a running cluster, else a local Ray)",
    )
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="log every trial to MLflow (the definition's `mlflow` key): a tracking server, "
        "sqlite:////abs/mlflow.db or an absolute folder; needs the mlflow extra",
    )
    p.add_argument("--resume", metavar="NAME_OR_PATH", help="continue an interrupted sweep")
    p.add_argument(
        "--take-over",
        action="store_true",
        help="with --resume: claim the experiment even if another driver holds it (one lost with its "
        "node, pod or Ray Job)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_sweep)
