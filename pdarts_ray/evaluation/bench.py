"""`pdarts-ray bench retrain-step`: the time, memory and model FLOPs of one retraining step
of a genotype's evaluation network, as the retraining runs it (SGD with momentum, the
auxiliary head, gradient clipping), on random CIFAR-shaped batches. The defaults are the
paper's CIFAR-10 network and the official `train_cifar.py` step: C=36, 20 cells, batch 128.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.memory import process_peak_rss_bytes
from ..core.runtime import pin_threads, resolve_device
from ..core.space import Genotype
from .network import build_network

FLOP_COUNT_BATCH = 2


def retrain_step_flops(
    genotype: Genotype,
    channels: int = 36,
    layers: int = 20,
    batch: int = 128,
    image_size: int = 32,
    num_classes: int = 10,
    auxiliary: bool = True,
) -> dict:
    """Model FLOPs of one training step: the forward pass F (auxiliary head included, as in
    training; counted by FlopCounterMode at batch FLOP_COUNT_BATCH and scaled, every counted
    operation being linear in the batch) and the step as F + 2F (the gradients of the inputs
    and of the weights). core/bench.py's step_flops says why the backward is not counted."""
    from torch.utils.flop_counter import FlopCounterMode

    model = build_network(genotype, "cifar", channels, num_classes, layers, auxiliary)
    model.train()
    x = torch.randn(FLOP_COUNT_BATCH, 3, image_size, image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    forward = int(round(counter.get_total_flops() * batch / FLOP_COUNT_BATCH))
    return {"forward": forward, "train_step": 3 * forward, "batch": batch}


def bench_retrain_step(
    genotype: Genotype,
    channels: int = 36,
    layers: int = 20,
    batch: int = 128,
    device: str = "auto",
    threads: int = 0,
    warmup: int = 2,
    steps: int = 5,
    channels_last: bool = False,
) -> dict:
    """Median seconds of a training step and the peak memory (CUDA max allocated, else the
    process's peak resident set)."""
    dev = resolve_device(device)
    pin_threads(threads, dev, "--threads 1", "this benchmark")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train_cifar.py
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_network(genotype, "cifar", channels, 10, layers, auxiliary=True).to(dev, memory_format=fmt)
    model.drop_path_prob = 0.0  # the first epoch's (drop path grows linearly from 0)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    g = torch.Generator().manual_seed(0)
    data = [
        (
            torch.randn(batch, 3, 32, 32, generator=g).to(dev).contiguous(memory_format=fmt),
            torch.randint(0, 10, (batch,), generator=g).to(dev),
        )
        for _ in range(warmup + steps)
    ]
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times = []
    for x, y in data:
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        logits, logits_aux = model(x)
        loss = F.cross_entropy(logits, y) + 0.4 * F.cross_entropy(logits_aux, y)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else process_peak_rss_bytes()
    median = statistics.median(times[warmup:])
    flops = retrain_step_flops(genotype, channels, layers, batch)
    return {
        "channels": channels,
        "layers": layers,
        "batch": batch,
        "device": str(dev),
        "median_step_s": median,
        "peak_memory_bytes": int(peak),
        "flops": flops,
        "achieved_flop_per_s": flops["train_step"] / median,
    }
