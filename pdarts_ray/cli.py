"""The `pdarts-ray` command line.

Every command has --help, --json (JSON and nothing else on stdout) and --quiet.
Bad input is one line on stderr and exit code 2, with nothing written.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from . import __version__
from .errors import SearchDiverged, UserError


# Modules that add commands: each has `register(subparsers, groups)`, where groups maps
# a command group ("genotype", "bench") to its subparsers.
COMMAND_MODULES: tuple[str, ...] = ("pdarts_ray.evaluate_cli", "pdarts_ray.results_cli", "pdarts_ray.sweep_cli",
                                     "pdarts_ray.plot_cli", "pdarts_ray.reproduce_cli")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2)."""

    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON and nothing else on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def emit(args, data, text: str | None = None) -> None:
    """JSON on stdout with --json; otherwise `text` unless --quiet."""
    if args.json:
        print(json.dumps(data, indent=1))
    elif text is not None and not args.quiet:
        print(text)


def read_json_object(path: str) -> dict:
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except OSError as err:
        raise UserError(f"{p}: cannot read ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a JSON object")
    return data


# ---------------------------------------------------------------- presets

def cmd_presets(args) -> int:
    from .config import PRESET_NOTES, SEARCH_PRESETS, SearchConfig, resolve, to_dict
    from .eval_config import EVAL_PRESETS, EvalConfig

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


# ---------------------------------------------------------------- search

_SEARCH_CONFIG_FLAGS = ("preset", "config", "set", "dataset", "data_root", "download", "device", "seed", "out",
                        "dry_run")


def _resolve_search_config(args):
    from .config import SEARCH_PRESETS, SearchConfig, resolve

    flags = {"dataset": args.dataset, "data_root": args.data_root, "device": args.device, "seed": args.seed,
             "download": True if args.download else None}
    return resolve(SearchConfig, SEARCH_PRESETS, args.preset or "tiny", args.config, args.set, flags)


