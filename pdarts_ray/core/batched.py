"""`kernels: batched`: a search cell computed per source state and op kind, not per edge.

A cell's 14 edges read only 5 states. In training mode this path computes the cell in four
waves by source state -- (s0, s1), then node 0, node 1, node 2 -- and in each wave runs every
op kind once for all the edges that carry it:

- pooling and its affine-free BatchNorm on batch statistics are one tensor per source state,
  whatever edge reads it: pooled and normalised once (each edge's running statistics are
  still updated, as the module path does);
- the ReLU that opens every conv op is one tensor per source state too; the conv kinds run
  on it repeated once per edge: each depthwise convolution is one call over all its edges'
  channels, each pointwise one a grouped call, each BatchNorm one call over the
  concatenated channels;
- the stride-2 skip of reduction cells (FactorizedReduce) is grouped the same way;
- a skip with dropout draws the masks of all its edges at once;
- `none` keeps its softmax column and computes nothing.

Wave buffers are laid out node-major: the term of (node j, source s) sits at position
j * S + s, so a term computed once per source broadcasts over the nodes without a copy, and
from node 0 on the nodes' sums are written straight into the cell's output.

The whole cell is one autograd node that keeps what the lean kernels keep (each BatchNorm's
input and statistics, the depthwise outputs in the weight step, boolean dropout masks) and
recomputes the rest. It computes the module path's function, but not bit for bit: weights
are gathered, sums run in another order, pooled statistics come from `var_mean`. Running
statistics are passed to BatchNorm as one network-wide buffer, gathered before the
network's forward pass and written back to each module after it, so the modules, their
`state_dict` and the optimisers see the same tensors as on every other path. The plan
(waves, kinds, edges, the order of the statistics) is built once per network in waves.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function

from .grouped_ops import conv_backward, halves_to_edges, pool, repeat, shifted
from .kernels import _bn_again, _bn_backward, dropout_mask
from .space import STEPS
from .waves import POOLS, RunningStats, attach_partial_index, group_params, weight_views

aten = torch.ops.aten


def skip_masks(like: torch.Tensor, keep: float) -> torch.Tensor:
    """The dropout masks of a wave's skip edges, drawn at once: each edge's channels get their
    own draws (nn.Dropout's distribution; the random stream is read in another order than
    the per-edge paths read it)."""
    return dropout_mask(like, keep)


# ---------------------------------------------------------------- pieces


def _bn(x, stats: RunningStats, s: slice, bn: nn.BatchNorm2d):
    """Training-mode affine-free BatchNorm updating its slice of the network's running statistics."""
    return torch.native_batch_norm(x, None, None, stats.mean[s], stats.var[s], True, bn.momentum, bn.eps)


# ---------------------------------------------------------------- the cell


