"""`pdarts-ray bench`: the time and memory of one search step, and the memory model's
predictions."""

from __future__ import annotations

import argparse
import sys

from ..core.errors import UserError
from .common import Parser, add_common_flags, emit, names, print_table
from .search import DEFAULT_PRESET, resolve_search_config


def _bench_flags(args) -> list[str]:
    """The `bench step` flags given, to pass on to one process per stage."""
    flags = [
        "--batch",
        str(args.batch),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--image-size",
        str(args.image_size),
        "--kernels",
        args.kernels,
        "--dtype",
        args.dtype,
        "--masks",
        args.masks,
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--weight-steps",
        str(args.weight_steps),
    ]
    if args.channels_last is not None:
        flags.append("--channels-last" if args.channels_last else "--no-channels-last")
    if args.compile:
        flags.append("--compile")
    return flags


def _bench_config(args):
    from ..core.bench import bench_config

    for flag, value, low in (
        ("--batch", args.batch, 1),
        ("--steps", args.steps, 1),
        ("--warmup", args.warmup, 0),
        ("--weight-steps", args.weight_steps, 0),
        ("--threads", args.threads, 0),
        ("--image-size", args.image_size, 8),
    ):
        if value < low:
            raise UserError(f"{flag}: must be at least {low}, got {value}")
    channels_last = "auto" if args.channels_last is None else ("on" if args.channels_last else "off")
    return bench_config(
        batch=args.batch,
        device=args.device,
        image_size=args.image_size,
        kernels=args.kernels,
        dtype=args.dtype,
        channels_last=channels_last,
        compile=args.compile,
        threads=args.threads,
    )


def cmd_bench_step(args) -> int:
    from ..core.bench import bench_step

    cfg = _bench_config(args)
    if args.weight_steps > args.warmup + args.steps:
        raise UserError(f"--weight-steps: at most --warmup + --steps ({args.warmup + args.steps})")
    result = bench_step(
        args.stage,
        cfg,
        masks=args.masks,
        warmup=args.warmup,
        steps=args.steps,
        weight_steps=args.weight_steps,
    )
    emit(
        args,
        result,
        f"stage {result['stage']} batch {result['batch']} on {result['device']}: "
        f"{result['median_step_s']:.3f} s/step (median), "
        f"peak memory {result['peak_memory_bytes'] / 2**20:.0f} MiB",
    )
    return 0


def cmd_bench_all(args) -> int:
    from ..core.bench import bench_all

    _bench_config(args)  # bad flags fail here, before any process starts
    results = bench_all(_bench_flags(args))
    if args.json:
        emit(args, results)
        return 0
    from rich.table import Table

    table = Table(title=f"one search step (arch + weight), batch {args.batch}, masks {args.masks}")
    for col in ("stage", "cells", "device", "median s/step", "peak MiB"):
        table.add_column(col, justify="right")
    from ..core.bench import HARNESS_CELLS

    for r in results:
        table.add_row(
            str(r["stage"]),
            str(HARNESS_CELLS[r["stage"]]),
            r["device"],
            f"{r['median_step_s']:.3f}",
            f"{r['peak_memory_bytes'] / 2**20:.0f}",
        )
    if not args.quiet:
        print_table(table)
    return 0


def cmd_bench_ops(args) -> int:
    from ..core.config import KERNELS
    from ..core.opcount import COUNT_BATCH, count_step_ops

    kernels = [k.strip() for k in args.kernels_list.split(",") if k.strip()]
    for k in kernels:
        if k not in KERNELS:
            raise UserError(f"--kernels: unknown kernel path '{k}' (choose from {', '.join(KERNELS)})")
    if not kernels:
        raise UserError("--kernels: name at least one kernel path")
    stages = args.stage or [1, 2, 3]
    rows = [count_step_ops(stage, k) for stage in stages for k in kernels]
    if args.json:
        emit(args, rows)
        return 0
    from rich.table import Table

    table = Table(
        title=f"ATen calls per full search step (arch + weight, optimisers included), batch {COUNT_BATCH}, "
        "CPU; views apart"
    )
    table.add_column("stage", justify="right")
    table.add_column("cells", justify="right")
    for k in kernels:
        table.add_column(f"{k} calls", justify="right")
        table.add_column(f"{k} convolutions", justify="right")
    for stage in stages:
        mine = [r for r in rows if r["stage"] == stage]
        cells = [str(mine[0]["cells"])]
        table.add_row(str(stage), *cells, *[f"{v}" for r in mine for v in (r["calls"], r["convolutions"])])
    if not args.quiet:
        print_table(table)
    return 0


def _policy_text(env: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in env.items()) or "libgomp default"


