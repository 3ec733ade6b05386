"""`pdarts-ray bench step`: the time and memory of one full search step of a stage.

A full step is what every batch of a searching epoch does: an architecture step on
a valid batch, then a weight step on a train batch (first order). The supernets and
op masks are those of the official-code harness, so figures compare side by side:
16 channels; 5/11/17 cells; stage 1 all 8 ops, stage 2 {skip, sep 3x3, sep 5x5,
dil 3x3, dil 5x5}, stage 3 {skip, sep 3x3, sep 5x5} on every edge; skip dropout
0.1/0.4/0.7; random 32x32 inputs, 10 classes. Run one stage per process: the peak
memory is the process's.
"""
from __future__ import annotations

import statistics
import time

import torch

from .config import SearchConfig
from .memory import process_peak_rss_bytes
from .runtime import cpu_threads, memory_format, resolve_device
from .search import Stage, StagePlan
from .space import NUM_EDGES, PRIMITIVES

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


def bench_step(stage: int, batch: int = 32, device: str = "auto", warmup: int = 2, steps: int = 5,
               threads: int = 0, image_size: int = 32, seed: int = 0) -> dict:
    torch.set_num_threads(cpu_threads(threads))
    dev = resolve_device(device)
    cfg = SearchConfig(channels=16, batch_size=batch, image_size=image_size, seed=seed, device=str(dev))
    plan = StagePlan(index=stage - 1, cells=HARNESS_CELLS[stage], ops=len(HARNESS_OPS[stage]),
                     rate=HARNESS_DROPOUT[stage], last=stage == 3)
    switches = {"normal": harness_switches(stage), "reduce": harness_switches(stage)}
    net = Stage(cfg, plan, switches, num_classes=10, device=dev)
    net.model.set_skip_dropout(plan.rate)  # the rate at the first searching epoch
    net.model.train()
    g = torch.Generator().manual_seed(seed)

    def batch_pair():
        x = torch.randn(batch, 3, image_size, image_size, generator=g).to(dev)
        x = x.contiguous(memory_format=memory_format(cfg.channels_last, dev))
        return x, torch.randint(0, 10, (batch,), generator=g).to(dev)

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
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else process_peak_rss_bytes())
    return {"stage": stage, "batch": batch, "device": str(dev),
            "median_step_s": statistics.median(times[warmup:]), "peak_memory_bytes": int(peak)}