def batched_cell(cell, waves, s0, s1, weights, stats: RunningStats, train_weights: bool):
    """A SearchCell's output from its two preprocessed inputs, computed by waves."""
    if not any(
        wave.groups for wave in waves
    ):  # only `none` anywhere: zeros, outside the graph as on the module path
        stride = waves[0].stride
        return s0.new_zeros(s0.shape[0], STEPS * s0.shape[1], s0.shape[2] // stride, s0.shape[3] // stride)
    attach_partial_index(waves, cell.batched_partial_index)
    params = [p for wave in waves for g in wave.groups for p in group_params(g)]
    if not train_weights:
        params = [p.detach() for p in params]
    return _BatchedCell.apply(s0, s1, weights, (waves, cell.batched_weight_index), stats, *params)


class _BatchedCell(Function):
    """The four waves of a cell as one autograd node. Inputs: the two preprocessed states,
    the (14 x n_on) mixing weights, the cell's plan, the running statistics, then the op
    weights in the plan's order. Output: the cell's output, N x 4C x H' x W'."""

    @staticmethod
    def forward(ctx, s0, s1, weights, plan, stats, *params):
        waves, weight_index = plan
        run = _Run(waves, weight_index, weights.detach(), params, train_weights=any(ctx.needs_input_grad[5:]))
        out = run.forward(s0, s1, stats)
        ctx.save_for_backward(*run.kept)
        run.kept = None
        ctx.run = run
        return out

    @staticmethod
    def backward(ctx, g):
        run, ctx.run = ctx.run, None
        run.kept = list(ctx.saved_tensors)
        need = ctx.needs_input_grad
        gs0, gs1, gw, gparams = run.backward(g, need[0] or need[1], need[2], any(need[5:]))
        return (gs0, gs1, gw, None, None, *gparams)


class _Run:
    """One forward pass of a cell and its backward pass. What backward needs goes to `kept`
    (saved by the autograd node), and `slots` remembers where each piece sits."""

    def __init__(self, waves, weight_index, weights, params, train_weights):
        self.waves, self.weight_index, self.weights, self.params = waves, weight_index, weights, params
        self.train_weights = train_weights
        self.kept: list[torch.Tensor] = []
        self.slots: dict = {}

    def keep(self, key, *tensors):
        self.slots[key] = (len(self.kept), len(tensors))
        self.kept += tensors

    def kept_at(self, key):
        i, n = self.slots[key]
        return self.kept[i : i + n]

    def empty(self, *shape, like):
        return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=self.fmt)

    # -- forward

    def forward(self, s0, s1, stats):
        n, c, h, w = s0.shape
        self.c = c
        self.fmt = (
            torch.channels_last
            if (s0.is_contiguous(memory_format=torch.channels_last) and not s0.is_contiguous())
            else torch.contiguous_format
        )
        flat = torch.cat([p.reshape(-1) for p in self.params]) if self.params else None
        self.views = weight_views(self.waves, self.params, flat)
        self.mix = self.weights.reshape(-1).index_select(0, self.weight_index)
        stride = self.waves[0].stride  # a stride-2 op of P-DARTS maps H to ceil(H / 2)
        out = self.empty(n, STEPS * c, (h - 1) // stride + 1, (w - 1) // stride + 1, like=s0)
        hw = out.shape[2:]
        for i, wave in enumerate(self.waves):
            if i == 0:
                x = torch.cat([s0, s1], dim=1)
                self.keep("x0", x)
                terms = self.empty(n, len(wave.edges) * c, *hw, like=s0).zero_()
            else:
                x = out[:, (i - 1) * c : i * c]
                terms = out[:, i * c :]
            self.forward_wave(i, wave, x, terms, stats)
            if i == 0:  # node j = its term from s0 + its term from s1
                t = terms.view(n, STEPS, 2, c, *hw)
                torch.add(t[:, :, 0], t[:, :, 1], out=out.view(n, STEPS, c, *hw))
        self.keep("out", out)
        return out

    def forward_wave(self, i, wave, x, terms, stats):
        r, repeated = None, {}
        for gi, g in enumerate(wave.groups):
            key = (i, gi)
            w = self.mix[g.w_slice]
            if g.name in POOLS:
                z = self.pool_forward(key, g, x, wave, stats)
                self.add_term(terms, wave, g, z, w, per_source=True)
            elif g.name == "skip_connect":
                self.skip_forward(key, g, x, wave, terms, w)
            else:
                if r is None:
                    r = torch.relu(x)
                sources = tuple(g.sources)
                if sources not in repeated:
                    repeated[sources] = repeat(r, sources, self.c)
                if g.name == "reduce":
                    self.add_reduce_term(terms, g, self.reduce_forward(key, g, repeated[sources], stats), w)
                else:
                    self.add_term(terms, wave, g, self.conv_forward(key, g, repeated[sources], stats), w)

    def positions_view(self, t, wave, g):
        """t (N x (positions * C) x H x W) as N x J x S x C x H x W (a full group) or N x P x C x H x W."""
        n, c, hw = t.shape[0], self.c, t.shape[-2:]
        if g.full:
            return t.view(n, len(wave.nodes), len(wave.sources), c, *hw)
        return t.view(n, -1, c, *hw)

    def add_term(self, terms, wave, g, z, w, per_source=False):
        """terms[positions] += w * z; z holds a term per position, or per source (`per_source`),
        shaped as `positions_view` gives (a full group's per-source term: N x 1 x S x C x H x W)."""
        n, c, hw = terms.shape[0], self.c, terms.shape[-2:]
        S = len(wave.sources)
        if g.full:
            z = z.view(n, 1, S, c, *hw) if per_source else self.positions_view(z, wave, g)
            self.positions_view(terms, wave, g).addcmul_(z, w.view(1, len(wave.nodes), S, 1, 1, 1))
            return
        z = z.view(n, S, c, *hw).index_select(1, g.source_index) if per_source else z.view(n, -1, c, *hw)
        terms.view(n, -1, c, *hw).index_add_(1, g.index, z * w.view(1, -1, 1, 1, 1))

    def add_reduce_term(self, terms, g, z, w):
        """terms[positions] += w * z for FactorizedReduce's N x P x 2 x C/2 x H x W terms."""
        n, c, hw, P = terms.shape[0], self.c, terms.shape[-2:], len(g.positions)
        w = w.view(1, P, 1, 1, 1, 1)
        if g.full:
            terms.view(n, P, 2, c // 2, *hw).addcmul_(z, w)
        else:
            terms.view(n, -1, c, *hw).index_add_(1, g.index, (z * w).reshape(n, P, c, *hw))

    def pool_forward(self, key, g, x, wave, stats):
        c, S = self.c, len(wave.sources)
        y = pool(g.name, x, wave.stride)[0]
        # each edge's running statistics, updated as its own BatchNorm would (unbiased variance)
        var, mean = torch.var_mean(y, dim=(0, 2, 3), correction=1)
        z, save_mean, invstd = torch.native_batch_norm(y, None, None, None, None, True, 0.0, g.eps)
        momentum = g.ops[0][1].momentum
        for running, batch in ((stats.mean[g.stats[0]], mean), (stats.var[g.stats[0]], var)):
            if g.full:
                running.view(-1, S, c).lerp_(batch.view(1, S, c), momentum)
            else:
                running.view(-1, c).lerp_(batch.view(S, c).index_select(0, g.source_index), momentum)
        self.keep(key, save_mean, invstd)
        return z

    def source_terms(self, x, wave, g):
        """x per position, as `positions_view` lays positions out (a full group: broadcast over nodes)."""
        n, c, hw = x.shape[0], self.c, x.shape[-2:]
        S = len(wave.sources)
        if g.full:
            return x.view(n, 1, S, c, *hw)
        return x.view(n, S, c, *hw).index_select(1, g.source_index)

    def skip_forward(self, key, g, x, wave, terms, w):
        p = g.skip_rate
        xs = self.source_terms(x, wave, g)
        if p > 0:
            mask = skip_masks(
                self.empty(x.shape[0], len(g.positions) * self.c, *x.shape[2:], like=x), 1.0 - p
            )
            self.keep(key, mask)
            xs = xs * self.positions_view(mask, wave, g)
            w = w / (1.0 - p)
        if g.full:
            self.positions_view(terms, wave, g).addcmul_(
                xs, w.view(1, len(wave.nodes), len(wave.sources), 1, 1, 1)
            )
        else:
            terms.view(xs.shape[0], -1, self.c, *xs.shape[-2:]).index_add_(
                1, g.index, xs * w.view(1, -1, 1, 1, 1)
            )

    def conv_forward(self, key, g, h, stats):
        kept, P = [], len(g.positions)
        for b, (dw, _, bn) in enumerate(g.blocks):
            wd, wp = self.views[key][b]
            if b > 0:
                h = torch.relu(h)
            d = F.conv2d(h, wd, None, dw.stride if b == 0 else 1, dw.padding, dw.dilation, wd.shape[0])
            p = F.conv2d(d, wp, None, 1, 0, 1, P)
            h, mean, invstd = _bn(p, stats, g.stats[b], bn)
            kept += [p, mean, invstd] + ([d] if self.train_weights else [])
        self.keep(key, *kept)
        return h

    def reduce_forward(self, key, g, h, stats):
        P, c = len(g.positions), self.c
        w1, w2 = self.views[key][0]
        q = torch.cat([F.conv2d(h, w1, None, 2, 0, 1, P), F.conv2d(shifted(h), w2, None, 2, 0, 1, P)], dim=1)
        z, mean, invstd = _bn(q, stats, g.stats[0], g.ops[0].bn)
        self.keep(key, q, mean, invstd)
        # channels [first halves of every edge; second halves] -> each edge's channels in order
        return halves_to_edges(z, P, c)

    # -- backward

    def backward(self, g_out, need_x, need_w, need_params):
        self.need_w, self.need_params = need_w, need_params
        out = self.kept_at("out")[0]
        n, c = out.shape[0], self.c
        hw = out.shape[2:]
        grads = g_out.clone(memory_format=self.fmt)  # node grads; earlier nodes gain later waves' parts
        gmix = [None] * len(self.waves)
        gparams = [None] * len(self.params)
        g_x0 = None
        for i in reversed(range(len(self.waves))):
            wave = self.waves[i]
            if i == 0:
                x, g_terms = self.kept_at("x0")[0], grads.view(n, STEPS, 1, c, *hw)
            else:
                x, g_terms = (
                    out[:, (i - 1) * c : i * c],
                    grads[:, i * c :].view(n, len(wave.nodes), 1, c, *hw),
                )
            g_x, gmix[i] = self.backward_wave(i, wave, x, g_terms, gparams, need_x or i > 0)
            if i == 0:
                g_x0 = g_x
            elif g_x is not None:
                grads[:, (i - 1) * c : i * c].add_(g_x)
        gw = None
        if need_w:
            flat = torch.cat([t for t in gmix if t is not None])
            gw = (
                flat.new_zeros(self.weights.numel())
                .index_copy_(0, self.weight_index, flat)
                .view(self.weights.shape)
            )
        if g_x0 is None:
            return None, None, gw, gparams
        return g_x0[:, :c], g_x0[:, c:], gw, gparams

    def backward_wave(self, i, wave, x, g_terms, gparams, need_gx):
        n, c = x.shape[0], self.c
        J, S = len(wave.nodes), len(wave.sources)
        g_all = g_terms.expand(n, J, S, c, *g_terms.shape[-2:])  # d loss / d term of each position
        g_x, g_rep, gmix = None, {}, []
        r, repeated = None, {}

        def add_x(t):
            nonlocal g_x
            if t is not None:
                g_x = t if g_x is None else g_x.add_(t)

        for gi, g in enumerate(wave.groups):
            key = (i, gi)
            w = self.mix[g.w_slice]
            if g.full:
                g_pos, wv = g_all, w.view(1, J, S, 1, 1, 1)
            else:
                g_pos = g_all.reshape(n, J * S, c, *g_all.shape[-2:]).index_select(1, g.index)
                wv = w.view(1, -1, 1, 1, 1)
            if g.name in POOLS:
                gx, gm = self.pool_backward(key, g, x, wave, g_pos, wv, need_gx)
                add_x(gx)
            elif g.name == "skip_connect":
                gx, gm = self.skip_backward(key, g, x, wave, g_pos, wv, need_gx)
                add_x(gx)
            else:
                sources = tuple(g.sources)
                h = None
                if self.need_params:
                    r = torch.relu(x) if r is None else r
                    if sources not in repeated:
                        repeated[sources] = repeat(r, sources, c)
                    h = repeated[sources]
                step = self.reduce_backward if g.name == "reduce" else self.conv_backward
                gh, gm = step(key, g, h, x, wave, g_pos, wv, gparams, need_gx)
                if gh is not None:
                    if sources in g_rep:
                        g_rep[sources][0].add_(gh)
                    else:
                        g_rep[sources] = (gh, g)
            gmix.append(gm)
        for gh, g in g_rep.values():
            add_x(aten.threshold_backward(self.to_sources(gh, wave, g), x, 0))
        return g_x, (torch.cat(gmix) if self.need_w and gmix else None)

    def to_sources(self, t, wave, g):
        """Sum a per-position tensor (N x (positions * C) x H x W) into its sources: N x S C x H x W."""
        n, c, hw = t.shape[0], self.c, t.shape[-2:]
        J, S = len(wave.nodes), len(wave.sources)
        if g.full:
            if J == 1:
                return t
            out = self.empty(n, S * c, *hw, like=t)
            torch.sum(t.view(n, J, S * c, *hw), 1, out=out)
            return out
        out = self.empty(n, S * c, *hw, like=t).zero_()
        out.view(n, S, c, *hw).index_add_(1, g.source_index, t.view(n, -1, c, *hw))
        return out

    def mix_grad(self, g_pos, z, wave, g):
        """d loss / d w of each position: the sum of g * term. The product goes into a 4-d tensor
        of the wave's memory format, whose per-channel sum is several times faster than a sum
        over the dimensions of a 6-d view."""
        n, hw = g_pos.shape[0], g_pos.shape[-2:]
        prod = self.empty(n, len(g.positions) * self.c, *hw, like=g_pos)
        if g.name == "reduce":
            target = prod.view(*g_pos.shape[:-3], 2, self.c // 2, *hw)
            torch.mul(g_pos.unflatten(-3, (2, self.c // 2)), z, out=target)
        else:
            torch.mul(g_pos, z, out=self.positions_view(prod, wave, g))
        return prod.sum((0, 2, 3)).view(-1, self.c).sum(1)

    def weighted(self, g_pos, wv, wave, g):
        """g * w per position, N x (positions * C) x H x W in the wave's memory format."""
        n, hw = g_pos.shape[0], g_pos.shape[-2:]
        out = self.empty(n, len(g.positions) * self.c, *hw, like=g_pos)
        torch.mul(g_pos, wv, out=self.positions_view(out, wave, g))
        return out

    def pool_backward(self, key, g, x, wave, g_pos, wv, need_gx):
        mean, invstd = self.kept_at(key)
        y, indices = pool(g.name, x, wave.stride)
        gm = None
        if self.need_w:
            gm = self.mix_grad(g_pos, self.source_terms(_bn_again(y, g.eps), wave, g), wave, g)
        if not need_gx:
            return None, gm
        gy = _bn_backward(self.to_sources(self.weighted(g_pos, wv, wave, g), wave, g), y, mean, invstd, g.eps)
        s = [wave.stride] * 2
        if indices is not None:
            return aten.max_pool2d_with_indices_backward(gy, x, [3, 3], s, [1, 1], [1, 1], False, indices), gm
        return aten.avg_pool2d_backward(gy, x, [3, 3], s, [1, 1], False, False, None), gm

    def skip_backward(self, key, g, x, wave, g_pos, wv, need_gx):
        p = g.skip_rate
        mask = self.positions_view(self.kept_at(key)[0], wave, g) if p > 0 else None
        gm = None
        if self.need_w:
            xs = self.source_terms(x, wave, g)
            gm = self.mix_grad(g_pos, xs * mask if mask is not None else xs, wave, g)
            gm = gm / (1.0 - p) if p > 0 else gm
        if not need_gx:
            return None, gm
        gx = self.weighted(g_pos, wv / (1.0 - p) if p > 0 else wv, wave, g)
        if mask is not None:
            gx.mul_(self.kept_at(key)[0])
        return self.to_sources(gx, wave, g), gm

    def conv_backward(self, key, g, h_rep, x, wave, g_pos, wv, gparams, need_gx):
        n, c, P = x.shape[0], self.c, len(g.positions)
        per_block = 4 if self.train_weights else 3
        kept = self.kept_at(key)
        blocks = [kept[b * per_block : (b + 1) * per_block] for b in range(len(g.blocks))]
        gm = None
        if self.need_w:
            z = _bn_again(blocks[-1][0], g.blocks[-1][2].eps)
            gm = self.mix_grad(g_pos, self.positions_view(z, wave, g), wave, g)
        gz = self.weighted(g_pos, wv, wave, g)
        for b in reversed(range(len(g.blocks))):
            dw, _, bn = g.blocks[b]
            p, mean, invstd = blocks[b][:3]
            wd, wp = self.views[key][b]
            gp = _bn_backward(gz, p, mean, invstd, bn.eps)
            gz = None  # wave-wide gradients: dropped as soon as used, they set the backward's peak
            d = blocks[b][3] if self.train_weights else torch.empty_like(p)
            gd, gwp = conv_backward(gp, d, wp, 1, 0, 1, P, True, self.need_params)
            del gp, d
            if b > 0:
                z_prev = _bn_again(blocks[b - 1][0], g.blocks[b - 1][2].eps)
                h_in = (
                    torch.relu(z_prev) if self.need_params else z_prev
                )  # the input grad reads only its shape
                need_in = True
            else:
                h_in = h_rep if h_rep is not None else self.empty(n, P * c, *x.shape[-2:], like=x)
                need_in = need_gx
            gh, gwd = conv_backward(
                gd,
                h_in,
                wd,
                dw.stride[0] if b == 0 else 1,
                dw.padding[0],
                dw.dilation[0],
                wd.shape[0],
                need_in,
                self.need_params,
            )
            del gd, h_in
            if self.need_params:
                at = g.params.start + 2 * P * b
                gparams[at : at + P] = gwd.split(c)
                gparams[at + P : at + 2 * P] = gwp.split(c)
            if b > 0:
                gz = aten.threshold_backward(gh, z_prev, 0)
        return gh, gm

    def reduce_backward(self, key, g, h_rep, x, wave, g_pos, wv, gparams, need_gx):
        n, c, P = x.shape[0], self.c, len(g.positions)
        q, mean, invstd = self.kept_at(key)
        eps = g.ops[0].bn.eps
        gm = None
        if self.need_w:
            z = halves_to_edges(_bn_again(q, eps), P, c)  # N x P x 2 x C/2 x H x W
            if g.full:
                z = z.unflatten(1, (len(wave.nodes), len(wave.sources)))
            gm = self.mix_grad(g_pos, z, wave, g)
        gz = torch.empty_like(q)
        torch.mul(
            g_pos.unflatten(-3, (2, c // 2)),
            wv.unsqueeze(-1),
            out=gz.view(n, 2, *g_pos.shape[1:-3], c // 2, *q.shape[-2:]).movedim(1, -4),
        )
        gq = _bn_backward(gz, q, mean, invstd, eps)
        w1, w2 = self.views[key][0]
        h = h_rep if h_rep is not None else self.empty(n, P * c, *x.shape[-2:], like=x)
        half = P * c // 2
        gh, gw1 = conv_backward(
            gq[:, :half], h, w1, 2, 0, 1, P, need_gx or self.need_params, self.need_params
        )
        gs, gw2 = conv_backward(
            gq[:, half:], shifted(h), w2, 2, 0, 1, P, need_gx or self.need_params, self.need_params
        )
        gh[:, :, 1:, 1:] += gs[:, :, : gh.shape[2] - 1, : gh.shape[3] - 1]
        if self.need_params:
            at = g.params.start
            gparams[at : at + P] = gw1.split(c // 2)
            gparams[at + P : at + 2 * P] = gw2.split(c // 2)
        return gh, gm
