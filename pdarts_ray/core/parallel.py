"""Data parallelism of one search over the ranks of a torch.distributed process group.

The core knows nothing of how the group was started (the Ray layer starts it through Ray
Train); a search with no group, or a group of one, runs exactly as it always did.

What N ranks share of one search step:
- every rank draws the global batch's order and augmentation from the same stream one
  worker draws them from, and takes its own contiguous slice of the batch (the first
  `n % N` ranks one image more when the batch does not divide: a partial last batch);
- every rank's loss is its slice's summed cross-entropy over the global batch size, and the
  gradients are summed over the ranks before clipping and the optimiser step: the gradient of
  the global batch's mean loss, the same global-norm clipping, the same update on every rank;
- with `sync_bn`, BatchNorm in the supernet normalises with the global batch's statistics
  (and back-propagates through them), so N ranks compute one worker's function up to
  rounding; without it, each rank normalises with its slice's statistics;
- skip-connect dropout masks come from a stream of each rank's own.
"""

from __future__ import annotations

import pickle

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.autograd import Function


class Ranks:
    """This process's rank among the search's workers, and what they do together."""

    def __init__(self, sync_bn: bool = True):
        self.active = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1
        self.sync_bn = sync_bn and self.active

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def part(self, n: int) -> slice:
        """This rank's contiguous share of n items, as even as possible (earlier ranks take the rest)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def _device_of(self, t: torch.Tensor) -> torch.Tensor:
        return t.cuda() if dist.get_backend() == "nccl" and t.device.type != "cuda" else t

    def sum_(self, tensors: list[torch.Tensor]) -> None:
        """Sum tensors over the ranks, in place, with one collective call."""
        if not self.active or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        work = self._device_of(flat)
        dist.all_reduce(work)
        flat = work.to(flat.device)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def sum_grads(self, params: list[torch.Tensor]) -> None:
        """Sum the parameters' gradients over the ranks (every rank ends with the same ones)."""
        if not self.active:
            return
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        self.sum_([p.grad for p in params])

    def sum_values(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        self.sum_([t])
        return t.tolist()

    def max_value(self, value: float) -> float:
        if not self.active:
            return value
        t = self._device_of(torch.tensor([float(value)], dtype=torch.float64))
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def gather(self, obj) -> list:
        """Every rank's `obj`, in rank order, on every rank (small objects: random states)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, pickle.loads(pickle.dumps(obj)))
        return out


# ---------------------------------------------------------------- BatchNorm over the global batch


class _GlobalBatchNorm(Function):
    """Training-mode BatchNorm with the statistics of the whole global batch (all ranks)."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, ranks):
        c = x.shape[1]
        count = torch.tensor([x.numel() // c], dtype=torch.float64, device=x.device)
        x64 = x.double()
        sums = torch.cat([count, x64.sum((0, 2, 3)), (x64 * x64).sum((0, 2, 3))])
        ranks.sum_([sums])
        n = sums[0]
        mean64 = sums[1 : 1 + c] / n
        var64 = (sums[1 + c :] / n - mean64 * mean64).clamp_min(0)
        mean, invstd = mean64.to(x.dtype), torch.rsqrt(var64 + eps).to(x.dtype)
        xhat = (x - mean.view(1, c, 1, 1)) * invstd.view(1, c, 1, 1)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.mul_(1 - momentum).add_(mean64.to(running_mean.dtype), alpha=momentum)
                unbiased = var64 * n / max(float(n) - 1, 1.0)
                running_var.mul_(1 - momentum).add_(unbiased.to(running_var.dtype), alpha=momentum)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.ranks, ctx.count = ranks, float(n)
        out = xhat
        if weight is not None:
            out = out * weight.view(1, c, 1, 1) + bias.view(1, c, 1, 1)
        return out

    @staticmethod
    def backward(ctx, g):
        xhat, invstd, weight = ctx.saved_tensors
        c = xhat.shape[1]
        gx_hat = g * weight.view(1, c, 1, 1) if weight is not None else g
        sums = torch.cat([gx_hat.sum((0, 2, 3)), (gx_hat * xhat).sum((0, 2, 3))]).double()
        ctx.ranks.sum_([sums])
        mean_g, mean_gx = (sums[:c] / ctx.count).to(g.dtype), (sums[c:] / ctx.count).to(g.dtype)
        gx = invstd.view(1, c, 1, 1) * (gx_hat - mean_g.view(1, c, 1, 1) - xhat * mean_gx.view(1, c, 1, 1))
        gw = gb = None
        if weight is not None:  # this rank's part; the optimiser sums the parameters' gradients over ranks
            gw, gb = (g * xhat).sum((0, 2, 3)), g.sum((0, 2, 3))
        return gx, gw, gb, None, None, None, None, None


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d that, in training on several ranks, uses the global batch's statistics."""

    ranks: Ranks | None = None

    def forward(self, x):
        if not (self.training and self.ranks is not None and self.ranks.active):
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        return _GlobalBatchNorm.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean,
            self.running_var,
            self.momentum,
            self.eps,
            self.ranks,
        )


def synchronise_batch_norm(model: nn.Module, ranks: Ranks) -> None:
    """Make every BatchNorm of `model` normalise over the global batch (same state, same class family)."""
    for module in model.modules():
        if type(module) is nn.BatchNorm2d:
            module.__class__ = GlobalBatchNorm2d
            module.ranks = ranks
