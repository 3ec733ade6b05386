"""How many ATen operator calls one full search step dispatches (`pdarts-ray bench ops`).

On a GPU every such call is at least one kernel launch, and at P-DARTS' sizes a step is bound
by those launches rather than by arithmetic, so the count is what a GPU step costs beyond its
FLOPs; counting needs no GPU and does not depend on the batch. One full step = the
architecture step + the weight step, optimiser steps and gradient clipping included, after
one warm-up step (so that optimiser states exist). Views and metadata calls launch nothing
and are counted apart. The definition is the one the official-code comparison uses, so the
figures stand beside the official supernet's.
"""

from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# calls that only make views or read metadata: no kernel runs
VIEW_OPS = frozenset(
    {
        "view",
        "_unsafe_view",
        "as_strided",
        "t",
        "expand",
        "slice",
        "select",
        "unsqueeze",
        "squeeze",
        "permute",
        "transpose",
        "alias",
        "detach",
        "reshape",
        "_reshape_alias",
        "split",
        "unbind",
        "split_with_sizes",
        "chunk",
        "narrow",
        "flatten",
        "lift_fresh",
        "empty_like",
        "empty",
        "zeros_like",
        "new_empty",
        "new_empty_strided",
        "empty_strided",
        "is_same_size",
        "_to_copy_noop",
        "sym_size",
        "sym_stride",
        "sym_numel",
        "sym_storage_offset",
        "clone_noop",
        "diagonal",
        "contiguous_noop",
    }
)
COUNT_BATCH = 2


class OpCounter(TorchDispatchMode):
    """Counts the ATen calls made while active: kernels by name, views apart."""

    def __init__(self):
        super().__init__()
        self.kernels: Counter = Counter()
        self.views = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in VIEW_OPS:
            self.views += 1
        else:
            self.kernels[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def calls(self) -> int:
        return sum(self.kernels.values())

    @property
    def convolutions(self) -> int:
        return sum(n for name, n in self.kernels.items() if "convolution" in name)


def count_step_ops(stage: int, kernels: str, cells: int | None = None, seed: int = 0) -> dict:
    """The calls of one full step of a harness stage's supernet on CPU (see `bench.harness_stage`)."""
    from .bench import bench_config, harness_stage

    cfg = bench_config(batch=COUNT_BATCH, device="cpu", kernels=kernels, threads=1, seed=seed)
    net = harness_stage(stage, cfg, torch.device("cpu"), cells=cells)
    g = torch.Generator().manual_seed(seed)
    fmt = torch.channels_last  # as `channels_last: auto` runs on CPU

    def batch():
        x = torch.randn(COUNT_BATCH, 3, 32, 32, generator=g).contiguous(memory_format=fmt)
        return x, torch.randint(0, 10, (COUNT_BATCH,), generator=g)

    def step():
        net.arch_step(*batch())
        net.weight_step(*batch())

    step()
    counter = OpCounter()
    with counter:
        step()
    return {
        "stage": stage,
        "kernels": kernels,
        "cells": len(net.model.cells),
        "calls": counter.calls,
        "convolutions": counter.convolutions,
        "views": counter.views,
        "top": counter.kernels.most_common(8),
    }
