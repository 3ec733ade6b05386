"""Predicting the peak memory of each search stage from its config, before it runs.

    peak = fixed + 4 x parameters + dataset + kept + working set

- fixed: the process itself on CPU (interpreter, libraries, allocator arenas); zero on
  CUDA, where the figure is the allocator's peak (the CUDA context is not counted).
- parameters, their gradients, SGD momentum and Adam's moments of the alphas.
- the training images held on the device as uint8.
- kept: what autograd keeps for backward in the heavier of the two steps, counted
  exactly: the stage's supernet runs forward at batch 1 and 2 (at the real image size)
  under a hook that sums the distinct storages saved for backward; kept memory is
  affine in the batch, so two points give it at any batch.
- working set: gradients in flight and recomputed tensors during backward, taken as a
  multiple of one cell-input activation at the first cell (batch x 3C x H x W), the
  largest tensor of the supernet.

The two constants per device kind (`fixed`, the working-set multiple) are calibrated
against measured peaks; `pdarts-ray bench predict` prints predictions and the tests hold
the bench stages to within 15% of measured on CPU.

Where a stage's op masks are not known yet (they come out of the previous stage), the
heaviest possible ones are assumed: the ops that keep the most for backward survive,
so the prediction is an upper bound for packing trials onto a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import SearchConfig
from .space import NUM_EDGES, PRIMITIVES
from .supernet import SearchNetwork

# Ops by what they keep for backward (lean kernels), heaviest first: a sep conv keeps two
# BatchNorm inputs, a dil conv one, a skip with dropout a boolean mask, pools and `none`
# nothing beyond the shared input.
HEAVIEST_FIRST = [
    "sep_conv_5x5",
    "sep_conv_3x3",
    "dil_conv_5x5",
    "dil_conv_3x3",
    "skip_connect",
    "avg_pool_3x3",
    "max_pool_3x3",
    "none",
]


@dataclass(frozen=True)
class Calibration:
    fixed_bytes: int  # the process (CPU) or nothing (CUDA)
    working_multiple: float  # working set, in first-cell input activations


# CPU: fitted to the peak resident sets of `bench step` (stages 1-3, batch 8-64) on a
# 2-core machine: 520 MiB is the process after importing torch, the rest is the first
# step's own (oneDNN scratch space, thread pools, allocator arenas).
# CUDA: fitted to CUDA max allocated of `bench step` on an H200 (stages 1-3, batch 96):
# 8-11 first-cell activations beyond what is kept; the caching allocator wastes little.
CALIBRATION = {
    "cpu": Calibration(fixed_bytes=700 * 2**20, working_multiple=55.0),
    "cuda": Calibration(fixed_bytes=0, working_multiple=10.0),
}


def heaviest_switches(ops: int) -> list[list[bool]]:
    keep = set(HEAVIEST_FIRST[:ops])
    return [[p in keep for p in PRIMITIVES] for _ in range(NUM_EDGES)]


def kept_bytes(
    cfg: SearchConfig,
    cells: int,
    switches: dict,
    rate: float,
    batch: int,
    image_size: int,
    num_classes: int = 10,
) -> int:
    """Bytes autograd keeps for backward in the heavier step, for `batch` images."""
    net = SearchNetwork(
        cfg.channels, num_classes, cells, switches["normal"], switches["reduce"], rate, kernels=cfg.kernels
    ).train()
    net.set_skip_dropout(rate)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")

    def saved(b: int, step: str) -> int:
        storages: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            storages[s.data_ptr()] = s.nbytes()
            return t

        x = torch.randn(b, 3, image_size, image_size)
        y = torch.zeros(b, dtype=torch.long)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
            logits = net(x, arch_grad=step == "arch", weight_grad=step == "weight")
            F.cross_entropy(logits, y)
        return sum(storages.values())

    best = 0
    for step in ("arch", "weight"):
        one, two = saved(1, step), saved(2, step)
        best = max(best, one + (two - one) * (batch - 1))
    return best


def parameter_bytes(cfg: SearchConfig, cells: int, switches: dict, num_classes: int = 10) -> int:
    net = SearchNetwork(cfg.channels, num_classes, cells, switches["normal"], switches["reduce"], 0.0)
    return sum(p.numel() * p.element_size() for p in net.parameters())


def predict_stage(
    cfg: SearchConfig,
    stage: int,
    device_kind: str,
    switches: dict | None = None,
    dataset_images: int = 0,
    num_classes: int = 10,
    batch: int | None = None,
) -> dict:
    """Predicted peak bytes of stage `stage` (1-based), with its parts."""
    i = stage - 1
    cells, rate = cfg.cells[i], cfg.skip_dropout[i]
    switches = switches or {
        "normal": heaviest_switches(cfg.ops_kept[i]),
        "reduce": heaviest_switches(cfg.ops_kept[i]),
    }
    batch = batch or cfg.batch_size
    cal = CALIBRATION["cuda" if device_kind == "cuda" else "cpu"]
    kept = kept_bytes(cfg, cells, switches, rate, batch, cfg.image_size, num_classes)
    params = parameter_bytes(cfg, cells, switches, num_classes)
    element = 2 if cfg.dtype == "bfloat16" else 4
    first_cell_input = batch * 3 * cfg.channels * cfg.image_size**2 * element
    data = dataset_images * 3 * cfg.image_size**2
    parts = {
        "fixed": cal.fixed_bytes,
        "state": 4 * params,
        "dataset": data,
        "kept": kept,
        "working": int(cal.working_multiple * first_cell_input),
    }
    return {"stage": stage, "device": device_kind, "bytes": int(sum(parts.values())), "parts": parts}
