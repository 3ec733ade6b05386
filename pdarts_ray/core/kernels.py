"""Memory-lean training kernels for the supernet's candidate ops.

Each candidate op's term `op(x) * w` is one autograd node that keeps only what its
backward pass cannot recompute cheaply; the rest is recomputed by the very kernels
that produced it, so the values are identical:

- A conv op keeps each block's BatchNorm input and statistics, and in the weight step
  its depthwise output (the 1x1 convolution's weight gradient reads it; recomputing it
  saved 1 unit of memory per block but cost 4% of the step on CPU and one more kernel
  launch per block on GPU); ReLU and BatchNorm outputs are recomputed.
- A pooling op keeps only BatchNorm's statistics; the pooled tensor is recomputed.
- The skip-connect dropout mask is kept as booleans (nn.Dropout keeps floats).
- The op input is shared by every op of the edge (and alive anyway).

The arithmetic is the module path's, operation for operation (the same kernels on
the same inputs, gradients accumulated in the same order), so a search gives the
same numbers bit for bit as the plain module path (`kernels: reference`).
Bit-identity matters more than it seems: with few architecture steps the alphas stay
close to uniform, and Adam turns float-rounding noise in near-zero gradients into
full-size steps, so any reordering of the arithmetic can change a genotype.

Tried and dropped (measured on a 2-core CPU): folding w into BatchNorm's scale (the
CPU BatchNorm backward with a weight is 3.6x slower on channels-last tensors), and
input gradients of depthwise convolutions as forward convolutions with flipped kernels
(no net gain: the weight-gradient kernels dominate). Both also changed the rounding.

The modules (parameters, buffers, initialisation, state_dict) are those of ops.py;
these functions read their tensors.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function

from .ops import DilConv, FactorizedReduce, SepConv

aten = torch.ops.aten


# ---------------------------------------------------------------- BatchNorm pieces


def _bn(x, bn: nn.BatchNorm2d):
    """Training-mode affine-free BatchNorm updating the running statistics, as the module does."""
    y, mean, invstd = torch.native_batch_norm(
        x, None, None, bn.running_mean, bn.running_var, True, bn.momentum, bn.eps
    )
    bn.num_batches_tracked.add_(1)
    return y, mean, invstd


def _bn_again(x, eps):
    """The same BatchNorm output recomputed bit for bit, running statistics untouched."""
    return torch.native_batch_norm(x, None, None, None, None, True, 0.0, eps)[0]


def _bn_backward(g, x, mean, invstd, eps):
    return aten.native_batch_norm_backward(
        g, x, None, None, None, mean, invstd, True, eps, [True, False, False]
    )[0]


def _scaled_backward(g, scale, need_scale, output):
    """Backward of `output * scale` (output recomputed by the caller only if needed)."""
    g_out = g * scale
    g_scale = (g * output()).sum() if need_scale else None
    return g_out, g_scale


# ---------------------------------------------------------------- convolution pieces


def _conv_backward(g, x, weight, conv: nn.Conv2d, need_input: bool, need_weight: bool):
    """(input grad, weight grad) of a bias-free convolution, as autograd computes them.
    The input gradient reads only x's shape and layout, not its values."""
    if not (need_input or need_weight):
        return None, None
    gi, gw, _ = aten.convolution_backward(
        g,
        x,
        weight,
        None,
        list(conv.stride),
        list(conv.padding),
        list(conv.dilation),
        False,
        [0, 0],
        conv.groups,
        [need_input, need_weight, False],
    )
    return gi, gw


class _ConvChain(Function):
    """`[ReLU -> depthwise conv -> 1x1 conv -> BN] x blocks * scale` (dil_conv: 1 block,
    sep_conv: 2), keeping each block's BN input and statistics (and, in the weight step,
    its depthwise output).

    Each op computes its own ReLU of the edge input, as the module path does: one shared
    ReLU would add the ops' gradients up before they reach the input's other gradients,
    a different order of float additions."""

    @staticmethod
    def forward(ctx, x, scale, blocks, *weights):
        train_weights = any(ctx.needs_input_grad[3:])
        h = x
        kept, stats = [], []
        for b, (dw, _pw, bn) in enumerate(blocks):
            d = F.conv2d(torch.relu(h), weights[2 * b], None, dw.stride, dw.padding, dw.dilation, dw.groups)
            p = F.conv2d(d, weights[2 * b + 1])
            h, mean, invstd = _bn(p, bn)
            kept += [p, d if train_weights else None]
            stats += [mean, invstd]
        ctx.blocks, ctx.train_weights = blocks, train_weights
        ctx.save_for_backward(x, scale, *weights, *kept, *stats)
        return h * scale

    @staticmethod
    def backward(ctx, g):
        blocks, n = ctx.blocks, len(ctx.blocks)
        x, scale, *rest = ctx.saved_tensors
        weights, kept, stats = rest[: 2 * n], rest[2 * n : 4 * n], rest[4 * n :]
        need_x, need_scale = ctx.needs_input_grad[0], ctx.needs_input_grad[1]

        g, g_scale = _scaled_backward(g, scale, need_scale, lambda: _bn_again(kept[-2], blocks[-1][2].eps))
        grads = [None] * (2 * n)
        for b in reversed(range(n)):
            dw, pw, bn = blocks[b]
            p, d = kept[2 * b], kept[2 * b + 1]
            gp = _bn_backward(g, p, stats[2 * b], stats[2 * b + 1], bn.eps)
            # the block's ReLU output, recomputed from the op input or the previous block's BN input
            r = torch.relu(x if b == 0 else _bn_again(kept[2 * b - 2], blocks[b - 1][2].eps))
            if d is None:
                d = torch.empty_like(p)  # the input gradient reads only its shape and layout
            gd, grads[2 * b + 1] = _conv_backward(gp, d, weights[2 * b + 1], pw, True, ctx.train_weights)
            need_input = b > 0 or need_x
            gr, grads[2 * b] = _conv_backward(gd, r, weights[2 * b], dw, need_input, ctx.train_weights)
            if not need_input:
                break
            g = aten.threshold_backward(gr, r, 0)
        return (g if need_x else None, g_scale, None, *grads)


