"""`pdarts-ray presets` and `pdarts-ray search`."""
from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

from ..core.errors import UserError
from .common import add_common_flags, emit, format_cell, stdout_to_stderr


def cmd_presets(args) -> int:
    from ..core.config import PRESET_NOTES, SEARCH_PRESETS, SearchConfig, resolve, to_dict
    from ..evaluation.config import EVAL_PRESETS, EvalConfig

    rows = {name: {"kind": "search", "note": PRESET_NOTES.get(name, ""),
                   "config": to_dict(resolve(SearchConfig, SEARCH_PRESETS, name))} for name in SEARCH_PRESETS}
    rows.update({name: {"kind": "evaluate", "config": to_dict(resolve(EvalConfig, EVAL_PRESETS, name))}
                 for name in EVAL_PRESETS})
    if args.json:
        emit(args, rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    search = Table(title="search presets (pdarts-ray search --preset NAME)")
    for col in ("name", "cells", "ops", "skip dropout", "M", "epochs (warm-up)", "batch", "C", "data"):
        search.add_column(col, no_wrap=True)
    evaluate = Table(title="evaluation presets (pdarts-ray evaluate --preset NAME)")
    for col in ("name", "network", "C", "cells", "epochs", "batch", "lr", "data"):
        evaluate.add_column(col, no_wrap=True)
    for name, row in rows.items():
        c = row["config"]
        if row["kind"] == "search":
            search.add_row(name, "/".join(map(str, c["cells"])), "/".join(map(str, c["ops_kept"])),
                           "/".join(map(str, c["skip_dropout"])), str(c["skip_connects"]),
                           f"{c['epochs']} ({c['warmup_epochs']})", str(c["batch_size"]), str(c["channels"]),
                           c["dataset"])
        else:
            evaluate.add_row(name, c["network"], str(c["channels"]), str(c["layers"]), str(c["epochs"]),
                             str(c["batch_size"]), str(c["lr"]), c["dataset"])
    console.print(search)
    for name in SEARCH_PRESETS:
        console.print(f"  {name}: {PRESET_NOTES.get(name, '')}")
    console.print(evaluate)
    return 0



_SEARCH_CONFIG_FLAGS = ("preset", "config", "set", "dataset", "data_root", "download", "device", "seed", "out",
                        "dry_run")


def resolve_search_config(args):
    from ..core.config import SEARCH_PRESETS, SearchConfig, resolve

    flags = {"dataset": args.dataset, "data_root": args.data_root, "device": args.device, "seed": args.seed,
             "download": True if args.download else None}
    return resolve(SearchConfig, SEARCH_PRESETS, args.preset or "tiny", args.config, args.set, flags)


def cmd_search(args) -> int:
    from ..core.config import to_dict
    from ..core.search import ProgressiveSearch, resume_search, run_search
    from ..core.progress import SearchProgress

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _SEARCH_CONFIG_FLAGS if getattr(args, k) not in (None, False, [])]
        if given:
            raise UserError(f"search --resume: cannot be combined with {', '.join(given)} "
                            "(a resumed run keeps its saved config)")
        search = ProgressiveSearch.open(Path(args.resume))
        cfg, run_dir = search.cfg, search.run_dir
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
        run_dir = Path(args.out or f"pdarts-runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers: must be at least 1, got {args.workers}")
    workers = args.workers or 1
    if workers > 1 or args.ray:
        with stdout_to_stderr() if args.json else contextlib.nullcontext():  # Ray's workers print to fd 1
            result = _search_with_ray(args, cfg, run_dir, workers)
    else:
        stream = sys.stderr if args.json else sys.stdout
        hooks = None if args.quiet else SearchProgress(cfg.cells, cfg.ops_kept, cfg.epochs, cfg.warmup_epochs, stream)
        try:
            result = (resume_search(run_dir, hooks, args.take_over) if args.resume
                      else run_search(cfg, run_dir, hooks, args.take_over))
        finally:
            if hooks is not None:
                hooks.close()
    result = {"run_dir": str(run_dir), **result}
    if args.json:
        emit(args, result)
    elif not args.quiet:
        _print_search_summary(run_dir, result)
    return 0


