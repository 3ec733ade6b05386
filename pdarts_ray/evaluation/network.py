"""Evaluation networks: a discrete genotype stacked into a full CIFAR or ImageNet network.

Cells follow the search cell's topology (two preprocessed inputs, two genes per node,
the concat of the listed states as output) with one op per gene, built from the same
op registry as the supernet but with affine BatchNorm. During training each node
output is op_a(h_a) + op_b(h_b), where every branch that is not an identity is
dropped per sample with probability p (drop path). An auxiliary classifier sits after
the second reduction cell; it only runs in training mode.

Shapes below are for a batch of N images; C is the cell width of the first stage.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.ops import FactorizedReduce, Identity, ReLUConvBN, build_op
from ..core.space import Genotype

NETWORKS = ("cifar", "imagenet")
AUX_POOL_STRIDE = {"cifar": 3, "imagenet": 2}  # 8x8 -> 2x2 (CIFAR at 32), 7x7 -> 2x2 (ImageNet at 224)
STEM_HALVINGS = {"cifar": 0, "imagenet": 3}  # the ImageNet stem has three stride-2 convolutions


def drop_path(x: torch.Tensor, p: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability p, scale the survivors by 1/(1-p)."""
    keep = 1.0 - p
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class EvalCell(nn.Module):
    """One cell of a genotype: `genes` are (op, input) pairs, two per intermediate node."""

    def __init__(self, genes, concat, C_pp: int, C_p: int, C: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.reduction = reduction
        self.channels = C
        # s0 comes from two cells back: if the previous cell reduced, s0 is twice as large
        self.preprocess0 = FactorizedReduce(C_pp, C) if reduction_prev else ReLUConvBN(C_pp, C, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0)
        # only edges leaving the cell inputs stride in a reduction cell
        self.ops = nn.ModuleList(
            build_op(op, C, 2 if reduction and j < 2 else 1, affine=True) for op, j in genes
        )
        self.inputs = [j for _, j in genes]
        self.droppable = [not isinstance(op, Identity) for op in self.ops]
        self.concat = list(concat)
        self.multiplier = len(self.concat)

    def forward(self, s0, s1, drop_prob: float = 0.0):  # s0: N,C_pp,2H,2W or N,C_pp,H,W; s1: N,C_p,H,W
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each N,C,H,W
        for node in range(len(self.ops) // 2):
            total = None
            for k in (2 * node, 2 * node + 1):
                h = self.ops[k](states[self.inputs[k]])
                if self.training and drop_prob > 0 and self.droppable[k]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # N,multiplier*C,H',W'


class AuxiliaryHead(nn.Module):
    """The auxiliary classifier after the second reduction cell.

    ReLU -> AvgPool 5 (stride 3 for CIFAR, 2 for ImageNet) -> 1x1 conv to 128 -> BN -> ReLU
    -> 2x2 conv to 768 -> BN -> ReLU -> Linear. At the designed input sizes (8x8 for CIFAR,
    7x7 for ImageNet) the pool leaves 2x2 and the 2x2 conv 1x1; the final average pool only
    matters for larger inputs and changes nothing at those sizes.
    """

    def __init__(self, C: int, num_classes: int, pool_stride: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=pool_stride, padding=0, count_include_pad=False),
            nn.Conv2d(C, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x):  # x: N,C,h,w with h,w >= 5 + pool_stride
        x = self.features(x)  # N,768,1,1 at the designed size
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))  # N,classes