def conv_chain(op: nn.Module, x, scale, train_weights: bool):
    mods, weights = [], []
    for _, dw, pw, bn in list(op) if isinstance(op, SepConv) else [op]:
        mods.append((dw, pw, bn))
        weights += [dw.weight, pw.weight] if train_weights else [dw.weight.detach(), pw.weight.detach()]
    return _ConvChain.apply(x, scale, tuple(mods), *weights)


# ---------------------------------------------------------------- pooling -> BN


class _PoolBN(Function):
    """`scale * BN(pool(x))`; keeps only BN's statistics, recomputes the pooled tensor."""

    @staticmethod
    def forward(ctx, x, scale, pool, bn):
        y, mean, invstd = _bn(_pool(pool, x)[0], bn)
        ctx.pool, ctx.eps = pool, bn.eps
        ctx.save_for_backward(x, scale, mean, invstd)
        return y * scale

    @staticmethod
    def backward(ctx, g):
        x, scale, mean, invstd = ctx.saved_tensors
        need_x, need_scale = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        p, indices = _pool(ctx.pool, x)
        g, g_scale = _scaled_backward(g, scale, need_scale, lambda: _bn_again(p, ctx.eps))
        gp = _bn_backward(g, p, mean, invstd, ctx.eps)
        gx = None
        if need_x:
            s = [ctx.pool.stride] * 2
            if indices is not None:
                gx = aten.max_pool2d_with_indices_backward(gp, x, [3, 3], s, [1, 1], [1, 1], False, indices)
            else:
                gx = aten.avg_pool2d_backward(gp, x, [3, 3], s, [1, 1], False, False, None)
        return gx, g_scale, None, None


def _pool(pool, x):
    if isinstance(pool, nn.MaxPool2d):
        return aten.max_pool2d_with_indices(x, [3, 3], [pool.stride] * 2, [1, 1], [1, 1], False)
    return aten.avg_pool2d(x, [3, 3], [pool.stride] * 2, [1, 1], False, False, None), None


# ---------------------------------------------------------------- skip-connects


@functools.cache
def _uniform_draws_are_bernoulli(device_type: str) -> bool:
    """Whether `uniform_() < keep` in float64 draws exactly what `bernoulli_(keep)` draws.

    It does where PyTorch's CPU bernoulli takes one double per element from the generator
    (its default path), and it is twice as fast; builds that route bernoulli through MKL
    draw differently, and then bernoulli_ itself is used. Checked once, on a private
    generator."""
    if device_type != "cpu":
        return False
    g = torch.Generator().manual_seed(20191027)
    a = torch.empty(1000, dtype=torch.bool).bernoulli_(0.37, generator=g)
    a_next = torch.rand(4, generator=g)
    g.manual_seed(20191027)
    b = torch.empty(1000, dtype=torch.float64).uniform_(generator=g) < 0.37
    return torch.equal(a, b) and torch.equal(a_next, torch.rand(4, generator=g))


def dropout_mask(x, keep: float):
    """nn.Dropout's mask for x (drawn in memory order from the default generator), as booleans."""
    if _uniform_draws_are_bernoulli(x.device.type):
        return torch.empty_like(x, dtype=torch.float64).uniform_() < keep
    return torch.empty_like(x, dtype=torch.bool).bernoulli_(keep)


class _ScaledDropout(Function):
    """`dropout(x, rate) * scale`, keeping a boolean mask. The mask is drawn as nn.Dropout
    draws it (`bernoulli_` in memory order) and the arithmetic is nn.Dropout's."""

    @staticmethod
    def forward(ctx, x, scale, rate: float):
        keep = 1.0 - rate
        mask = dropout_mask(x, keep)
        ctx.save_for_backward(x, mask, scale)
        ctx.keep = keep
        return (x * mask.to(x.dtype).div_(keep)).mul_(scale)

    @staticmethod
    def backward(ctx, g):
        x, mask, scale = ctx.saved_tensors
        noise = mask.to(x.dtype).div_(ctx.keep)
        gx = (g * scale).mul_(noise) if ctx.needs_input_grad[0] else None
        g_scale = (g * (x * noise)).sum() if ctx.needs_input_grad[1] else None
        return gx, g_scale, None


# ---------------------------------------------------------------- dispatch


def op_kind(op: nn.Module) -> str:
    if isinstance(op, (SepConv, DilConv)):
        return "conv"
    if isinstance(op, FactorizedReduce):
        return "reduce"
    if isinstance(op, nn.Sequential) and isinstance(op[0], (nn.MaxPool2d, nn.AvgPool2d)):
        return "pool"
    return "skip"


def fused_term(kind: str, op: nn.Module, x, scale, train_weights: bool, skip_dropout_rate: float):
    """`op(x) * scale` for one candidate op in training mode."""
    if kind == "conv":
        return conv_chain(op, x, scale, train_weights)
    if kind == "pool":
        return _PoolBN.apply(x, scale, op[0], op[1])
    if kind == "skip":
        return _ScaledDropout.apply(x, scale, skip_dropout_rate) if skip_dropout_rate > 0 else x * scale
    return op(x) * scale  # a stride-2 skip (FactorizedReduce): few of them, plain autograd
