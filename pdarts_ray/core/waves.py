"""The plan of the batched path (`kernels: batched`, see batched.py): each cell's four waves by
source state, the op kinds of each wave with the edges that carry them, and the network-wide
order of the running statistics those kinds update.

Positions in a wave are node-major: the term of (node j, source s) sits at j * S + s.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .ops import SepConv
from .space import NODE_OFFSETS, STEPS

POOLS = ("max_pool_3x3", "avg_pool_3x3")
CONVS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
KIND_ORDER = (*POOLS, "skip_connect", *CONVS)


@dataclass(eq=False)
class KindGroup:
    """One op kind in one wave: the edges that carry it, in the wave's position order."""

    name: str
    positions: list[int]
    sources: list[int]  # the wave source each position reads
    ops: list[nn.Module]
    w_slice: slice  # into the cell's gathered mixing weights
    full: bool  # carried by every edge of the wave, in order
    index: torch.Tensor | None = None  # positions (partial groups), set on the device
    source_index: torch.Tensor | None = None
    stats: list[slice] = field(default_factory=list)  # per BatchNorm block, in the network buffer
    params: slice = field(default_factory=lambda: slice(0))  # into the cell's parameter list

    @property
    def skip_rate(self) -> float:
        op = self.ops[0]
        return op[1].rate if isinstance(op, nn.Sequential) else 0.0

    @property
    def eps(self) -> float:
        return self.ops[0][1].eps if self.name in POOLS else self.ops[0].bn.eps

    @property
    def blocks(self) -> list[tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]]:
        """(depthwise, pointwise, BatchNorm) of each block of a conv kind, first edge's."""
        op = self.ops[0]
        return [(b[1], b[2], b[3]) for b in (list(op) if isinstance(op, SepConv) else [op])]


@dataclass(eq=False)
class Wave:
    sources: list[int]  # states read: 0 = s0, 1 = s1, 2 + i = node i
    nodes: list[int]  # nodes fed, in order
    edges: list[int]  # position -> edge; (node j, source s) at j * S + s
    stride: int
    groups: list[KindGroup]


def plan_cell(cell) -> list[Wave]:
    """The waves of a SearchCell and, per wave, its op kinds with their edges."""
    waves, w_offset = [], 0
    for first in range(STEPS):
        sources = [0, 1] if first == 0 else [first + 1]
        nodes = list(range(first, STEPS))
        edges = [NODE_OFFSETS[j] + s for j in nodes for s in sources]
        stride = 2 if cell.reduction and first == 0 else 1
        groups = []
        for name in KIND_ORDER:
            positions = [p for p, e in enumerate(edges) if name in cell.edges[e].names]
            if not positions:
                continue
            ops = [cell.edges[edges[p]].op(name) for p in positions]
            if name == "skip_connect" and stride == 2:
                name = "reduce"
            groups.append(
                KindGroup(
                    name,
                    positions,
                    [p % len(sources) for p in positions],
                    ops,
                    slice(w_offset, w_offset + len(positions)),
                    positions == list(range(len(edges))),
                )
            )
            w_offset += len(positions)
        waves.append(Wave(sources, nodes, edges, stride, groups))
    return waves


def weight_index(cell, waves: list[Wave]) -> list[int]:
    """Flat indices into the cell's (14 x n_on) softmax rows, in the order the groups read them."""
    n_on = cell.edges[0].n_on
    return [
        wave.edges[p] * n_on
        + cell.edges[wave.edges[p]].column(g.name if g.name != "reduce" else "skip_connect")
        for wave in waves
        for g in wave.groups
        for p in g.positions
    ]


def group_params(g: KindGroup) -> list[nn.Parameter]:
    if g.name in CONVS:
        out = []
        for b in range(len(g.blocks)):
            out += [_block(op, b)[0].weight for op in g.ops] + [_block(op, b)[1].weight for op in g.ops]
        return out
    if g.name == "reduce":
        return [op.conv_1.weight for op in g.ops] + [op.conv_2.weight for op in g.ops]
    return []


