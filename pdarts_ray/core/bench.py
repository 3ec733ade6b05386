"""`pdarts-ray bench`: the time and memory of one full search step of a stage.

A full step is what every batch of a searching epoch does: an architecture step on
a valid batch, then a weight step on a train batch (first order). By default the
supernets and op masks are those of the official-code harness, so figures compare
side by side: 16 channels; 5/11/17 cells; stage 1 all 8 ops, stage 2 {skip, sep 3x3,
sep 5x5, dil 3x3, dil 5x5}, stage 3 {skip, sep 3x3, sep 5x5} on every edge; skip dropout
0.1/0.4/0.7; random inputs, 10 classes. `masks=RUN_DIR` takes instead the pruned masks
a finished search used in each stage. Run one stage per process: the peak memory is the
process's (peak resident set on CPU, CUDA max allocated on GPU).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from .config import SearchConfig
from .errors import UserError
from .memory import process_peak_rss_bytes
from .run_folder import ALPHAS_FILE
from .runtime import memory_format, pin_threads, resolve_device
from .search import Stage, StagePlan
from .space import NUM_EDGES, PRIMITIVES
from .waiting import OPENMP_KEYS

HARNESS_OPS = {
    1: list(PRIMITIVES),
    2: ["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"],
    3: ["skip_connect", "sep_conv_3x3", "sep_conv_5x5"],
}
HARNESS_CELLS = {1: 5, 2: 11, 3: 17}
HARNESS_DROPOUT = {1: 0.1, 2: 0.4, 3: 0.7}


def harness_switches(stage: int) -> list[list[bool]]:
    row = [p in HARNESS_OPS[stage] for p in PRIMITIVES]
    return [list(row) for _ in range(NUM_EDGES)]


def stage_switches(stage: int, masks: str = "heavy") -> dict:
    """The op masks of a stage: the harness's ("heavy") or a finished run's."""
    if masks == "heavy":
        return {"normal": harness_switches(stage), "reduce": harness_switches(stage)}
    path = Path(masks) / ALPHAS_FILE
    try:
        alphas = json.loads(path.read_text())
        return {cell: alphas[f"stage{stage}"][cell]["switches"] for cell in ("normal", "reduce")}
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise UserError(
            f"--masks {masks}: no stage-{stage} switches in {path} (a finished search run folder?)"
        ) from None


def bench_config(
    batch: int = 32,
    device: str = "auto",
    image_size: int = 32,
    kernels: str = "lean",
    dtype: str = "float32",
    channels_last: str = "auto",
    compile: bool = False,
    threads: int = 0,
    seed: int = 0,
) -> SearchConfig:
    return SearchConfig(
        channels=16,
        batch_size=batch,
        image_size=image_size,
        seed=seed,
        device=device,
        kernels=kernels,
        dtype=dtype,
        channels_last=channels_last,
        compile=compile,
        threads=threads,
    ).validate()


def harness_stage(
    stage: int,
    cfg: SearchConfig,
    device: torch.device,
    masks: str = "heavy",
    cells: int | None = None,
    rate: float | None = None,
    ranks=None,
) -> Stage:
    """A stage's supernet as the benchmarks time it: the harness's (or a run's) op masks, the
    harness's cells and skip-dropout rate unless given, in training mode."""
    switches = stage_switches(stage, masks)
    plan = StagePlan(
        index=stage - 1,
        cells=HARNESS_CELLS[stage] if cells is None else cells,
        ops=sum(switches["normal"][0]),
        skip_dropout_rate=HARNESS_DROPOUT[stage] if rate is None else rate,
        last=stage == 3,
    )
    net = Stage(cfg, plan, switches, num_classes=10, device=device, ranks=ranks)
    net.model.set_skip_dropout(plan.skip_dropout_rate)  # the rate at the first searching epoch
    net.model.train()
    return net


def bench_step(
    stage: int,
    cfg: SearchConfig,
    masks: str = "heavy",
    warmup: int = 2,
    steps: int = 5,
    weight_steps: int = 0,
) -> dict:
    """Median seconds of a full step, and the peak memory; with `weight_steps`, also the
    median of a weight-only step (the warm-up epochs' step), timed after the full steps."""
    dev = resolve_device(cfg.device)
    pin_threads(cfg.threads, dev, "--threads 1", "this benchmark")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the official search does
    net = harness_stage(stage, cfg, dev, masks)
    g = torch.Generator().manual_seed(cfg.seed)
    fmt = memory_format(cfg.channels_last, dev, cfg.image_size)

    def batch_pair():
        x = torch.randn(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=g)
        return x.to(dev).contiguous(memory_format=fmt), torch.randint(
            0, 10, (cfg.batch_size,), generator=g
        ).to(dev)

    data = [(batch_pair(), batch_pair()) for _ in range(warmup + steps)]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for (vx, vy), (x, y) in data:
        t0 = time.perf_counter()
        net.arch_step(vx, vy)
        net.weight_step(x, y)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else process_peak_rss_bytes()
    median = statistics.median(times[warmup:])
    flops = step_flops(stage, cfg, masks)
    result = {
        "stage": stage,
        "batch": cfg.batch_size,
        "device": str(dev),
        "median_step_s": median,
        "openmp_env": {k: os.environ.get(k) for k in OPENMP_KEYS},
        "peak_memory_bytes": int(peak),
        "flops": flops,
        "achieved_flop_per_s": flops["full_step"] / median,
    }
    if weight_steps:
        weight_times = []
        for _, (x, y) in data[:weight_steps]:
            t0 = time.perf_counter()
            net.weight_step(x, y)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            weight_times.append(time.perf_counter() - t0)
        result["weight_only_step_s"] = statistics.median(weight_times)
    return result


FLOP_COUNT_BATCH = 2


def step_flops(stage: int, cfg: SearchConfig, masks: str = "heavy") -> dict:
    """Model floating-point operations of one full step of a stage's supernet (a multiply-add
    counts 2; convolutions and matrix products, as PyTorch's FlopCounterMode counts them).

    The forward pass F is counted on the reference kernels (the supernet's arithmetic, not the
    lean kernels' recomputation), on CPU at batch FLOP_COUNT_BATCH and scaled to the batch:
    every counted operation is linear in the batch. The backward passes are model counts, as
    training FLOPs are usually stated: the weight step is F + 2F (gradients of the inputs and
    of the weights), the architecture step F + F (first order: the gradient reaches the alphas
    through the activations; the weights' gradients are not needed). FlopCounterMode's own
    backward count is not used: it takes a depthwise convolution's input gradient for a full
    convolution's (C times too many), and the supernet's separable convolutions are depthwise.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from .config import replace

    small = replace(
        cfg,
        batch_size=FLOP_COUNT_BATCH,
        device="cpu",
        kernels="reference",
        dtype="float32",
        compile=False,
        channels_last="off",
    )
    net = harness_stage(stage, small, torch.device("cpu"), masks)
    x = torch.randn(
        FLOP_COUNT_BATCH, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net.forward(x, arch_grad=False, weight_grad=False)
    forward = int(round(counter.get_total_flops() * cfg.batch_size / FLOP_COUNT_BATCH))
    return {
        "forward": forward,
        "arch_step": 2 * forward,
        "weight_step": 3 * forward,
        "full_step": 5 * forward,
        "batch": cfg.batch_size,
    }


def projected_search_hours(
    full_step_s: list[float],
    weight_step_s: list[float],
    train_images: int = 25_000,
    batch: int = 96,
    epochs: int = 25,
    warmup: int = 10,
) -> float:
    """Hours of a whole search from per-stage step times: warm-up epochs run weight steps
    only, the others full steps (validation passes not counted)."""
    steps = -(-train_images // batch)
    return (
        sum(steps * (warmup * w + (epochs - warmup) * f) for f, w in zip(full_step_s, weight_step_s)) / 3600
    )


def bench_step_process(
    stage: int, argv: list[str], env: dict | None = None, timeout_s: float | None = None, label: str = ""
) -> dict:
    """`bench step --stage S --json ARGV` in a fresh process; its failure is one line
    (subprocess.TimeoutExpired past `timeout_s`)."""
    cmd = [sys.executable, "-m", "pdarts_ray.cli", "bench", "step", "--stage", str(stage), "--json", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["failed"]
        raise UserError(f"bench step --stage {stage}{label}: {lines[-1]}")
    return json.loads(proc.stdout)


def bench_all(argv: list[str], stages=(1, 2, 3)) -> list[dict]:
    """`bench step` for every stage, each in a fresh process (so peaks do not mix)."""
    return [bench_step_process(stage, argv) for stage in stages]
