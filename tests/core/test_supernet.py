"""The supernet: `none` is never computed yet keeps its softmax mass; skip dropout placement."""

import pytest
import torch
import torch.nn.functional as F

from pdarts_ray.core.bench import harness_switches
from pdarts_ray.core.space import NUM_EDGES, PRIMITIVES, full_switches
from pdarts_ray.core.supernet import MixedOp, SearchNetwork, SkipDropout


def test_mixed_op_skips_none_but_keeps_its_weight():
    torch.manual_seed(0)
    row = [True, False, True, True, True, False, False, False]  # none, avg pool, skip, sep 3x3
    op = MixedOp(4, 1, row, skip_dropout_rate=0.0).eval()
    assert len(op.ops) == 3  # `none` is not built
    x = torch.randn(2, 4, 6, 6)
    alphas = torch.tensor([2.0, 0.1, -0.3, 0.5])
    w = F.softmax(alphas, dim=-1)
    expected = w[1] * op.ops[0](x) + w[2] * op.ops[1](x) + w[3] * op.ops[2](x)
    assert torch.allclose(op(x, w), expected, atol=1e-6)
    assert w[0] > 0.5  # the none column took most of the mass, and contributed nothing


def test_edge_with_only_none_outputs_zeros():
    op = MixedOp(4, 2, [True] + [False] * 7, 0.0)
    assert not op(torch.randn(1, 4, 6, 6), torch.ones(1)).any()


def test_skip_dropout_only_on_stride_one_identity_when_rate_positive():
    net = SearchNetwork(4, 3, 3, full_switches(), full_switches(), skip_dropout_rate=0.3)
    drops = [m for m in net.modules() if isinstance(m, SkipDropout)]
    # normal cell: 14 stride-1 skips; each of 2 reduction cells: 6 (the edges from nodes 0..2)
    assert len(drops) == 14 + 2 * 6
    net.set_skip_dropout(0.1)
    assert all(m.rate == 0.1 for m in drops)
    assert not [
        m
        for m in SearchNetwork(4, 3, 3, full_switches(), full_switches(), 0.0).modules()
        if isinstance(m, SkipDropout)
    ]


def test_alphas_are_small_shared_per_cell_type_and_get_gradients():
    sw = harness_switches(2)
    net = SearchNetwork(4, 3, 4, sw, sw, alpha_generator=torch.Generator().manual_seed(0))
    assert net.alphas_normal.shape == (NUM_EDGES, 5) and net.alphas_reduce.shape == (NUM_EDGES, 5)
    assert net.alphas_normal.abs().max() < 0.01
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 2])
    F.cross_entropy(net(x), y).backward()
    assert net.alphas_normal.grad.abs().sum() > 0 and net.alphas_reduce.grad.abs().sum() > 0
    net.zero_grad(set_to_none=True)
    F.cross_entropy(net(x, arch_grad=False), y).backward()
    assert net.alphas_normal.grad is None  # a weight step builds no graph through the alphas
    assert all(p.grad is not None for p in net.weight_parameters())


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_harness_masks(stage):
    sw = harness_switches(stage)
    assert len(sw) == NUM_EDGES and len({tuple(r) for r in sw}) == 1
    assert sum(sw[0]) == (8, 5, 3)[stage - 1]
    assert ("none" in [p for p, on in zip(PRIMITIVES, sw[0]) if on]) == (stage == 1)
