"""Side by side: one full P-DARTS search step of the official implementation and of
pdarts-ray, per stage, on the same machine in one run (CPU or CUDA).

    python benchmarks/official_side_by_side.py PATH_TO_OFFICIAL_CHECKOUT [--device cpu|cuda]
        [--stages 1,2,3] [--batch 32] [--rounds 3] [--threads 2] [--json-out FILE]

PATH_TO_OFFICIAL_CHECKOUT is a checkout of github.com/chenxin061/pdarts; its modules
(model_search, operations, genotypes) are imported from there, unmodified. A step is
what its train() does per batch in a searching epoch: an architecture step on a valid
batch (Adam, alpha grads clipped to 5) then a weight step on a train batch (SGD, clipped
to 5), both in train mode. Both sides use the official-code harness's supernets and
masks (16 channels; 5/11/17 cells; stage 1 all 8 ops, stage 2 skip/sep/dil, stage 3
skip/sep 3x3/sep 5x5), skip dropout 0.1/0.4/0.7, random 32x32 inputs, 10 classes.

Every measurement runs in its own process, official and ours alternating, `--rounds`
times; the table reports medians over rounds of each process's median step time (after
warm-up) and its peak memory: peak resident set on CPU, CUDA max allocated on GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CELLS = {1: 5, 2: 11, 3: 17}
OPS = {
    1: [
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    ],
    2: ["skip_connect", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"],
    3: ["skip_connect", "sep_conv_3x3", "sep_conv_5x5"],
}
RATE = {1: 0.1, 2: 0.4, 3: 0.7}


def official_step_worker(a) -> dict:
    """Time the official supernet's step in this process."""
    import resource

    import numpy as np
    import torch
    import torch.nn as nn

    torch.set_num_threads(a.threads)
    sys.path.insert(0, os.path.abspath(a.official))
    from genotypes import PRIMITIVES  # noqa: E402  (the official modules)
    from model_search import Network  # noqa: E402

    device = torch.device(a.device)
    torch.manual_seed(0)
    np.random.seed(0)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train_search.py
    row = [p in OPS[a.stage] for p in PRIMITIVES]
    switches = [list(row) for _ in range(14)]
    criterion = nn.CrossEntropyLoss().to(device)
    model = Network(
        16,
        10,
        CELLS[a.stage],
        criterion,
        switches_normal=switches,
        switches_reduce=[list(r) for r in switches],
        p=RATE[a.stage],
    )
    model = nn.DataParallel(model).to(device)
    model.module.p = RATE[a.stage]  # the rate of the first searching epoch
    model.module.update_p()
    weights = [v for k, v in model.named_parameters() if not k.endswith(("alphas_normal", "alphas_reduce"))]
    lr = 0.025 * (1 + np.cos(np.pi * 11 / 25)) / 2
    opt_w = torch.optim.SGD(weights, lr, momentum=0.9, weight_decay=3e-4)
    opt_a = torch.optim.Adam(model.module.arch_parameters(), lr=6e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    batches = _batches(a, torch, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for (vx, vy), (x, y) in batches:
        t0 = time.perf_counter()
        model.train()
        opt_a.zero_grad()
        criterion(model(vx), vy).backward()
        nn.utils.clip_grad_norm_(model.module.arch_parameters(), 5)
        opt_a.step()
        opt_w.zero_grad()
        logits = model(x)
        loss = criterion(logits, y)
        loss.backward()
        nn.utils.clip_grad_norm_(weights, 5)
        opt_w.step()
        logits.topk(5, 1)  # the accuracy the loop computes
        loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    peak = (
        torch.cuda.max_memory_allocated(device)
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    )
    result = {
        "stage": a.stage,
        "batch": a.batch,
        "device": str(device),
        "median_step_s": statistics.median(times[a.warmup :]),
        "peak_memory_bytes": int(peak),
    }
    if a.weight_steps:  # the warm-up epochs' step: weights only
        weight_times = []
        for _, (x, y) in batches[: a.weight_steps]:
            t0 = time.perf_counter()
            opt_w.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            nn.utils.clip_grad_norm_(weights, 5)
            opt_w.step()
            loss.item()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            weight_times.append(time.perf_counter() - t0)
        result["weight_only_step_s"] = statistics.median(weight_times)
    return result


def _batches(a, torch, device):
    g = torch.Generator().manual_seed(0)

    def one():
        return (
            torch.randn(a.batch, 3, 32, 32, generator=g).to(device),
            torch.randint(0, 10, (a.batch,), generator=g).to(device),
        )

    return [(one(), one()) for _ in range(a.warmup + a.steps)]


def _run(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("official", help="path of a checkout of the official P-DARTS code")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--stages", default="1,2,3")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--weight-steps",
        type=int,
        default=0,
        help="also time weight-only steps and project a whole paper search (hours)",
    )
    ap.add_argument(
        "--ours-args", default="", help="extra flags for `pdarts-ray bench step` (e.g. --kernels reference)"
    )
    ap.add_argument("--json-out")
    ap.add_argument("--worker", choices=["official"], help=argparse.SUPPRESS)
    ap.add_argument("--stage", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(official_step_worker(a)))
        return
    common = [
        "--batch",
        str(a.batch),
        "--device",
        a.device,
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--weight-steps",
        str(a.weight_steps),
    ]
    rows = []
    for stage in [int(s) for s in a.stages.split(",")]:
        official, ours = [], []
        for _ in range(a.rounds):
            official.append(
                _run(
                    [
                        sys.executable,
                        os.path.abspath(__file__),
                        a.official,
                        "--worker",
                        "official",
                        "--stage",
                        str(stage),
                        "--threads",
                        str(a.threads),
                        *common,
                    ]
                )
            )
            ours.append(
                _run(
                    [
                        sys.executable,
                        "-m",
                        "pdarts_ray.cli",
                        "bench",
                        "step",
                        "--stage",
                        str(stage),
                        "--threads",
                        str(a.threads),
                        "--json",
                        *common,
                        *a.ours_args.split(),
                    ]
                )
            )
        med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
        row = {
            "stage": stage,
            "official_s": med(official, "median_step_s"),
            "ours_s": med(ours, "median_step_s"),
            "official_mib": med(official, "peak_memory_bytes") / 2**20,
            "ours_mib": med(ours, "peak_memory_bytes") / 2**20,
            "official_runs": official,
            "ours_runs": ours,
        }
        if a.weight_steps:
            row["official_weight_s"] = med(official, "weight_only_step_s")
            row["ours_weight_s"] = med(ours, "weight_only_step_s")
        row["time_ratio"] = row["ours_s"] / row["official_s"]
        row["memory_ratio"] = row["ours_mib"] / row["official_mib"]
        rows.append(row)
        print(
            f"stage {stage}: official {row['official_s']:.3f} s, ours {row['ours_s']:.3f} s "
            f"(x{row['time_ratio']:.2f}); official {row['official_mib']:.0f} MiB, "
            f"ours {row['ours_mib']:.0f} MiB "
            f"(x{row['memory_ratio']:.2f})",
            file=sys.stderr,
            flush=True,
        )
    unit = "CUDA max allocated" if a.device.startswith("cuda") else "peak RSS"
    print(
        "\n| stage | official s/step | ours s/step | ratio | official MiB | ours MiB | ratio |\n"
        "|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['stage']} | {r['official_s']:.3f} | {r['ours_s']:.3f} | {r['time_ratio']:.2f} | "
            f"{r['official_mib']:.0f} | {r['ours_mib']:.0f} | {r['memory_ratio']:.2f} |"
        )
    print(
        f"\ndevice {a.device}, batch {a.batch}, {a.threads} CPU threads, "
        f"medians of {a.rounds} rounds; memory: {unit}"
    )
    if a.weight_steps and len(rows) == 3:
        from pdarts_ray.core.bench import projected_search_hours

        for who in ("official", "ours"):
            hours = projected_search_hours(
                [r[f"{who}_s"] for r in rows], [r[f"{who}_weight_s"] for r in rows], batch=a.batch
            )
            print(
                f"projected whole search (3 stages x 25 epochs, 25,000 images, batch {a.batch}): "
                f"{who} {hours:.2f} h"
            )
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump(
                {
                    "device": a.device,
                    "batch": a.batch,
                    "threads": a.threads,
                    "rounds": a.rounds,
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
