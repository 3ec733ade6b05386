"""The search supernet of one stage: every edge is a softmax-weighted sum of its ops.

Shapes below are for a batch of N images of C channels at H x W.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batched import batched_cell
from .kernels import dropout_mask, fused_term, op_kind
from .ops import FactorizedReduce, Identity, ReLUConvBN, build_op
from .space import NONE, NUM_EDGES, PRIMITIVES, STEPS, Switches, edge_input, ops_on
from .waves import BatchedNetworkPlan, RunningStats


class SkipDropout(nn.Module):
    """Element-wise dropout on a stride-1 skip-connect; its rate is set every epoch.

    nn.Dropout's computation, x * (mask / keep), with the mask drawn as nn.Dropout draws
    it, only faster (see `dropout_mask`)."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x):
        if not self.training or self.rate == 0:
            return x
        keep = 1.0 - self.rate
        return x * dropout_mask(x, keep).to(x.dtype).div_(keep)


class MixedOp(nn.Module):
    """One edge: sum_k w_k op_k(x) over the switched-on ops.

    `none` keeps its column in the alpha row (it takes softmax mass) but is never
    built or run: its term is zero. With `kernels="lean"` each term is one memory-lean
    kernel (kernels.py); with "reference" the modules run as plain PyTorch.
    """

    def __init__(self, C: int, stride: int, switch_row, skip_dropout_rate: float):
        super().__init__()
        self.ops = nn.ModuleList()
        self.skip_dropout: SkipDropout | None = None
        self.names: list[str] = []  # each op's primitive
        self.n_on = sum(bool(on) for on in switch_row)
        columns = []
        for column, k in enumerate(ops_on(switch_row)):
            if k == NONE:
                continue
            name = PRIMITIVES[k]
            op = build_op(name, C, stride, affine=False)
            if "pool" in name:
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            if isinstance(op, Identity) and skip_dropout_rate > 0:
                self.skip_dropout = SkipDropout(skip_dropout_rate)
                op = nn.Sequential(op, self.skip_dropout)
            self.ops.append(op)
            self.names.append(name)
            columns.append(column)
        self.kinds = [op_kind(op) for op in self.ops]
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        self._columns = columns
        self.stride = stride

    def op(self, name: str) -> nn.Module:
        return self.ops[self.names.index(name)]

    def column(self, name: str) -> int:
        """The op's column in the edge's softmax row."""
        return self._columns[self.names.index(name)]

    def forward(self, x, weights, kernels: str = "reference", train_weights: bool = True):
        # x: N,C,H,W; weights: the edge's softmax row (n_on,) -> N,C,H/stride,W/stride
        if not self.ops:  # only `none` on this edge
            n, c, h, w = x.shape
            return x.new_zeros(n, c, h // self.stride, w // self.stride)
        w = weights.index_select(0, self.columns)
        if kernels == "lean":
            rate = self.skip_dropout.rate if self.skip_dropout is not None else 0.0
            out = None
            for k, kind in enumerate(self.kinds):
                term = fused_term(kind, self.ops[k], x, w[k], train_weights, rate)
                out = term if out is None else out.add_(term)  # in place: no kernel keeps its output
            return out
        out = self.ops[0](x) * w[0]
        for k in range(1, len(self.ops)):
            out = out + self.ops[k](x) * w[k]
        return out


class SearchCell(nn.Module):
    def __init__(self, C_pp, C_p, C, reduction, reduction_prev, switches: Switches, skip_dropout_rate: float):
        super().__init__()
        self.reduction = reduction
        self.preprocess0 = (
            FactorizedReduce(C_pp, C, affine=False)
            if reduction_prev
            else ReLUConvBN(C_pp, C, 1, 1, 0, affine=False)
        )
        self.preprocess1 = ReLUConvBN(C_p, C, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(C, 2 if reduction and edge_input(e) < 2 else 1, switches[e], skip_dropout_rate)
            for e in range(NUM_EDGES)
        )

    def forward(
        self,
        s0,
        s1,
        weights,
        kernels: str = "reference",
        train_weights: bool = True,
        waves=None,
        stats: RunningStats | None = None,
    ):
        # s0, s1: the two previous cells' outputs; weights: 14 x n_on softmax rows
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # each N,C,H,W
        if kernels == "batched":
            return batched_cell(self, waves, *states, weights, stats, train_weights)
        e = 0
        for _ in range(STEPS):
            node = None
            for h in states:
                term = self.edges[e](h, weights[e], kernels, train_weights)
                node = term if node is None else node + term
                e += 1
            states.append(node)
        return torch.cat(states[-STEPS:], dim=1)  # N,4C,H',W'


class SearchNetwork(nn.Module):
    """Stem -> `layers` cells (reductions at L//3 and 2L//3) -> global pool -> linear.

    Alphas are shared by all cells of a type and drawn as 1e-3 * N(0, 1).
    """

    def __init__(
        self,
        C: int,
        num_classes: int,
        layers: int,
        switches_normal: Switches,
        switches_reduce: Switches,
        skip_dropout_rate: float = 0.0,
        in_channels: int = 3,
        alpha_generator: torch.Generator | None = None,
        kernels: str = "lean",
    ):
        super().__init__()
        self.kernels = kernels
        stem_c = 3 * C
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_c, 3, padding=1, bias=False), nn.BatchNorm2d(stem_c)
        )
        C_pp, C_p, C_cur = stem_c, stem_c, C
        reduction_prev = False
        self.cells = nn.ModuleList()
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                C_cur *= 2
            switches = switches_reduce if reduction else switches_normal
            self.cells.append(
                SearchCell(C_pp, C_p, C_cur, reduction, reduction_prev, switches, skip_dropout_rate)
            )
            reduction_prev = reduction
            C_pp, C_p = C_p, STEPS * C_cur
        self.classifier = nn.Linear(C_p, num_classes)

        def draw(switches):
            n_on = sum(switches[0])
            return nn.Parameter(1e-3 * torch.randn(NUM_EDGES, n_on, generator=alpha_generator))

        self.alphas_normal = draw(switches_normal)
        self.alphas_reduce = draw(switches_reduce)
        # the batched path's waves; index tensors as buffers so that they follow the device
        self.batched_plan = BatchedNetworkPlan(self.cells)
        for cell, (_, weight_index, partial) in zip(self.cells, self.batched_plan.cells):
            cell.register_buffer(
                "batched_weight_index", torch.tensor(weight_index, dtype=torch.long), persistent=False
            )
            cell.register_buffer(
                "batched_partial_index", torch.tensor(partial, dtype=torch.long), persistent=False
            )

    def arch_parameters(self) -> list[nn.Parameter]:
        return [self.alphas_normal, self.alphas_reduce]

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if not name.startswith("alphas_")]

    def set_skip_dropout(self, rate: float):
        """The skip-dropout rate of every skip-connect (the stage sets it every epoch)."""
        for m in self.modules():
            if isinstance(m, SkipDropout):
                m.rate = rate

    def forward(self, x, arch_grad: bool = True, weight_grad: bool = True):  # x: N,3,H,W -> logits N,classes
        """`arch_grad=False` in the weight step, `weight_grad=False` in the architecture step:
        the fused kernels then keep nothing for gradients nobody asks for."""
        w_normal = F.softmax(self.alphas_normal, dim=-1)
        w_reduce = F.softmax(self.alphas_reduce, dim=-1)
        if not arch_grad:  # weight step: alphas are constants, no graph through them
            w_normal, w_reduce = w_normal.detach(), w_reduce.detach()
        # The lean kernels are float32 autograd Functions that torch.compile and autocast
        # do not see into: those run the module path. In eval nothing is kept anyway.
        lean = (
            self.training
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling()
        )
        kernels = self.kernels if lean else "reference"
        stats = RunningStats(self.batched_plan) if kernels == "batched" else None
        s0 = s1 = self.stem(x)
        for cell, (waves, _, _) in zip(self.cells, self.batched_plan.cells):
            s0, s1 = (
                s1,
                cell(s0, s1, w_reduce if cell.reduction else w_normal, kernels, weight_grad, waves, stats),
            )
        if stats is not None:
            stats.write_back()
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))
