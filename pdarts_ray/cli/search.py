"""`pdarts-ray presets` and `pdarts-ray search`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from ..core.errors import UserError, interrupts_name
from .common import add_common_flags, emit, format_cell, names, print_table, stdout_console, stdout_to_stderr


def cmd_presets(args) -> int:
    from ..core.config import PRESET_NOTES, SEARCH_PRESETS, SearchConfig, resolve, to_dict
    from ..evaluation.config import EVAL_PRESETS, EvalConfig

    rows = {
        name: {
            "kind": "search",
            "note": PRESET_NOTES.get(name, ""),
            "config": to_dict(resolve(SearchConfig, SEARCH_PRESETS, name)),
        }
        for name in SEARCH_PRESETS
    }
    rows.update(
        {
            name: {"kind": "evaluate", "config": to_dict(resolve(EvalConfig, EVAL_PRESETS, name))}
            for name in EVAL_PRESETS
        }
    )
    if args.json:
        emit(args, rows)
        return 0
    from rich.table import Table

    console = stdout_console()
    search = Table(title="search presets (pdarts-ray search --preset NAME)")
    for col in ("name", "cells", "ops", "skip dropout", "M", "epochs (warm-up)", "batch", "C", "data"):
        search.add_column(col)
    evaluate = Table(title="evaluation presets (pdarts-ray evaluate --preset NAME)")
    for col in ("name", "network", "C", "cells", "epochs", "batch", "lr", "data"):
        evaluate.add_column(col)
    for name, row in rows.items():
        c = row["config"]
        if row["kind"] == "search":
            search.add_row(
                name,
                "/".join(map(str, c["cells"])),
                "/".join(map(str, c["ops_kept"])),
                "/".join(map(str, c["skip_dropout"])),
                str(c["skip_connects"]),
                f"{c['epochs']} ({c['warmup_epochs']})",
                str(c["batch_size"]),
                str(c["channels"]),
                c["dataset"],
            )
        else:
            evaluate.add_row(
                name,
                c["network"],
                str(c["channels"]),
                str(c["layers"]),
                str(c["epochs"]),
                str(c["batch_size"]),
                str(c["lr"]),
                c["dataset"],
            )
    print_table(search, console)
    for name in SEARCH_PRESETS:
        console.print(f"  {name}: {PRESET_NOTES.get(name, '')}")
    print_table(evaluate, console)
    return 0


DEFAULT_PRESET = "tiny"
_SEARCH_CONFIG_FLAGS = (
    "preset",
    "config",
    "set",
    "dataset",
    "data_root",
    "download",
    "device",
    "seed",
    "out",
    "dry_run",
)


def resolve_search_config(args):
    from ..core.config import SEARCH_PRESETS, SearchConfig, resolve

    flags = {
        "dataset": args.dataset,
        "data_root": args.data_root,
        "device": args.device,
        "seed": args.seed,
        "download": True if args.download else None,
    }
    return resolve(SearchConfig, SEARCH_PRESETS, args.preset or DEFAULT_PRESET, args.config, args.set, flags)


def cmd_search(args) -> int:
    from .. import api
    from ..core.config import to_dict

    if args.resume:
        given = [
            f"--{k.replace('_', '-')}"
            for k in _SEARCH_CONFIG_FLAGS
            if getattr(args, k) not in (None, False, [])
        ]
        if given:
            raise UserError(
                f"search --resume: cannot be combined with {', '.join(given)} "
                "(a resumed run keeps its saved config)"
            )
    else:
        cfg = resolve_search_config(args)
        if args.dry_run:
            resolved = to_dict(cfg)
            if args.json:
                emit(args, resolved)
            else:
                import yaml

                print(yaml.safe_dump(resolved, sort_keys=False).rstrip())
            return 0
    if not args.resume and args.out is not None:
        _refuse_unfinished(Path(args.out))
    if args.mlflow is not None:
        from ..results.tracking import check_tracking_uri

        check_tracking_uri(args.mlflow, "--mlflow")
    progress = False if args.quiet else sys.stderr if args.json else sys.stdout
    with stdout_to_stderr() if args.json else contextlib.nullcontext():  # Ray's workers print to fd 1
        options = dict(
            use_ray=args.ray,
            sync_bn=args.sync_bn,
            progress=progress,
            take_over=args.take_over,
            mlflow=args.mlflow,
            mlflow_experiment=args.mlflow_experiment,
        )
        result = (
            api.resume_search(args.resume, workers=args.workers, **options)
            if args.resume
            else api.run_search(cfg, args.out, workers=1 if args.workers is None else args.workers, **options)
        )
    with interrupts_name(result.run_dir):  # a Ctrl-C from here on finds the search finished
        summary = {"run_dir": str(result.run_dir), **result.summary}
        if args.json:
            emit(args, summary)
        elif not args.quiet:
            _print_search_summary(result.run_dir, summary)
    return 0


def _refuse_unfinished(out: Path) -> None:
    from ..core.run_folder import RunFolder

    if RunFolder(out).started and not RunFolder(out).finished:
        raise UserError(
            f"{out}: holds a search that has not finished; continue it with "
            f"`pdarts-ray search --resume {out}` (or choose another --out)"
        )


def _print_search_summary(run_dir: Path, result: dict) -> None:
    from rich.table import Table

    from ..core.run_folder import RunFolder

    metrics = RunFolder(run_dir).read_metrics()
    table = Table(title="stages")
    for col in (
        "stage",
        "best valid acc",
        "final train acc",
        "skip-connects (unrefined)",
        "peak memory MiB",
        "seconds",
    ):
        table.add_column(col, justify="right")
    for i, seconds in enumerate(result["stage_seconds"]):
        rows = [m for m in metrics if m["stage"] == i + 1]
        valid = [m["valid_acc"] for m in rows if m["valid_acc"] is not None]
        table.add_row(
            str(i + 1),
            f"{max(valid):.3f}" if valid else "-",
            f"{rows[-1]['train_acc']:.3f}",
            str(result["stage_skip_connects_before_refinement"][i]),
            f"{result['peak_memory_bytes'][i] / 2**20:.0f}",
            f"{seconds:.1f}",
        )
    console = stdout_console()
    print_table(table, console)
    g = result["genotype"]
    console.print(
        f"final genotype (M = {result['skip_connects']}, "
        f"{result['skip_connects_before_refinement']} skip-connects before refinement):"
    )
    console.print(f"  normal: {format_cell(g['normal'])}", highlight=False)
    console.print(f"  reduce: {format_cell(g['reduce'])}", highlight=False)
    console.print(f"run folder: {run_dir}")


def register(sub, groups) -> None:
    from ..core.config import DATASETS, SEARCH_PRESETS

    p = sub.add_parser("presets", help="list the config presets")
    add_common_flags(p)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser(
        "search",
        help="run a progressive (three-stage) search",
        description="Run a P-DARTS search. With no flags: the `tiny` preset on the bundled digits.",
    )
    p.add_argument("--preset", help=f"base config: {names(SEARCH_PRESETS, DEFAULT_PRESET)}")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of config keys (overrides the preset)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one key (value read as YAML)"
    )
    p.add_argument("--dataset", help=names(DATASETS))
    p.add_argument("--data-root", metavar="DIR", help="folder holding the dataset")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default ./pdarts-runs/search-<time>); must be new or empty"
    )
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="data-parallel workers of one search, as one Ray Train run (joins $RAY_ADDRESS, else a "
        "local Ray); batch_size is the global batch and must divide by N",
    )
    p.add_argument("--ray", action="store_true", help="run through Ray Train even with one worker")
    p.add_argument(
        "--sync-bn",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with several workers, BatchNorm uses the global batch's statistics (default), so N "
        "workers compute one worker's search up to rounding",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="claim the run folder even if another driver holds it (one that is gone with its machine)",
    )
    p.add_argument(
        "--mlflow",
        metavar="URI",
        help="log the search to MLflow: a tracking server, sqlite:////abs/mlflow.db or an absolute "
        "folder (needs the mlflow extra); a resumed search continues its MLflow run",
    )
    p.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        default="pdarts-ray",
        help="the MLflow experiment of the run (default pdarts-ray)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_search)