class EvalNetwork(nn.Module):
    """Stem -> `layers` cells (reductions at L//3 and 2L//3, which double C) -> pool -> linear.

    Subclasses provide the stem: `stem_states(x)` returns the first two cell inputs.
    `forward` returns (logits, auxiliary logits or None); set `drop_path_prob` per epoch.
    """

    kind = ""

    def __init__(
        self,
        genotype: Genotype,
        C: int,
        num_classes: int,
        layers: int,
        auxiliary: bool,
        C_stem: int,
        first_reduction_prev: bool,
    ):
        super().__init__()
        self.genotype = genotype
        self.layers = layers
        self.aux_index = 2 * layers // 3
        self.drop_path_prob = 0.0
        self.cells = nn.ModuleList()
        C_pp, C_p, C_cur = C_stem, C_stem, C
        reduction_prev = first_reduction_prev
        C_aux = None
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_cur *= 2
            genes, concat = (
                (genotype.reduce, genotype.reduce_concat)
                if reduction
                else (genotype.normal, genotype.normal_concat)
            )
            cell = EvalCell(genes, concat, C_pp, C_p, C_cur, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            C_pp, C_p = C_p, cell.multiplier * C_cur
            if i == self.aux_index:
                C_aux = C_p
        # named "auxiliary_head": parameter counts exclude names containing "auxiliary"
        self.auxiliary_head = (
            AuxiliaryHead(C_aux, num_classes, AUX_POOL_STRIDE[self.kind]) if auxiliary else None
        )
        self.classifier = nn.Linear(C_p, num_classes)

    def stem_states(self, x):
        raise NotImplementedError

    def forward(self, x):  # x: N,3,H,W -> (N,classes, N,classes or None)
        s0, s1 = self.stem_states(x)
        logits_aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                logits_aux = self.auxiliary_head(s1)
        logits = self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
        return logits, logits_aux

    def layout(self) -> list[tuple[int, str]]:
        """(cell width C, "N" or "R") per cell, as in the design fixtures."""
        return [(cell.channels, "R" if cell.reduction else "N") for cell in self.cells]


class NetworkCIFAR(EvalNetwork):
    """For 32x32 images: stem = 3x3 conv (3 -> 3C) + BN; both first cell inputs are the stem."""

    kind = "cifar"

    def __init__(self, genotype: Genotype, C: int, num_classes: int, layers: int, auxiliary: bool):
        super().__init__(
            genotype, C, num_classes, layers, auxiliary, C_stem=3 * C, first_reduction_prev=False
        )
        self.stem = nn.Sequential(nn.Conv2d(3, 3 * C, 3, padding=1, bias=False), nn.BatchNorm2d(3 * C))

    def stem_states(self, x):  # x: N,3,H,W
        s = self.stem(x)  # N,3C,H,W
        return s, s


class NetworkImageNet(EvalNetwork):
    """For 224x224 images: a two-stage stem reduces 8x before the cells.

    stem0: 3x3 s2 conv (3 -> C/2), BN, ReLU, 3x3 s2 conv (C/2 -> C), BN   (N,C,56,56)
    stem1: ReLU, 3x3 s2 conv (C -> C), BN                                (N,C,28,28)
    The first cell's s0 (stem0) is twice the size of its s1, as after a reduction.
    """

    kind = "imagenet"

    def __init__(self, genotype: Genotype, C: int, num_classes: int, layers: int, auxiliary: bool):
        super().__init__(genotype, C, num_classes, layers, auxiliary, C_stem=C, first_reduction_prev=True)
        self.stem0 = nn.Sequential(
            nn.Conv2d(3, C // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(C // 2, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(C, C, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
        )

    def stem_states(self, x):  # x: N,3,H,W
        s0 = self.stem0(x)  # N,C,H/4,W/4
        return s0, self.stem1(s0)  # N,C,H/8,W/8


def build_network(
    genotype: Genotype, network: str, channels: int, num_classes: int, layers: int, auxiliary: bool
) -> EvalNetwork:
    if network not in NETWORKS:
        raise ValueError(f"unknown network '{network}' (choose from {', '.join(NETWORKS)})")
    check_network_args(network, channels, layers)
    cls = NetworkCIFAR if network == "cifar" else NetworkImageNet
    return cls(genotype, channels, num_classes, layers, auxiliary)


def check_network_args(network: str, channels: int, layers: int) -> None:
    """Raise ValueError for a width or depth the network cannot be built with."""
    if channels < 1:
        raise ValueError(f"channels: must be at least 1, got {channels}")
    # the ImageNet stem halves C, and its first cell factorised-reduces C channels
    if network == "imagenet" and channels % 2:
        raise ValueError(f"channels: must be even for the imagenet network, got {channels}")
    if layers < 3:
        raise ValueError(f"layers: must be at least 3 (two reduction cells and a normal one), got {layers}")


def auxiliary_input_size(network: str, image_size: int) -> int:
    """Side of the feature map the auxiliary head sees: every stride-2 step rounds up."""
    size = image_size
    for _ in range(STEM_HALVINGS[network] + 2):
        size = math.ceil(size / 2)
    return size


def auxiliary_min_input(network: str) -> int:
    """Smallest feature side the auxiliary head accepts: the 5x5 pool must leave 2x2."""
    return 5 + AUX_POOL_STRIDE[network]
