"""`pdarts-ray sweep`: run a sweep definition on Ray Tune, or continue an interrupted one."""

from __future__ import annotations

import sys

from ..core.errors import UserError
from .common import add_common_flags, emit, names, stdout_to_stderr

_RUN_FLAGS = (
    "space",
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
        out = _run(args, verbose=0 if args.quiet or args.json else 1)
    _print(args, out)
    return 0


def _run(args, verbose: int) -> dict:
    import dataclasses

    from .. import api

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _RUN_FLAGS if getattr(args, k) is not None]
        if given:
            raise UserError(
                f"sweep --resume: cannot be combined with {', '.join(given)} "
                "(a resumed sweep keeps its saved definition)"
            )
        result = api.resume_sweep(
            args.resume, storage=args.storage, address=args.address, verbose=verbose, take_over=args.take_over
        )
    else:
        if not args.space:
            raise UserError("sweep: give --space FILE (a sweep definition) or --resume NAME")
        result = api.run_sweep(
            args.space,
            storage=args.storage,
            name=args.name,
            address=args.address,
            verbose=verbose,
            preset=args.preset,
            num_samples=args.num_samples,
            concurrent=args.concurrent,
            gpus_per_trial=args.gpus_per_trial,
            workers_per_trial=args.workers_per_trial,
            mlflow=args.mlflow,
        )
    return dataclasses.asdict(result)


def _print(args, out: dict) -> None:
    if args.json:
        emit(
            args,
            {
                **out,
                "trials": [
                    {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}
                    for row in out["trials"]
                ],
            },
        )
    elif not args.quiet:
        from rich.console import Console

        from ..distributed.ablation import trials_table

        console = Console(width=None if sys.stdout.isatty() else 240)  # whole rows in logs and pipes
        console.print(trials_table(out))
        console.print(f"experiment: {out['path']}")


def register(sub, groups) -> None:
    from ..core.config import SEARCH_PRESETS

    p = sub.add_parser(
        "sweep",
        help="run many searches as a Ray Tune sweep (Optuna or a grid), or resume one",
        description="Run a sweep definition (YAML/JSON: base config, search space, objective, "
        "searcher, scheduler, resources) on Ray Tune; every trial is one three-stage "
        "search and one row in the results store.",
    )
    p.add_argument("--space", metavar="FILE", help="the sweep definition (YAML or JSON)")
    p.add_argument("--preset", help=f"base preset (overrides the definition's): {names(SEARCH_PRESETS)}")
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
