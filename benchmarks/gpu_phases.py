"""The GPU figures of one short device session, phase by phase, each phase in its own
processes under its own time limit, each writing its JSON into OUT_DIR as soon as it ends
(so a session cut short keeps what it finished):

    python benchmarks/gpu_phases.py OUT_DIR [--official CHECKOUT] [--phases steps,profile,...] [--dry-run]

phases (in this order by default):
  steps       per stage at batch 96: the official step (CHECKOUT) and ours eager float32,
              ours compiled float32 (the fast candidate) and ours bf16, each with its CUDA peak
              memory and the step's model FLOPs, so achieved FLOP/s
  profile     per stage: CUDA kernels per step, time in kernels vs the step's wall time
  retrain     one retraining step at batch 128 (PDARTS, C=36, 20 cells, aux): ours and the
              official train_cifar.py network from CHECKOUT
  epochs      paper-c10 on CIFAR-shaped data made here (25,000 + 25,000 images): per stage a
              warm-up epoch, a searching epoch and a validated one, from which the whole
              search (official validation cadence) is computed
  concurrent  aggregate throughput of 1, 4 and 8 concurrent smoke searches on the one GPU

--dry-run runs every phase on CPU at toy sizes (tests/test_benchmarks.py runs it in CI);
without --official the official parts are recorded as skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

PHASES = ("steps", "profile", "retrain", "epochs", "concurrent")
HERE = Path(__file__).resolve().parent


def sizes(dry: bool) -> dict:
    if dry:
        return {
            "device": "cpu",
            "batch": 2,
            "image_size": 8,
            "steps": 1,
            "warmup": 0,
            "retrain_batch": 2,
            "channels": 8,
            "layers": 5,
            "concurrency": [1, 2],
            "epoch_set": [
                "dataset=synthetic",
                "synthetic_size=64",
                "image_size=8",
                "cells=[3,4,5]",
                "channels=4",
                "batch_size=8",
                "threads=1",
            ],
            "epoch_scale": 1,
            "compile": False,
            "profile_stages": (1,),
            # every variant's flags once (stage 1); the eager variant at every stage (the projection)
            "variant_stages": (1,),
            "limit": {"steps": 600, "profile": 300, "retrain": 300, "epochs": 300, "concurrent": 300},
        }
    # 15 minutes of device time, start-up included: about 11 for the phases. The epochs run on
    # a fifth of CIFAR's 50,000 images (5,000 train + 5,000 valid) and are scaled by 5.
    return {
        "device": "cuda",
        "batch": 96,
        "image_size": 32,
        "steps": 10,
        "warmup": 3,
        "retrain_batch": 128,
        "channels": 36,
        "layers": 20,
        "concurrency": [1, 4, 8],
        "compile": True,
        "profile_stages": (1, 2, 3),
        "variant_stages": (1, 2, 3),
        "epoch_set": ["dataset=synthetic", "synthetic_size=10000", "image_size=32"],
        "epoch_scale": 5,
        "limit": {"steps": 240, "profile": 60, "retrain": 60, "epochs": 180, "concurrent": 120},
    }


def run_json(cmd: list[str], timeout: float) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])}...: {(proc.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(proc.stdout)


def ours(*args: str) -> list[str]:
    return [sys.executable, "-m", "pdarts_ray.cli", *args]


# ---------------------------------------------------------------- phases


def phase_steps(s: dict, official: str | None, deadline: float) -> dict:
    common = [
        "--batch",
        str(s["batch"]),
        "--device",
        s["device"],
        "--steps",
        str(s["steps"]),
        "--warmup",
        str(s["warmup"]),
        "--weight-steps",
        str(s["steps"]),
        "--json",
    ]
    # batched: the cell by waves, about a fifth of the official step's kernel launches
    variants = {
        "eager_float32": [],
        "batched_float32": ["--kernels", "batched"],
        "bf16": ["--dtype", "bfloat16"],
    }
    if s["compile"]:  # last: its compile time may use up what is left of the phase
        variants["compiled_float32"] = ["--compile"]
    rows = []
    for stage in (1, 2, 3):
        row = {"stage": stage}
        if official:
            row["official"] = attempt(
                lambda stage=stage: run_json(
                    [
                        sys.executable,
                        str(HERE / "official_side_by_side.py"),
                        official,
                        "--worker",
                        "official",
                        "--stage",
                        str(stage),
                        "--threads",
                        "2",
                        *common[:-1],
                    ],
                    deadline - time.time(),
                )
            )
        for name, extra in variants.items():
            if name != "eager_float32" and stage not in s["variant_stages"]:
                continue
            row[name] = attempt(
                lambda stage=stage, extra=extra: run_json(
                    ours(
                        "bench",
                        "step",
                        "--stage",
                        str(stage),
                        "--image-size",
                        str(s["image_size"]),
                        *common,
                        *extra,
                    ),
                    deadline - time.time(),
                )
            )
        base = row.get("official", {})
        for name in variants:
            if "median_step_s" in base and "median_step_s" in row.get(name, {}):
                row[f"{name}_time_ratio"] = row[name]["median_step_s"] / base["median_step_s"]
                row[f"{name}_memory_ratio"] = row[name]["peak_memory_bytes"] / base["peak_memory_bytes"]
        rows.append(row)
    out = {"rows": rows, "official": official is not None, "compiled": s["compile"]}
    from pdarts_ray.core.bench import projected_search_hours

    for name in ("official", *variants) if official else variants:
        if all("weight_only_step_s" in r.get(name, {}) for r in rows):
            out[f"projected_hours_{name}"] = projected_search_hours(
                [r[name]["median_step_s"] for r in rows], [r[name]["weight_only_step_s"] for r in rows]
            )
    return out


def attempt(measure) -> dict:
    """One measurement; a failure or a timeout is recorded in its place, and the phase goes on."""
    try:
        return measure()
    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as err:
        return {"error": str(err).splitlines()[0][:300]}


PROFILE_WORKER = """
import json, sys, time, torch
from torch.profiler import ProfilerActivity, profile
from pdarts_ray.core.bench import bench_config, harness_stage
from pdarts_ray.core.runtime import memory_format
stage, batch, device, steps = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
cfg = bench_config(batch=batch, device=device)
dev = torch.device(device)
net = harness_stage(stage, cfg, dev)
fmt = memory_format(cfg.channels_last, dev, 32)
def batch_pair():
    images = torch.randn(batch, 3, 32, 32, device=dev).contiguous(memory_format=fmt)
    return images, torch.randint(0, 10, (batch,), device=dev)
