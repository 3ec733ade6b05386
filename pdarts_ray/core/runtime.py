"""Where and how a run executes: device, CPU threads, seeds, random-number states, and the
environment of processes that start Ray Train runs."""

from __future__ import annotations

import os

import numpy as np
import torch

from .errors import UserError
from .waiting import warn_if_busy


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def memory_format(setting: str, device: torch.device, image_size: int = 32) -> torch.memory_format:
    """Channels-last where it pays and is safe: `auto` picks it on CPU for images up to 32
    pixels, where oneDNN's depthwise convolutions run 1.5-2.5x faster. On larger images the
    CPU backward of a 1x1 stride-2 convolution over few channels (FactorizedReduce below
    16 channels, 48+ pixels) crashes in channels-last (torch 2.14), so they stay contiguous."""
    if setting == "on" or (setting == "auto" and device.type == "cpu" and image_size <= 32):
        return torch.channels_last
    return torch.contiguous_format


def cpu_threads(requested: int) -> int:
    """The CPU thread count to pin (0 = every core this process may use)."""
    if requested > 0:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pin_threads(requested: int, device: torch.device, flag: str, what: str) -> int:
    """Pin torch's CPU threads (0 = every core); on CPU, one line on stderr when other work
    leaves fewer free cores than that, naming the `flag` that lowers them."""
    threads = cpu_threads(requested)
    torch.set_num_threads(threads)
    if device.type == "cpu":
        warn_if_busy(threads, flag, what)
    return threads


def derived_seed(seed: int, *path: int) -> int:
    """An independent 63-bit seed for one part of a run (a stage, a worker)."""
    return int(
        np.random.SeedSequence([seed, *path])
        .generate_state(2, dtype=np.uint32)
        .astype(np.uint64)
        .dot(np.array([1 << 31, 1], dtype=np.uint64))
        & ((1 << 63) - 1)
    )


def capture_rng(device: torch.device, *generators: torch.Generator) -> dict:
    """Every random state a stage consumes, as tensors (loadable with weights_only=True)."""
    state = {"torch": torch.get_rng_state(), "generators": [g.get_state() for g in generators]}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device, *generators: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    for g, s in zip(generators, state["generators"]):
        g.set_state(s)
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