def _search_with_ray(args, cfg, run_dir: Path, workers: int) -> dict:
    """The search as one Ray Train run of `workers` data-parallel workers (one with --ray)."""
    from ..core.claim import claim_folder
    from ..core.runtime import resolve_device
    from ..core.search import ProgressiveSearch, check_out_dir, check_same_workers, load_search_data
    from ..distributed.parallel_search import check_workers, pinned_threads, search_with_ray

    check_workers(cfg, workers)
    if args.resume:
        search = ProgressiveSearch.open(run_dir)
        if search.checkpoints.latest_path() is not None:
            check_same_workers(search.checkpoints.load(), workers, args.sync_bn, run_dir)
        with claim_folder(run_dir, "pdarts-ray search --resume", args.take_over):
            return search_with_ray(cfg, run_dir, workers, args.sync_bn, progress=not args.quiet)
    check_out_dir(run_dir)
    if workers == 1:
        resolve_device(cfg.device)  # with several workers, Ray's may see devices this process does not
    load_search_data(cfg)  # bad data fails here, before the run folder is written
    with claim_folder(run_dir, "pdarts-ray search", args.take_over):
        search = ProgressiveSearch.create(pinned_threads(cfg, workers), run_dir)
        return search_with_ray(search.cfg, run_dir, workers, args.sync_bn, progress=not args.quiet)


def _print_search_summary(run_dir: Path, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..core.checkpoint import read_jsonl
    from ..core.search import METRICS_FILE

    metrics = read_jsonl(run_dir / METRICS_FILE)
    table = Table(title="stages")
    for col in ("stage", "best valid acc", "final train acc", "skip-connects (unrefined)", "peak memory MiB",
                "seconds"):
        table.add_column(col, justify="right")
    for i, seconds in enumerate(result["stage_seconds"]):
        rows = [m for m in metrics if m["stage"] == i + 1]
        valid = [m["valid_acc"] for m in rows if m["valid_acc"] is not None]
        table.add_row(str(i + 1), f"{max(valid):.3f}" if valid else "-", f"{rows[-1]['train_acc']:.3f}",
                      str(result["stage_skip_connects_before_refinement"][i]),
                      f"{result['peak_memory_bytes'][i] / 2**20:.0f}", f"{seconds:.1f}")
    console = Console()
    console.print(table)
    g = result["genotype"]
    console.print(f"final genotype (M = {result['skip_connects']}, "
                  f"{result['skip_connects_before_refinement']} skip-connects before refinement):")
    console.print(f"  normal: {format_cell(g['normal'])}", highlight=False)
    console.print(f"  reduce: {format_cell(g['reduce'])}", highlight=False)
    console.print(f"run folder: {run_dir}")


def register(sub, groups) -> None:
    p = sub.add_parser("presets", help="list the config presets")
    add_common_flags(p)
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("search", help="run a progressive (three-stage) search",
                       description="Run a P-DARTS search. With no flags: the `tiny` preset on the bundled digits.")
    p.add_argument("--preset", help="base config: paper-c10, paper-c100, tiny (default), smoke")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of config keys (overrides the preset)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override one key (value read as YAML)")
    p.add_argument("--dataset", help="digits, synthetic, cifar10, cifar100, imagefolder")
    p.add_argument("--data-root", metavar="DIR", help="folder holding the dataset")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", metavar="DIR", help="run folder (default ./pdarts-runs/search-<time>); must be new or empty")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("--workers", type=int, metavar="N",
                   help="data-parallel workers of one search, as one Ray Train run (joins $RAY_ADDRESS, else a "
                        "local Ray); batch_size is the global batch and must divide by N")
    p.add_argument("--ray", action="store_true", help="run through Ray Train even with one worker")
    p.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=True,
                   help="with several workers, BatchNorm uses the global batch's statistics (default), so N "
                        "workers compute one worker's search up to rounding")
    p.add_argument("--take-over", action="store_true",
                   help="claim the run folder even if another driver holds it (one that is gone with its machine)")
    add_common_flags(p)
    p.set_defaults(func=cmd_search)
