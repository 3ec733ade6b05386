"""Data parallelism of one search, in the core alone: two gloo ranks started here (no Ray).

With sync_bn and skip dropout off, two ranks sharing a global batch compute the loss and the
gradients (before the optimiser) of one process on that batch, up to rounding; with or
without sync_bn and with dropout on, every rank holds the same weights and alphas after every
step; each rank's slice of an augmented batch is that part of the whole batch's augmentation.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.data import DeviceImages
from pdarts_ray.core.parallel import Ranks
from pdarts_ray.core.search import initial_switches
from pdarts_ray.core.stage import Stage, StagePlan

BATCH = 24  # global; two ranks take 12 each, and a partial batch of 7 splits 4 + 3


def config(**changes):
    values = {"batch_size": BATCH, "threads": 1, **changes}
    return resolve(SearchConfig, SEARCH_PRESETS, "smoke", sets=[f"{k}={v}" for k, v in values.items()])


def images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 4, (n,), generator=g)
    return DeviceImages(x, y, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu")


def first_step_grads(stage: Stage, x, y, batch: int) -> dict:
    """Loss and gradients of one architecture step and one weight step, before any update."""
    out = {}
    stage.model.train()
    loss = stage._loss(stage.forward(x, weight_grad=False), y, batch)
    grads = torch.autograd.grad(loss, stage.alphas)
    for a, g in zip(stage.alphas, grads):
        a.grad = g.clone()
    stage.ranks.sum_grads(stage.alphas)
    out["alpha_grads"] = [a.grad.clone() for a in stage.alphas]
    out["arch_loss"] = loss.detach().clone()
    stage.opt_w.zero_grad(set_to_none=True)
    loss = stage._loss(stage.forward(x, arch_grad=False), y, batch)
    loss.backward()
    stage.ranks.sum_grads(stage.weights)
    out["weight_grads"] = [w.grad.clone() for w in stage.weights]
    out["weight_loss"] = loss.detach().clone()
    total = torch.stack([out["arch_loss"], out["weight_loss"]])
    stage.ranks.sum_([total])  # each rank's part of the global mean: summed, the whole
    out["arch_loss"], out["weight_loss"] = total[0], total[1]
    return out


def _rank_main(rank, world, init, out_dir, sync_bn, rate, steps):
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        cfg = config()
        ranks = Ranks(sync_bn=sync_bn)
        plan = StagePlan(0, cfg.cells[0], 8, rate, False)
        stage = Stage(cfg, plan, initial_switches(cfg), 4, torch.device("cpu"), ranks)
        data = images()
        g = torch.Generator().manual_seed(1)
        index = torch.randperm(64, generator=g)[:BATCH]
        x, y = data.batch(index, torch.Generator().manual_seed(2), ranks.part(BATCH))
        result = {"grads": first_step_grads(stage, x, y, BATCH)}
        # full steps with updates; every rank must end each with the same parameters
        stage = Stage(cfg, plan, initial_switches(cfg), 4, torch.device("cpu"), ranks)
        stage.model.set_skip_dropout(rate)
        stage.model.train()
        digests = []
        for step in range(steps):
            index = torch.randperm(64, generator=g)[
                : BATCH if step < steps - 1 else 7
            ]  # then a partial batch
            part = ranks.part(len(index))
            vx, vy = data.batch(index.flip(0), stage.data_gen, part)
            stage.arch_step(vx, vy, len(index))
            x, y = data.batch(index, stage.data_gen, part)
            stage.weight_step(x, y, len(index))
            flat = torch.cat([p.detach().reshape(-1) for p in stage.weights + stage.alphas])
            digests.append(flat)
        result["params"] = digests
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run_ranks(tmp_path, world=2, sync_bn=True, rate=0.0, steps=3):
    init = f"file://{tmp_path}/init-{sync_bn}-{rate}"
    mp.spawn(_rank_main, args=(world, init, str(tmp_path), sync_bn, rate, steps), nprocs=world, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(world)]


def one_process_grads():
    torch.set_num_threads(1)
    cfg = config()
    stage = Stage(
        cfg, StagePlan(0, cfg.cells[0], 8, 0.0, False), initial_switches(cfg), 4, torch.device("cpu")
    )
    index = torch.randperm(64, generator=torch.Generator().manual_seed(1))[:BATCH]
    x, y = images().batch(index, torch.Generator().manual_seed(2))
    return first_step_grads(stage, x, y, BATCH)


def _close(a, b, what):
    scale = max(float(a.abs().max()), 1e-12)
    assert float((a - b).abs().max()) <= 1e-5 * scale, (
        f"{what}: {float((a - b).abs().max())} vs scale {scale}"
    )


@pytest.mark.slow
def test_two_ranks_with_sync_bn_compute_one_process_losses_and_gradients(tmp_path):
    ranks = run_ranks(tmp_path, sync_bn=True, rate=0.0, steps=1)
    single = one_process_grads()
    for r in ranks:
        _close(single["arch_loss"], r["grads"]["arch_loss"], "architecture-step loss")
        _close(single["weight_loss"], r["grads"]["weight_loss"], "weight-step loss")
        for i, (a, b) in enumerate(zip(single["alpha_grads"], r["grads"]["alpha_grads"])):
            _close(a, b, f"alpha gradient {i}")
        for i, (a, b) in enumerate(zip(single["weight_grads"], r["grads"]["weight_grads"])):
            _close(a, b, f"weight gradient {i}")


@pytest.mark.slow
@pytest.mark.parametrize("sync_bn", [True, False])
def test_every_rank_holds_the_same_weights_and_alphas_after_every_step(tmp_path, sync_bn):
    ranks = run_ranks(tmp_path, sync_bn=sync_bn, rate=0.5, steps=3)  # skip dropout on: masks differ per rank
    for step, (a, b) in enumerate(zip(ranks[0]["params"], ranks[1]["params"])):
        assert torch.equal(a, b), f"step {step}"
    assert not torch.equal(ranks[0]["params"][0], ranks[0]["params"][-1])  # they did move


@pytest.mark.slow
def test_without_sync_bn_the_ranks_normalise_their_own_slices(tmp_path):
    """The check above would pass trivially if sync_bn changed nothing: it does."""
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    on = run_ranks(tmp_path / "on", sync_bn=True, rate=0.0, steps=1)
    off = run_ranks(tmp_path / "off", sync_bn=False, rate=0.0, steps=1)
    assert not torch.equal(on[0]["grads"]["weight_grads"][0], off[0]["grads"]["weight_grads"][0])


@pytest.mark.parametrize("n,world", [(24, 2), (7, 2), (10, 3), (2, 4)])
def test_slices_cover_the_batch_in_order_and_as_evenly_as_possible(n, world):
    class Fixed(Ranks):
        def __init__(self, rank):
            self.active, self.rank, self.world, self.sync_bn = True, rank, world, False

    parts = [Fixed(r).part(n) for r in range(world)]
    assert [i for p in parts for i in range(n)[p]] == list(range(n))
    sizes = [len(range(n)[p]) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_a_ranks_slice_is_augmented_as_in_the_whole_batch():
    data = images()
    index = torch.arange(20)
    whole, _ = data.batch(index, torch.Generator().manual_seed(5))
    part, _ = data.batch(index, torch.Generator().manual_seed(5), slice(10, 20))
    assert torch.equal(whole[10:20], part)


def _stage_as_rank(rank: int, rate: float) -> Stage:
    ranks = Ranks(sync_bn=False)  # no process group: only the rank number matters here
    ranks.rank = rank
    cfg = config()
    stage = Stage(
        cfg, StagePlan(0, cfg.cells[0], 8, rate, False), initial_switches(cfg), 4, torch.device("cpu"), ranks
    )
    stage.model.set_skip_dropout(rate)
    stage.model.train()
    return stage


def test_each_rank_draws_its_own_skip_dropout_masks_from_the_same_weights():
    x = images().batch(torch.arange(8), torch.Generator().manual_seed(2), slice(None))[0]
    outputs = {}
    for rank in (0, 1, 1):
        stage = _stage_as_rank(rank, 0.5)
        weights = [w.detach().clone() for w in stage.weights + stage.alphas]
        with torch.no_grad():
            out = stage.model(x)
        if rank in outputs:  # the same rank, the same stream
            assert torch.equal(out, outputs[rank][1])
        outputs[rank] = (weights, out)
    (w0, out0), (w1, out1) = outputs[0], outputs[1]
    assert all(torch.equal(a, b) for a, b in zip(w0, w1))  # one initialisation for every rank
    assert not torch.equal(out0, out1)  # masks of each rank's own
    without = [_stage_as_rank(rank, 0.0) for rank in (0, 1)]
    with torch.no_grad():
        assert torch.equal(without[0].model(x), without[1].model(x))
