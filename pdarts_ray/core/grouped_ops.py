"""Tensor pieces of the batched path (batched.py): convolution gradients through one
aten call, a wave's ReLU repeated per position, pooling, FactorizedReduce's shifted input."""

from __future__ import annotations

import torch
import torch.nn.functional as F

aten = torch.ops.aten


def conv_backward(g, x, weight, stride, padding, dilation, groups, need_input, need_weight):
    if not (need_input or need_weight):
        return None, None
    gi, gw, _ = aten.convolution_backward(
        g,
        x,
        weight,
        None,
        [stride] * 2,
        [padding] * 2,
        [dilation] * 2,
        False,
        [0, 0],
        groups,
        [need_input, need_weight, False],
    )
    return gi, gw


def repeat(r, sources, c):
    """The ReLU of the wave's sources once per position: N x (positions * C) x H x W."""
    if r.shape[1] == c and len(sources) == 1:
        return r
    return torch.cat([r[:, s * c : (s + 1) * c] for s in sources], dim=1)


def shifted(h):
    """FactorizedReduce's second branch input: shifted by a pixel, padded back to an even size."""
    shifted = h[:, :, 1:, 1:]
    if h.shape[-1] % 2 or h.shape[-2] % 2:
        shifted = F.pad(shifted, (0, h.shape[-1] % 2, 0, h.shape[-2] % 2))
    return shifted


def pool(name, x, stride):
    if name == "max_pool_3x3":
        return aten.max_pool2d_with_indices(x, [3, 3], [stride] * 2, [1, 1], [1, 1], False)
    return aten.avg_pool2d(x, [3, 3], [stride] * 2, [1, 1], False, False, None), None


def halves_to_edges(z, P, c):
    """[first halves of every edge; second halves] -> each edge's channels in order, as a view:
    N x P x 2 x C/2 x H x W."""
    return z.view(z.shape[0], 2, P, c // 2, *z.shape[-2:]).transpose(1, 2)