def group_norms(g: KindGroup) -> list[list[tuple[nn.BatchNorm2d, slice | None]]]:
    """Per BatchNorm call of a group, the (module, channel range) whose running statistics it
    updates, in channel order."""
    if g.name in CONVS:
        return [[(_block(op, b)[2], None) for op in g.ops] for b in range(len(g.blocks))]
    if g.name == "reduce":  # channels [first halves of every edge; second halves]
        half = g.ops[0].bn.num_features // 2
        return [[(op.bn, slice(0, half)) for op in g.ops] + [(op.bn, slice(half, None)) for op in g.ops]]
    if g.name in POOLS:
        return [[(op[1], None) for op in g.ops]]
    return []


def _block(op, b):
    block = op[b] if isinstance(op, SepConv) else op
    return block[1], block[2], block[3]


class BatchedNetworkPlan:
    """Every cell's waves, and the network-wide order of the running statistics they update."""

    def __init__(self, cells):
        self.cells = []
        self.norms: list[tuple[nn.BatchNorm2d, slice | None]] = []
        offset = 0
        for cell in cells:
            waves = plan_cell(cell)
            params: list = []
            for wave in waves:
                for g in wave.groups:
                    for norms in group_norms(g):
                        size = sum(_channels(bn, part) for bn, part in norms)
                        g.stats.append(slice(offset, offset + size))
                        offset += size
                        self.norms += norms
                    n = len(group_params(g))
                    g.params = slice(len(params), len(params) + n)
                    params += group_params(g)
            self.cells.append((waves, weight_index(cell, waves), _partial_index(waves)))
        self.modules = list(dict.fromkeys(bn for bn, _ in self.norms))
        self._cached_key = None
        self._lists = None

    def buffers(self):
        """The running-statistics tensors (or views of them) in buffer order; rebuilt whenever a
        module's buffers were replaced (`.to()`, a load with assign)."""
        key = tuple(id(bn.running_mean) for bn in self.modules)
        if key != self._cached_key:

            def part(t, s):
                return t if s is None else t[s]

            self._lists = (
                [part(bn.running_mean, s) for bn, s in self.norms],
                [part(bn.running_var, s) for bn, s in self.norms],
                [bn.num_batches_tracked for bn in self.modules],
            )
            self._cached_key = key
        return self._lists


def _channels(bn, part):
    return bn.num_features if part is None else len(range(bn.num_features)[part])


def _partial_index(waves) -> list[int]:
    """Positions and sources of the groups not carried by every edge, one flat list; each such
    group's index tensors are views of it on the device."""
    flat = []
    for wave in waves:
        for g in wave.groups:
            if not g.full:
                flat += g.positions + g.sources
    return flat


def attach_partial_index(waves, flat: torch.Tensor):
    """Point the partial groups' index tensors into `flat`, once per buffer (a device move
    replaces it)."""
    partial = [g for wave in waves for g in wave.groups if not g.full]
    if not partial or (partial[0].index is not None and partial[0].index._base is flat):
        return
    at = 0
    for g in partial:
        n = len(g.positions)
        g.index, g.source_index = flat[at : at + n], flat[at + n : at + 2 * n]
        at += 2 * n


class RunningStats:
    """The running statistics of a forward pass as one buffer each: gathered before, written back after."""

    def __init__(self, plan: BatchedNetworkPlan):
        self.means, self.vars, self.counts = plan.buffers()
        self.mean = torch.cat(self.means) if self.means else None
        self.var = torch.cat(self.vars) if self.vars else None

    def write_back(self):
        if not self.means:
            return
        sizes = [t.numel() for t in self.means]
        torch._foreach_copy_(self.means, list(self.mean.split(sizes)))
        torch._foreach_copy_(self.vars, list(self.var.split(sizes)))
        torch._foreach_add_(self.counts, 1)


def weight_views(waves, params, flat):
    """Each grouped kind's weights as one grouped-convolution weight per block (views of `flat`)."""
    offsets, at = [], 0
    for p in params:
        offsets.append(at)
        at += p.numel()
    views = {}
    for i, wave in enumerate(waves):
        for gi, g in enumerate(wave.groups):
            if g.name not in CONVS and g.name != "reduce":
                continue
            P = len(g.positions)
            pairs = []
            for b in range(len(g.blocks) if g.name in CONVS else 1):
                pair = []
                for k in range(2):
                    first = g.params.start + 2 * P * b + k * P
                    shape = params[first].shape
                    pair.append(
                        flat[offsets[first] : offsets[first] + P * shape.numel()].view(
                            P * shape[0], *shape[1:]
                        )
                    )
                pairs.append(tuple(pair))
            views[(i, gi)] = pairs
    return views