def cmd_search(args) -> int:
    from .config import to_dict
    from .progress import SearchProgress
    from .search import ProgressiveSearch, resume_search, run_search

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _SEARCH_CONFIG_FLAGS if getattr(args, k) not in (None, False, [])]
        if given:
            raise UserError(f"search --resume: cannot be combined with {', '.join(given)} "
                            "(a resumed run keeps its saved config)")
        search = ProgressiveSearch.open(Path(args.resume))
        cfg, run_dir = search.cfg, search.run_dir
    else:
        cfg = _resolve_search_config(args)
        if args.dry_run:
            resolved = to_dict(cfg)
            if args.json:
                emit(args, resolved)
            else:
                import yaml

                print(yaml.safe_dump(resolved, sort_keys=False).rstrip())
            return 0
        run_dir = Path(args.out or f"pdarts-runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
    stream = sys.stderr if args.json else sys.stdout
    hooks = None if args.quiet else SearchProgress(cfg.cells, cfg.ops_kept, cfg.epochs, cfg.warmup_epochs, stream)
    try:
        result = resume_search(run_dir, hooks) if args.resume else run_search(cfg, run_dir, hooks)
    finally:
        if hooks is not None:
            hooks.close()
    result = {"run_dir": str(run_dir), **result}
    if args.json:
        emit(args, result)
    elif not args.quiet:
        _print_search_summary(run_dir, result)
    return 0


def _print_search_summary(run_dir: Path, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from .checkpoint import read_jsonl
    from .search import METRICS_FILE

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


# ---------------------------------------------------------------- genotype

def format_cell(genes) -> str:
    """`n0 = sep_conv_3x3(c_k-2) + skip_connect(c_k-1); n1 = ...`: one node after another."""
    name = lambda j: ("c_k-2", "c_k-1")[j] if j < 2 else f"n{j - 2}"  # noqa: E731
    return "; ".join(f"n{i // 2} = {genes[i][0]}({name(genes[i][1])}) + {genes[i + 1][0]}({name(genes[i + 1][1])})"
                     for i in range(0, len(genes), 2))


def _read_state(path: str):
    from .space import PRIMITIVES, CellState

    data = read_json_object(path)
    if "primitives" in data and list(data["primitives"]) != list(PRIMITIVES):
        raise UserError(f"{path}: primitives differ from pdarts-ray's ({', '.join(PRIMITIVES)})")
    try:
        return CellState.from_dict(data.get("normal"), "normal"), CellState.from_dict(data.get("reduce"), "reduce")
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None


def cmd_genotype_derive(args) -> int:
    from .space import derive

    normal, reduce = _read_state(args.state)
    if args.skip_connects is not None and not 0 <= args.skip_connects <= 8:
        raise UserError(f"--skip-connects: must be in 0..8, got {args.skip_connects}")
    genotype = derive(normal, reduce, args.skip_connects).to_dict()
    emit(args, genotype, f"normal: {format_cell(genotype['normal'])}\nreduce: {format_cell(genotype['reduce'])}")
    return 0


def cmd_genotype_prune(args) -> int:
    from .space import prune_switches

    normal, reduce = _read_state(args.state)
    out = {}
    for name, cell in (("normal", normal), ("reduce", reduce)):
        n_on = sum(cell.switches[0])
        if not 0 <= args.drop < n_on:
            raise UserError(f"--drop: {name} edges have {n_on} ops on; can drop 0..{n_on - 1}, got {args.drop}")
        out[f"switches_{name}"] = prune_switches(cell.switches, cell.alphas, args.drop, args.last_stage)
    text = "\n".join(f"{k}:\n" + "\n".join("  " + "".join("x" if v else "." for v in row) for row in rows)
                     for k, rows in out.items())
    emit(args, out, text)
    return 0


# ---------------------------------------------------------------- bench

def _bench_flags(args) -> list[str]:
    """The `bench step` flags given, to pass on to one process per stage."""
    flags = ["--batch", str(args.batch), "--device", args.device, "--threads", str(args.threads),
             "--image-size", str(args.image_size), "--kernels", args.kernels, "--dtype", args.dtype,
             "--masks", args.masks, "--steps", str(args.steps), "--warmup", str(args.warmup),
             "--weight-steps", str(args.weight_steps)]
    if args.channels_last is not None:
        flags.append("--channels-last" if args.channels_last else "--no-channels-last")
    if args.compile:
        flags.append("--compile")
    return flags


def _bench_config(args):
    from .bench import bench_config

    for flag, value, low in (("--batch", args.batch, 1), ("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                             ("--weight-steps", args.weight_steps, 0),
                             ("--threads", args.threads, 0), ("--image-size", args.image_size, 8)):
        if value < low:
            raise UserError(f"{flag}: must be at least {low}, got {value}")
    channels_last = "auto" if args.channels_last is None else ("on" if args.channels_last else "off")
    return bench_config(batch=args.batch, device=args.device, image_size=args.image_size, kernels=args.kernels,
                        dtype=args.dtype, channels_last=channels_last, compile=args.compile, threads=args.threads)


def cmd_bench_step(args) -> int:
    from .bench import bench_step

    cfg = _bench_config(args)
    if args.weight_steps > args.warmup + args.steps:
        raise UserError(f"--weight-steps: at most --warmup + --steps ({args.warmup + args.steps})")
    result = bench_step(args.stage, cfg, masks=args.masks, warmup=args.warmup, steps=args.steps,
                        weight_steps=args.weight_steps)
    emit(args, result, f"stage {result['stage']} batch {result['batch']} on {result['device']}: "
                       f"{result['median_step_s']:.3f} s/step (median), "
                       f"peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB")
    return 0


def cmd_bench_all(args) -> int:
    from .bench import bench_all

    _bench_config(args)  # bad flags fail here, before any process starts
    results = bench_all(_bench_flags(args))
    if args.json:
        emit(args, results)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"one search step (arch + weight), batch {args.batch}, masks {args.masks}")
    for col in ("stage", "cells", "device", "median s/step", "peak MiB"):
        table.add_column(col, justify="right")
    from .bench import HARNESS_CELLS

    for r in results:
        table.add_row(str(r["stage"]), str(HARNESS_CELLS[r["stage"]]), r["device"], f"{r['median_step_s']:.3f}",
                      f"{r['peak_memory_bytes'] / 2**20:.0f}")
    if not args.quiet:
        Console().print(table)
    return 0


def cmd_bench_predict(args) -> int:
    from .bench import HARNESS_CELLS, HARNESS_DROPOUT, stage_switches
    from .config import replace
    from .memory_model import predict_stage
    from .runtime import resolve_device

    if args.harness:
        cfg = _bench_config(args)
        cfg = replace(cfg, cells=[HARNESS_CELLS[s] for s in (1, 2, 3)], ops_kept=[8, 5, 3],
                      skip_dropout=[HARNESS_DROPOUT[s] for s in (1, 2, 3)])
        switches = [stage_switches(s, args.masks) for s in (1, 2, 3)]
        images = 0
        device = resolve_device(args.device).type
    else:
        cfg = _resolve_search_config(args)
        switches = [None] * cfg.num_stages
        from .search import load_search_data

        images = int(len(load_search_data(cfg).train_y))
        device = resolve_device(cfg.device).type
    rows = [predict_stage(cfg, s + 1, device, switches[s], dataset_images=images)
            for s in range(cfg.num_stages)]
    text = "\n".join(f"stage {r['stage']}: {r['bytes'] / 2**20:.0f} MiB predicted peak on {device} "
                     f"(" + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in r["parts"].items()) + ")" for r in rows)
    emit(args, rows, text)
    return 0


def _add_bench_flags(p) -> None:
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--masks", default="heavy", metavar="heavy|RUN_DIR",
                   help="the official harness's op masks, or those a finished search used per stage")
    p.add_argument("--kernels", choices=("lean", "reference"), default="lean")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels-last tensors (default: on CPU only)")
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up ones)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--weight-steps", type=int, default=0,
                   help="also time this many weight-only steps (adds weight_only_step_s)")


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pdarts-ray", description="P-DARTS architecture search, locally or on a Ray cluster.")
    parser.add_argument("--version", action="version", version=f"pdarts-ray {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    add_common_flags(p)
    p.set_defaults(func=cmd_search)

    g = sub.add_parser("genotype", help="derive, prune and inspect genotypes")
    gsub = g.add_subparsers(dest="genotype_command", metavar="COMMAND", parser_class=_Parser)
    p = gsub.add_parser("derive", help="the genotype of a final-stage state (switches + alphas)")
    p.add_argument("state", metavar="STATE.json")
    p.add_argument("--skip-connects", type=int, metavar="M", help="refine the normal cell to at most M skip-connects")
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_derive)
    p = gsub.add_parser("prune", help="drop the weakest ops of every edge (between stages)")
    p.add_argument("state", metavar="STATE.json")
    p.add_argument("--drop", type=int, required=True, metavar="N", help="ops to drop per edge")
    p.add_argument("--last-stage", action="store_true", help="`none` goes first and counts as a drop")
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_prune)

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", metavar="COMMAND", parser_class=_Parser)
    p = bsub.add_parser("step", help="time one full search step (arch + weight) of a stage's supernet")
    p.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_step)
    p = bsub.add_parser("all", help="`bench step` for stages 1-3, each in its own process, as one table")
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_all)
    p = bsub.add_parser("predict", help="predict each stage's peak memory from a config (no training)",
                        description="Predict each stage's peak memory. With a preset/config: for that search "
                                    "(unknown later-stage masks are taken at their heaviest). With --harness: "
                                    "for `bench step` with the same flags.")
    p.add_argument("--preset", help="search preset (default tiny)")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--dataset")
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--seed", type=int)
    p.add_argument("--download", action="store_true")
    p.add_argument("--harness", action="store_true", help="predict `bench step` (takes the bench flags below)")
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_predict)

    groups = {"genotype": gsub, "bench": bsub}
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub, groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
