"""Side by side in one process: the full search step of each kernel path, per stage.

    python benchmarks/kernel_paths.py [--stages 1,2,3] [--batch 32] [--kernels lean,batched]
        [--steps 4] [--warmup 1] [--threads 2] [--json-out FILE]

One harness stage (`pdarts_ray.core.bench.harness_stage`: 16 channels, 5/11/17 cells, the
official harness's masks and skip-dropout rates) is built per kernel path from the same seed;
the paths then take turns, step by step, on the same random batches, so that a machine's
drift touches every path alike. Reports each path's median seconds per full step
(architecture + weight step) and its ratio to the first path. Peak memory is a process's,
so it comes from `pdarts-ray bench step`, one process per stage and path.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from pdarts_ray.core.bench import bench_config, harness_stage
from pdarts_ray.core.runtime import memory_format, pin_threads


def side_by_side(stage: int, kernels: list[str], batch: int, steps: int, warmup: int, threads: int) -> dict:
    dev = torch.device("cpu")
    pin_threads(threads, dev, "--threads 1", "this benchmark")
    cfgs = {k: bench_config(batch=batch, device="cpu", kernels=k, threads=threads) for k in kernels}
    stages = {k: harness_stage(stage, cfg, dev) for k, cfg in cfgs.items()}
    fmt = memory_format("auto", dev)
    g = torch.Generator().manual_seed(0)

    def batch_pair():
        x = torch.randn(batch, 3, 32, 32, generator=g).contiguous(memory_format=fmt)
        return x, torch.randint(0, 10, (batch,), generator=g)

    times = {k: [] for k in kernels}
    for i in range(warmup + steps):
        (vx, vy), (x, y) = batch_pair(), batch_pair()
        for k in kernels if i % 2 == 0 else kernels[::-1]:  # alternate who goes first
            t0 = time.perf_counter()
            stages[k].arch_step(vx, vy)
            stages[k].weight_step(x, y)
            if i >= warmup:
                times[k].append(time.perf_counter() - t0)
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {
        "stage": stage,
        "batch": batch,
        "threads": threads,
        "steps": steps,
        "median_step_s": medians,
        "ratio_to_first": {k: medians[k] / medians[kernels[0]] for k in kernels},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", default="1,2,3")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--kernels", default="lean,batched")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    kernels = a.kernels.split(",")
    rows = []
    for stage in (int(s) for s in a.stages.split(",")):
        row = side_by_side(stage, kernels, a.batch, a.steps, a.warmup, a.threads)
        rows.append(row)
        print(
            f"stage {stage} batch {a.batch}: "
            + ", ".join(
                f"{k} {row['median_step_s'][k]:.3f} s ({row['ratio_to_first'][k]:.2f}x)" for k in kernels
            ),
            flush=True,
        )
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