def cmd_bench_contention(args) -> int:
    from ..core.contention import bench_contention

    _bench_config(args)  # bad flags fail here, before any process starts
    for flag, value, low in (("--busy", args.busy, 1), ("--pairs", args.pairs, 1)):
        if value < low:
            raise UserError(f"{flag}: must be at least {low}, got {value}")
    policies = tuple(p for p in args.policies.split(",") if p)
    progress = None if args.quiet else sys.stderr
    rows = bench_contention(
        _bench_flags(args),
        stages=tuple(args.stage or (1, 2, 3)),
        policies=policies,
        busy=args.busy,
        pairs=args.pairs,
        timeout_s=args.timeout,
        busy_nice=args.busy_nice,
        progress=progress,
    )
    if args.json:
        emit(args, rows)
        return 0
    from rich.table import Table

    fmt = lambda v, spec: "timed out" if v is None else format(v, spec)  # noqa: E731
    beside = f"{args.busy} busy core(s)" + (f" at nice {args.busy_nice}" if args.busy_nice else "")
    table = Table(
        title=f"a search step alone and beside {beside}, batch {args.batch}, "
        f"threads {args.threads or 'all'}, median of {args.pairs} pair(s)"
    )
    for col in ("stage", "policy", "alone s", "beside s", "slowdown", f"alone / {policies[0]}"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["stage"]),
            r["policy"],
            fmt(r["alone_s"], ".3f"),
            fmt(r["beside_s"], ".3f"),
            fmt(r["slowdown"], ".2f") + "x",
            fmt(r["alone_vs_baseline"], ".3f"),
        )
    if not args.quiet:
        print_table(table)
    return 0


def cmd_bench_predict(args) -> int:
    from ..core.bench import HARNESS_CELLS, HARNESS_DROPOUT, stage_switches
    from ..core.config import replace
    from ..core.memory_model import predict_stage
    from ..core.runtime import resolve_device

    if args.harness:
        cfg = _bench_config(args)
        cfg = replace(
            cfg,
            cells=[HARNESS_CELLS[s] for s in (1, 2, 3)],
            ops_kept=[8, 5, 3],
            skip_dropout=[HARNESS_DROPOUT[s] for s in (1, 2, 3)],
        )
        switches = [stage_switches(s, args.masks) for s in (1, 2, 3)]
        images = 0
        device = resolve_device(args.device).type
    else:
        cfg = resolve_search_config(args)
        switches = [None] * cfg.num_stages
        from ..core.search import load_search_data

        images = int(len(load_search_data(cfg).train_y))
        device = resolve_device(cfg.device).type
    rows = [
        predict_stage(cfg, s + 1, device, switches[s], dataset_images=images) for s in range(cfg.num_stages)
    ]
    text = "\n".join(
        f"stage {r['stage']}: {r['bytes'] / 2**20:.0f} MiB predicted peak on {device} "
        f"(" + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in r["parts"].items()) + ")"
        for r in rows
    )
    emit(args, rows, text)
    return 0


def cmd_bench_retrain_step(args) -> int:
    from ..evaluation.bench import bench_retrain_step
    from ..evaluation.genotypes import load_genotype

    for flag, value, low in (
        ("--batch", args.batch, 1),
        ("--steps", args.steps, 1),
        ("--warmup", args.warmup, 0),
        ("--threads", args.threads, 0),
        ("--channels", args.channels, 2),
        ("--layers", args.layers, 3),
    ):
        if value < low:
            raise UserError(f"{flag}: must be at least {low}, got {value}")
    name, genotype = load_genotype(args.genotype)
    try:
        result = bench_retrain_step(
            genotype,
            args.channels,
            args.layers,
            args.batch,
            args.device,
            args.threads,
            args.warmup,
            args.steps,
            args.channels_last,
        )
    except ValueError as err:
        raise UserError(f"--{err}") from None
    result = {"genotype": name, **result}
    emit(
        args,
        result,
        f"{name}, C={args.channels}, {args.layers} cells, batch {args.batch} on {result['device']}: "
        f"{result['median_step_s']:.3f} s/step (median), peak memory "
        f"{result['peak_memory_bytes'] / 2**20:.0f} MiB, "
        f"{result['flops']['train_step'] / 1e9:.1f} GFLOP/step, "
        f"{result['achieved_flop_per_s'] / 1e12:.3f} TFLOP/s",
    )
    return 0