for _ in range(2):
    net.arch_step(*batch_pair()); net.weight_step(*batch_pair())
cuda = dev.type == "cuda"
if cuda:
    torch.cuda.synchronize()
acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
with profile(activities=acts) as prof:
    t0 = time.perf_counter()
    for _ in range(steps):
        net.arch_step(*batch_pair()); net.weight_step(*batch_pair())
    if cuda:
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / steps
events = prof.events()
kernels = [e for e in events if e.device_type.name == "CUDA"]
ops = [e for e in events if e.device_type.name == "CPU" and e.name.startswith("aten::")]
convs = [e for e in ops if e.name in ("aten::convolution", "aten::convolution_backward")]
kernel_s = sum(e.device_time for e in kernels) / 1e6 / steps if cuda else None
top = sorted(prof.key_averages(), key=lambda k: -(k.device_time_total if cuda else k.cpu_time_total))[:15]
print(json.dumps({"stage": stage, "batch": batch, "device": device, "step_wall_s": wall,
                  "cuda_kernels_per_step": len(kernels) / steps if cuda else None,
                  "aten_ops_per_step": len(ops) / steps, "convolutions_per_step": len(convs) / steps,
                  "kernel_time_per_step_s": kernel_s,
                  "kernel_busy_fraction": kernel_s / wall if cuda else None,
                  "top": [{"name": k.key, "count": k.count, "cpu_us": k.cpu_time_total,
                           "device_us": k.device_time_total} for k in top]}))
"""


def phase_profile(s: dict, official: str | None, deadline: float) -> dict:
    steps = str(max(1, min(3, s["steps"])))
    return {
        "rows": [
            run_json(
                [sys.executable, "-c", PROFILE_WORKER, str(st), str(s["batch"]), s["device"], steps],
                deadline - time.time(),
            )
            for st in s["profile_stages"]
        ]
    }


OFFICIAL_RETRAIN_WORKER = """
import json, os, statistics, sys, time, torch, torch.nn as nn
official, channels, layers, batch, device, steps, warmup = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
    int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
sys.path.insert(0, os.path.abspath(official))
import genotypes  # the official modules, unmodified
from model import NetworkCIFAR
dev = torch.device(device)
torch.manual_seed(0)
if dev.type == "cuda":
    torch.backends.cudnn.benchmark = True
model = NetworkCIFAR(channels, 10, layers, True, genotypes.PDARTS).to(dev)
model.drop_path_prob = 0.0
model.train()
criterion = nn.CrossEntropyLoss()
opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
data = [(torch.randn(batch, 3, 32, 32).to(dev), torch.randint(0, 10, (batch,)).to(dev))
        for _ in range(steps + warmup)]
if dev.type == "cuda":
    torch.cuda.reset_peak_memory_stats(dev)
