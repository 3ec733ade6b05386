"""Every registered op, generated from the registry: shape, stride 2, backward."""

import pytest
import torch

from pdarts_ray.core.ops import OPS, build_op
from pdarts_ray.core.space import PRIMITIVES


def test_registry_holds_the_primitives_in_reference_order():
    assert PRIMITIVES == (
        "none",
        "max_pool_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "sep_conv_3x3",
        "sep_conv_5x5",
        "dil_conv_3x3",
        "dil_conv_5x5",
    )
    assert list(OPS)[:8] == list(PRIMITIVES)


@pytest.mark.parametrize("affine", [False, True], ids=["search", "eval"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("name", list(OPS))
def test_op_shape_and_backward(name, stride, affine):
    torch.manual_seed(0)
    op = build_op(name, 8, stride, affine)
    op.train()
    x = torch.randn(2, 8, 12, 12, requires_grad=True)
    y = op(x)
    assert y.shape == (2, 8, 12 // stride, 12 // stride)
    if name == "none":
        assert not y.any()
        return
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for p in op.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert all(p.requires_grad for p in op.parameters())
    if not affine:
        assert not any(getattr(m, "affine", False) for m in op.modules())


@pytest.mark.parametrize("name", [n for n in OPS if n != "none"])
def test_op_eval_mode_is_deterministic(name):
    op = build_op(name, 4, 1, True).eval()
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(op(x), op(x))


@pytest.mark.parametrize("name", [n for n in OPS if n != "none"])
def test_stride_2_on_an_odd_size_rounds_up(name):
    # 7x7 -> 4x4 for every op that is ever run (`none` is never run in a supernet)
    assert build_op(name, 4, 2, False)(torch.randn(1, 4, 7, 7)).shape[-2:] == (4, 4)


def test_unknown_op_is_a_key_error():
    with pytest.raises(KeyError, match="unknown op"):
        build_op("conv_9x9", 4, 1, True)