def _add_bench_flags(p) -> None:
    from ..core.config import DTYPES, KERNELS

    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--masks",
        default="heavy",
        metavar="heavy|RUN_DIR",
        help="the official harness's op masks, or those a finished search used per stage",
    )
    p.add_argument("--kernels", choices=KERNELS, default=KERNELS[0])
    p.add_argument("--dtype", choices=DTYPES, default=DTYPES[0])
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="channels-last tensors (default: on CPU only)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the supernet")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up ones)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument(
        "--weight-steps",
        type=int,
        default=0,
        help="also time this many weight-only steps (adds weight_only_step_s)",
    )


def register(sub, groups) -> None:
    from ..core.config import DATASETS, SEARCH_PRESETS

    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench_command", metavar="COMMAND", parser_class=Parser)
    p = bsub.add_parser("step", help="time one full search step (arch + weight) of a stage's supernet")
    p.add_argument("--stage", type=int, choices=(1, 2, 3), required=True)
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_step)
    p = bsub.add_parser("all", help="`bench step` for stages 1-3, each in its own process, as one table")
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_all)
    from ..core.waiting import AUTO, DEFAULT_WAIT_POLICY, POLICY_NAMES, WAIT_POLICIES

    p = bsub.add_parser(
        "contention",
        help="`bench step` alone and beside busy cores, for each CPU wait policy",
        description="Time a full search step in a fresh process per wait policy (how idle OpenMP threads "
        "wait), alone and beside --busy busy cores this command starts and stops itself, as "
        "interleaved pairs. Policies: "
        + ", ".join(f"{k} ({_policy_text(v)})" for k, v in WAIT_POLICIES.items())
        + f", {AUTO} (spin or passive, as the machine looks when the process starts)"
        + f"; the default is {DEFAULT_WAIT_POLICY}.",
    )
    p.add_argument(
        "--stage",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="a stage to time (repeatable; default 1, 2 and 3)",
    )
    p.add_argument(
        "--policies",
        default=",".join(POLICY_NAMES),
        metavar="P1,P2,...",
        help="wait policies, the first being the baseline (default: all)",
    )
    p.add_argument("--busy", type=int, default=1, help="busy cores beside the step (default 1)")
    p.add_argument(
        "--busy-nice",
        type=int,
        default=0,
        choices=range(0, 20),
        metavar="0-19",
        help="niceness of the busy cores (default 0, work of equal priority; 19: background work)",
    )
    p.add_argument("--pairs", type=int, default=1, help="alone/beside pairs per policy (default 1)")
    p.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds one measurement may take before it is reported as timed out (default 900)",
    )
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_contention)
    p = bsub.add_parser(
        "ops",
        help="count the ATen calls (GPU kernel launches) of one full search step",
        description="Count the ATen operator calls one full search step (architecture step + "
        "weight step, optimisers and clipping included) dispatches, per stage and "
        "kernel path, on the harness supernets at batch 2 on CPU; views and metadata "
        "calls apart. On a GPU each call is at least one kernel launch.",
    )
    p.add_argument(
        "--stage",
        type=int,
        choices=(1, 2, 3),
        action="append",
        help="a stage to count (repeatable; default 1, 2 and 3)",
    )
    p.add_argument(
        "--kernels",
        dest="kernels_list",
        default="reference,lean,batched",
        metavar="K1,K2,...",
        help="kernel paths to count (default: reference,lean,batched)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_ops)
    p = bsub.add_parser(
        "predict",
        help="predict each stage's peak memory from a config (no training)",
        description="Predict each stage's peak memory. With a preset/config: for that search "
        "(unknown later-stage masks are taken at their heaviest). With --harness: "
        "for `bench step` with the same flags.",
    )
    p.add_argument("--preset", help=f"search preset: {names(SEARCH_PRESETS, DEFAULT_PRESET)}")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--dataset", help=names(DATASETS))
    p.add_argument("--data-root", metavar="DIR")
    p.add_argument("--seed", type=int)
    p.add_argument("--download", action="store_true")
    p.add_argument(
        "--harness", action="store_true", help="predict `bench step` (takes the bench flags below)"
    )
    _add_bench_flags(p)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_predict)
    p = bsub.add_parser(
        "retrain-step",
        help="time one retraining step of a genotype's evaluation network",
        description="One training step of the CIFAR evaluation network (SGD, auxiliary head, "
        "clipping) on random batches: seconds, peak memory and model FLOPs. Defaults: "
        "PDARTS, C=36, 20 cells, batch 128, as the official train_cifar.py.",
    )
    p.add_argument(
        "--genotype", default="PDARTS", help="a published name or a genotype file (default PDARTS)"
    )
    p.add_argument("--channels", type=int, default=36)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: every core)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (after the warm-up ones)")
    p.add_argument("--warmup", type=int, default=2)
    add_common_flags(p)
    p.set_defaults(func=cmd_bench_retrain_step)
    groups["bench"] = bsub
