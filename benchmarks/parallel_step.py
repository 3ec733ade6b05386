"""What a data-parallel search step costs and sends: one process against N gloo ranks.

    python benchmarks/parallel_step.py [--preset tiny] [--workers 2] [--stages 1 2 3]
                                       [--steps 5] [--warmup 1] [--no-sync-bn] [--json]

Per stage of the preset (its cells, its image size, its global batch, the ops a stage keeps),
the median time of one search step (architecture step + weight step) run three ways:
- one process with N threads and the preset's kernels (what `pdarts-ray search` runs);
- one process with N threads and the reference kernels (the module path, which synchronised
  BatchNorm needs), to separate the kernels' share of the difference;
- N ranks of one thread each, each on its slice of the global batch (what
  `search --workers N` runs), with every `all_reduce` counted per step: calls, bytes and the
  seconds spent inside them.
The gradients' share of the bytes is 4 x (weights + alphas) per step; the rest, with
`sync_bn`, are the BatchNorm statistics of the global batch (forward and backward).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pdarts_ray.core.bench import harness_stage
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, from_dict, replace, resolve, to_dict
from pdarts_ray.core.parallel import Ranks
from pdarts_ray.core.stage import Stage

CLASSES = 10


def stage_of(cfg: SearchConfig, stage: int, ranks: Ranks | None = None) -> Stage:
    """The harness's op masks with the preset's cells and skip-dropout rate."""
    return harness_stage(
        stage,
        cfg,
        torch.device("cpu"),
        cells=cfg.cells[stage - 1],
        rate=cfg.skip_dropout[stage - 1],
        ranks=ranks,
    )


def batches(cfg: SearchConfig, count: int, part: slice) -> list:
    """The same global batches on every rank; each takes its slice."""
    g = torch.Generator().manual_seed(0)
    n, s = cfg.batch_size, cfg.image_size
    out = []
    for _ in range(count):
        vx, x = torch.randn(n, 3, s, s, generator=g), torch.randn(n, 3, s, s, generator=g)
        vy, y = torch.randint(0, CLASSES, (n,), generator=g), torch.randint(0, CLASSES, (n,), generator=g)
        out.append((vx[part], vy[part], x[part], y[part]))
    return out


class Tally:
    """Wraps dist.all_reduce: calls, bytes and seconds since the last reset."""

    def __init__(self):
        self.inner = dist.all_reduce
        self.reset()
        dist.all_reduce = self

    def reset(self):
        self.calls, self.bytes, self.seconds = 0, 0, 0.0

    def __call__(self, tensor, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.inner(tensor, *args, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.bytes += tensor.numel() * tensor.element_size()
        return out


def timed_steps(net: Stage, data: list, warmup: int, batch: int, tally: Tally | None = None) -> dict:
    times, per_step = [], []
    for i, (vx, vy, x, y) in enumerate(data):
        if tally is not None:
            tally.reset()
        t0 = time.perf_counter()
        net.arch_step(vx, vy, batch)
        net.weight_step(x, y, batch)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            if tally is not None:
                per_step.append((tally.calls, tally.bytes, tally.seconds))
    out = {"median_step_s": statistics.median(times)}
    if tally is not None:
        calls, sent, seconds = zip(*per_step)
        out.update(
            allreduce_calls=statistics.median(calls),
            allreduce_bytes=statistics.median(sent),
            allreduce_s=statistics.median(seconds),
        )
    return out


def one_process(cfg: SearchConfig, stage: int, steps: int, warmup: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    data = batches(cfg, warmup + steps, slice(None))
    out = {}
    for kernels in sorted({cfg.kernels, "reference"}):
        out[kernels] = timed_steps(
            stage_of(replace(cfg, kernels=kernels), stage), data, warmup, cfg.batch_size
        )
    return out


def _rank(rank, world, init, out_dir, cfg_dict, stage, steps, warmup, sync_bn):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg = from_dict(SearchConfig, cfg_dict, "config")
        ranks = Ranks(sync_bn=sync_bn)
        net = stage_of(cfg, stage, ranks)
        tally = Tally()
        result = timed_steps(
            net, batches(cfg, warmup + steps, ranks.part(cfg.batch_size)), warmup, cfg.batch_size, tally
        )
        result["gradient_bytes"] = 4 * sum(p.numel() for p in net.weights + net.alphas)
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def ranks_run(cfg: SearchConfig, stage: int, steps: int, warmup: int, workers: int, sync_bn: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(
            _rank,
            args=(workers, f"file://{tmp}/init", tmp, to_dict(cfg), stage, steps, warmup, sync_bn),
            nprocs=workers,
            join=True,
        )
        rows = [json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(workers)]
    slowest = max(rows, key=lambda r: r["median_step_s"])
    return {**slowest, "per_rank_step_s": [r["median_step_s"] for r in rows]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(SEARCH_PRESETS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-sync-bn", dest="sync_bn", action="store_false")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.workers < 2 or a.steps < 1 or a.warmup < 0:
        print("error: --workers must be at least 2, --steps at least 1, --warmup at least 0", file=sys.stderr)
        return 2
    cfg = resolve(SearchConfig, SEARCH_PRESETS, a.preset, sets=[f"threads={a.workers}"])
    if cfg.batch_size % a.workers:
        print(
            f"error: the {a.preset} batch ({cfg.batch_size}) does not divide among {a.workers} workers",
            file=sys.stderr,
        )
        return 2
    rows = []
    for stage in a.stages:
        single = one_process(cfg, stage, a.steps, a.warmup, a.workers)
        parallel = ranks_run(cfg, stage, a.steps, a.warmup, a.workers, a.sync_bn)
        rows.append(
            {
                "stage": stage,
                "one_process": single,
                "ranks": parallel,
                "ratio_to_one_process": parallel["median_step_s"] / single[cfg.kernels]["median_step_s"],
            }
        )
        if not a.json:
            r = parallel
            print(
                f"stage {stage}: one process {single[cfg.kernels]['median_step_s']:.3f} s "
                f"({cfg.kernels}), {single['reference']['median_step_s']:.3f} s (reference); "
                f"{a.workers} ranks {r['median_step_s']:.3f} s, of which all_reduce {r['allreduce_s']:.3f} s "
                f"in {r['allreduce_calls']:.0f} calls, {r['allreduce_bytes'] / 2**20:.2f} MiB "
                f"(gradients {r['gradient_bytes'] / 2**20:.2f} MiB)",
                flush=True,
            )
    result = {
        "preset": a.preset,
        "workers": a.workers,
        "sync_bn": a.sync_bn,
        "batch": cfg.batch_size,
        "steps": a.steps,
        "threads_per_rank": 1,
        "threads_one_process": a.workers,
        "torch": torch.__version__,
        "rows": rows,
    }
    if a.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
