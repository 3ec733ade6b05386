"""Candidate operations, in a registry: name -> factory(C, stride, affine) -> nn.Module.

Every op maps C channels to C channels; stride 2 halves the spatial size (integer
division). `affine=False` in the search supernet, `True` in evaluation networks.
The 8 search primitives are registered first; ops that only appear in published
genotypes of other methods (NASNet, AmoebaNet) are registered too, so such
genotypes can be built, but they never enter the search space.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: dict[str, OpFactory] = {}


def register_op(name: str):
    def decorate(factory: OpFactory) -> OpFactory:
        if name in OPS:
            raise KeyError(f"op '{name}' registered twice")
        OPS[name] = factory
        return factory

    return decorate


def build_op(name: str, channels: int, stride: int, affine: bool) -> nn.Module:
    try:
        factory = OPS[name]
    except KeyError:
        raise KeyError(f"unknown op '{name}'") from None
    return factory(channels, stride, affine)


class Zero(nn.Module):
    """`none`: an all-zero output. The supernet never calls it (its term is known to be 0)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        n, c, h, w = x.shape
        return x.new_zeros(n, c, h // self.stride, w // self.stride)


class Identity(nn.Module):
    def forward(self, x):
        return x


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
    """ReLU -> depthwise (dilated) conv -> pointwise conv -> BN."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, dilation, affine=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in,
                c_in,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=c_in,
                bias=False,
            ),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks with dilation 1; only the first one strides."""

    def __init__(self, c_in, c_out, kernel_size, stride, padding, affine=True):
        super().__init__(
            DilConv(c_in, c_in, kernel_size, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel_size, 1, padding, 1, affine),
        )


class FactorizedReduce(nn.Module):
    """Halve H and W with two 1x1 stride-2 convs, the second shifted by one pixel."""

    def __init__(self, c_in, c_out, affine=True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x):
        x = self.relu(x)
        # An odd input size makes the shifted branch one pixel smaller; the reference
        # only ever sees even sizes, so pad the shifted input back rather than crop.
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            shifted = nn.functional.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


@register_op("none")
def _none(C, stride, affine):
    return Zero(stride)


@register_op("max_pool_3x3")
def _max_pool_3x3(C, stride, affine):
    return nn.MaxPool2d(3, stride=stride, padding=1)


@register_op("avg_pool_3x3")
def _avg_pool_3x3(C, stride, affine):
    return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)


@register_op("skip_connect")
def _skip_connect(C, stride, affine):
    return Identity() if stride == 1 else FactorizedReduce(C, C, affine)


@register_op("sep_conv_3x3")
def _sep_conv_3x3(C, stride, affine):
    return SepConv(C, C, 3, stride, 1, affine)


@register_op("sep_conv_5x5")
def _sep_conv_5x5(C, stride, affine):
    return SepConv(C, C, 5, stride, 2, affine)


@register_op("dil_conv_3x3")
def _dil_conv_3x3(C, stride, affine):
    return DilConv(C, C, 3, stride, 2, 2, affine)


@register_op("dil_conv_5x5")
def _dil_conv_5x5(C, stride, affine):
    return DilConv(C, C, 5, stride, 4, 2, affine)


# Not search primitives: used by NASNet / AmoebaNet genotypes from the DARTS family.
@register_op("sep_conv_7x7")
def _sep_conv_7x7(C, stride, affine):
    return SepConv(C, C, 7, stride, 3, affine)


@register_op("conv_7x1_1x7")
def _conv_7x1_1x7(C, stride, affine):
    return nn.Sequential(
        nn.ReLU(inplace=False),
        nn.Conv2d(C, C, (1, 7), stride=(1, stride), padding=(0, 3), bias=False),
        nn.Conv2d(C, C, (7, 1), stride=(stride, 1), padding=(3, 0), bias=False),
        nn.BatchNorm2d(C, affine=affine),
    )