times = []
for x, y in data:  # train_cifar.py's train() per batch
    t0 = time.perf_counter()
    opt.zero_grad()
    logits, logits_aux = model(x)
    loss = criterion(logits, y) + 0.4 * criterion(logits_aux, y)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 5)
    opt.step()
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    times.append(time.perf_counter() - t0)
import resource
if dev.type == "cuda":
    peak = torch.cuda.max_memory_allocated(dev)
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"median_step_s": statistics.median(times[warmup:]), "peak_memory_bytes": int(peak)}))
"""


def phase_retrain(s: dict, official: str | None, deadline: float) -> dict:
    args = [
        "--channels",
        str(s["channels"]),
        "--layers",
        str(s["layers"]),
        "--batch",
        str(s["retrain_batch"]),
        "--device",
        s["device"],
        "--steps",
        str(s["steps"]),
        "--warmup",
        str(s["warmup"]),
        "--json",
    ]
    out = {
        "ours": run_json(ours("bench", "retrain-step", *args), deadline - time.time()),
        "ours_channels_last": run_json(
            ours("bench", "retrain-step", *args, "--channels-last"), deadline - time.time()
        ),
    }
    if official:
        out["official"] = run_json(
            [
                sys.executable,
                "-c",
                OFFICIAL_RETRAIN_WORKER,
                official,
                str(s["channels"]),
                str(s["layers"]),
                str(s["retrain_batch"]),
                s["device"],
                str(s["steps"]),
                str(s["warmup"]),
            ],
            deadline - time.time(),
        )
        out["time_ratio"] = out["ours"]["median_step_s"] / out["official"]["median_step_s"]
    return out


def phase_epochs(s: dict, official: str | None, deadline: float, out_dir: Path) -> dict:
    """Per stage a warm-up epoch (weights only), a searching epoch and a validated searching
    epoch; the whole paper-c10 search is 10 / 11 / 4 of them per stage."""
    run = out_dir / "epochs-run"
    sets = [*s["epoch_set"], "epochs=3", "warmup_epochs=1", "valid_last_epochs=1", f"device={s['device']}"]
    cmd = ours(
        "search",
        "--preset",
        "paper-c10",
        "--out",
        str(run),
        "--json",
        "--quiet",
        *[a for kv in sets for a in ("--set", kv)],
    )
    run_json(cmd, deadline - time.time())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    per_stage, total, scale = [], 0.0, s["epoch_scale"]
    for stage in (1, 2, 3):
        warm, search, validated = (scale * r["epoch_seconds"] for r in rows if r["stage"] == stage)
        seconds = 10 * warm + 11 * search + 4 * validated
        per_stage.append(
            {
                "stage": stage,
                "warmup_epoch_s": warm,
                "search_epoch_s": search,
                "validated_epoch_s": validated,
                "stage_s": seconds,
            }
        )
        total += seconds
    return {
        "stages": per_stage,
        "full_search_hours": total / 3600,
        "epoch_scale": scale,
        "note": "10 warm-up, 11 searching and 4 validated epochs per stage (paper-c10 with the official "
        "cadence), each measured on 1/scale of CIFAR's images and scaled; checkpoint writes are not "
        "in epoch_seconds",
    }


def phase_concurrent(s: dict, official: str | None, deadline: float, out_dir: Path) -> dict:
    rows = []
    for n in s["concurrency"]:
        t0 = time.perf_counter()
        procs = [
            subprocess.Popen(
                ours(
                    "search",
                    "--preset",
                    "smoke",
                    "--set",
                    f"device={s['device']}",
                    "--out",
                    str(out_dir / f"concurrent-{n}-{i}"),
                    "--quiet",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for i in range(n)
        ]
        codes = [p.wait(timeout=max(1, deadline - time.time())) for p in procs]
        wall = time.perf_counter() - t0
        if any(codes):
            raise RuntimeError(f"{sum(map(bool, codes))} of {n} concurrent searches failed")
        rows.append({"concurrent": n, "wall_s": wall, "searches_per_hour": 3600 * n / wall})
    return {"preset": "smoke", "rows": rows}


# ---------------------------------------------------------------- driver


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument(
        "--official", help="a checkout of the official P-DARTS code (github.com/chenxin061/pdarts)"
    )
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--dry-run", action="store_true", help="every phase on CPU at toy sizes")
    a = ap.parse_args(argv)
    phases = a.phases.split(",")
    unknown = set(phases) - set(PHASES)
    if unknown:
        ap.error(f"unknown phase {sorted(unknown)[0]} (phases: {', '.join(PHASES)})")
    if a.official and not (Path(a.official) / "model_search.py").is_file():
        ap.error(f"--official {a.official}: not a checkout of the official code (no model_search.py)")
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s = sizes(a.dry_run)
    failed = 0
    for name in phases:
        t0 = time.time()
        deadline = t0 + s["limit"][name]
        fn = globals()[f"phase_{name}"]
        try:
            extra = (out_dir,) if name in ("epochs", "concurrent") else ()
            result = {"ok": True, **fn(s, a.official, deadline, *extra)}
        except (RuntimeError, subprocess.TimeoutExpired, ValueError, OSError) as err:
            result, failed = {"ok": False, "error": str(err).splitlines()[0][:500]}, failed + 1
        result.update(
            phase=name, seconds=round(time.time() - t0, 1), dry_run=a.dry_run, official_skipped=not a.official
        )
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=1))
        print(
            f"{name}: {'ok' if result['ok'] else 'FAILED ' + result['error']} ({result['seconds']} s)",
            file=sys.stderr,
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
