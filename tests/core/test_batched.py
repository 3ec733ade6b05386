"""`kernels: batched` computes the module path's function: logits, BatchNorm statistics, weight
and alpha gradients, over steps with the optimisers, on the stages' masks and on random
per-edge masks, in both memory formats. Not bit for bit: float64 to 1e-12, float32 to 1e-5."""

import copy

import pytest
import torch
import torch.nn.functional as F

from pdarts_ray.core import batched, supernet
from pdarts_ray.core.bench import harness_switches
from pdarts_ray.core.space import NUM_EDGES, NUM_OPS, PRIMITIVES
from pdarts_ray.core.supernet import SearchNetwork

CL = torch.channels_last
FORMATS = pytest.mark.parametrize("fmt", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])


def random_switches(ops: int, seed: int) -> list[list[bool]]:
    """`ops` ops on every edge, a different random set per edge (`none` among the candidates)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(NUM_EDGES):
        on = set(torch.randperm(NUM_OPS, generator=g)[:ops].tolist())
        rows.append([k in on for k in range(NUM_OPS)])
    return rows


MASKS = {
    "stage1": (harness_switches(1),) * 2,
    "stage2": (harness_switches(2),) * 2,
    "stage3": (harness_switches(3),) * 2,
    "random4": (random_switches(4, 1), random_switches(4, 2)),
    "random2": (random_switches(2, 3), random_switches(2, 4)),
    "only-none": ([[k == 0 for k in range(NUM_OPS)]] * NUM_EDGES, random_switches(1, 5)),
}


def pair(masks, dtype=torch.float64, fmt=CL, rate=0.0, channels=4, layers=5):
    torch.manual_seed(0)
    ref = SearchNetwork(
        channels,
        10,
        layers,
        *masks,
        skip_dropout_rate=rate,
        alpha_generator=torch.Generator().manual_seed(1),
        kernels="reference",
    )
    with torch.no_grad():  # alphas far from uniform, so that every op's weight matters
        for alpha in ref.arch_parameters():
            alpha.normal_(0, 0.5, generator=torch.Generator().manual_seed(2))
    fast = copy.deepcopy(ref)
    fast.kernels = "batched"
    return ref.to(dtype=dtype, memory_format=fmt).train(), fast.to(dtype=dtype, memory_format=fmt).train()


def batch(dtype, fmt, n=3, size=12, seed=7):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, size, size, generator=g, dtype=dtype).contiguous(memory_format=fmt)
    return x, torch.randint(0, 10, (n,), generator=g)


def one_step(net, x, y, which):
    """(logits, gradients) of a weight step (weights) or an architecture step (alphas)."""
    net.zero_grad(set_to_none=True)
    if which == "weight":
        logits = net(x, arch_grad=False)
        F.cross_entropy(logits, y).backward()
        return logits.detach(), [p.grad for p in net.weight_parameters()]
    logits = net(x, weight_grad=False)
    return logits.detach(), list(
        torch.autograd.grad(F.cross_entropy(logits, y), net.arch_parameters(), allow_unused=True)
    )


def close(a, b, rtol):
    """Within rtol of the reference's largest magnitude (or both absent: no gradient on either path)."""
    if a is None or b is None:
        return a is None and b is None
    scale = b.abs().max().item() if b.numel() else 0.0
    return (a - b).abs().max().item() <= rtol * max(scale, 1e-30) if b.numel() else True


def assert_same_function(ref, fast, x, y, which, rtol, alpha_rtol):
    (l1, g1), (l2, g2) = one_step(ref, x, y, which), one_step(fast, x, y, which)
    assert close(l2, l1, rtol)
    if which == "weight":
        bad = [i for i, (a, b) in enumerate(zip(g2, g1)) if not close(a, b, rtol)]
        assert not bad, f"{len(bad)} weight gradients differ, first {bad[:3]}"
    else:
        for a, b in zip(g2, g1):  # near-zero alpha gradients round differently: judged by the norm
            assert (a is None and b is None) or (a - b).norm() <= alpha_rtol * b.norm()
    s1, s2 = ref.state_dict(), fast.state_dict()
    assert s1.keys() == s2.keys()
    for key in s1:  # BatchNorm running statistics and counters
        assert close(s2[key].double(), s1[key].double(), rtol), key


@FORMATS
@pytest.mark.parametrize("masks", list(MASKS))
@pytest.mark.parametrize("which", ["weight", "arch"])
def test_float64_within_1e_12(masks, which, fmt):
    ref, fast = pair(MASKS[masks], fmt=fmt)
    x, y = batch(torch.float64, fmt)
    assert_same_function(ref, fast, x, y, which, 1e-12, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("masks", ["stage1", "random4"])
@pytest.mark.parametrize("which", ["weight", "arch"])
def test_float32_within_1e_5(masks, which):
    ref, fast = pair(MASKS[masks], dtype=torch.float32)
    x, y = batch(torch.float32, CL)
    assert_same_function(ref, fast, x, y, which, 1e-5, 1e-5)


@pytest.mark.slow
def test_odd_image_size_in_reduction_cells():
    """FactorizedReduce pads an odd input back to even: 13 pixels -> 7 -> 4."""
    ref, fast = pair(MASKS["stage1"])
    x, y = batch(torch.float64, CL, size=13)
    assert_same_function(ref, fast, x, y, "weight", 1e-12, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("masks", ["stage2", "random4"])
def test_several_steps_with_the_optimisers(masks):
    """Alternating architecture and weight steps with the search's optimisers (float64)."""
    nets = pair(MASKS[masks])
    optimisers = []
    for net in nets:
        optimisers.append(
            (
                torch.optim.Adam(
                    net.arch_parameters(), lr=6e-4, betas=(0.5, 0.999), weight_decay=1e-3, foreach=True
                ),
                torch.optim.SGD(
                    net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4, foreach=True
                ),
            )
        )
    for step in range(3):
        (vx, vy), (x, y) = batch(torch.float64, CL, seed=10 + step), batch(torch.float64, CL, seed=20 + step)
        for net, (opt_a, opt_w) in zip(nets, optimisers):
            _, grads = one_step(net, vx, vy, "arch")
            for alpha, grad in zip(net.arch_parameters(), grads):
                alpha.grad = grad
            torch.nn.utils.clip_grad_norm_(net.arch_parameters(), 5.0, foreach=True)
            opt_a.step()
            one_step(net, x, y, "weight")
            torch.nn.utils.clip_grad_norm_(net.weight_parameters(), 5.0, foreach=True)
            opt_w.step()
    for a, b in zip(nets[1].parameters(), nets[0].parameters()):
        assert close(a.detach(), b.detach(), 1e-10)
    s1, s2 = nets[0].state_dict(), nets[1].state_dict()
    assert all(close(s2[k].double(), s1[k].double(), 1e-10) for k in s1)


def test_state_dict_and_weight_parameters_stay_as_today():
    """Checkpoints, optimiser states and every comparison over weight_parameters() keep working:
    the batched path adds no persistent state and reorders nothing."""
    ref, fast = pair(MASKS["random4"])
    lean = copy.deepcopy(ref)
    lean.kernels = "lean"
    assert list(fast.state_dict()) == list(lean.state_dict())
    assert [p.shape for p in fast.weight_parameters()] == [p.shape for p in lean.weight_parameters()]
    x, y = batch(torch.float64, CL)
    one_step(fast, x, y, "weight")  # the running statistics change on the batched path ...
    lean.load_state_dict(fast.state_dict(), strict=True)  # ... and load anywhere
    fast.load_state_dict(ref.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(fast.state_dict().values(), ref.state_dict().values()))


def test_running_statistics_follow_a_move_and_a_load():
    """The network-wide gather of running statistics is rebuilt when buffers are replaced."""
    ref, fast = pair(MASKS["stage1"], dtype=torch.float32)
    fast.double()
    ref.double()
    x, y = batch(torch.float64, CL)
    assert_same_function(ref, fast, x, y, "weight", 1e-12, 1e-12)
    fast.load_state_dict({k: v.clone() for k, v in ref.state_dict().items()}, assign=True)
    assert_same_function(ref, fast, x, y, "arch", 1e-12, 1e-12)


@pytest.mark.parametrize("masks", ["stage1", "random4"])
@pytest.mark.parametrize("which", ["weight", "arch"])
def test_the_same_skip_dropout_masks_give_the_same_outputs(masks, which, monkeypatch):
    """Each edge keeps its own mask; the batched path draws a wave's masks at once, so the test
    hands it the masks the module path drew, edge by edge."""
    ref, fast = pair(MASKS[masks], rate=0.4)
    drawn = []

    def record(x, keep):
        mask = torch.rand(x.shape, dtype=torch.float64).lt(keep).contiguous(memory_format=CL)
        drawn.append(mask)
        return mask

    monkeypatch.setattr(supernet, "dropout_mask", record)
    x, y = batch(torch.float64, CL)
    l1, g1 = one_step(ref, x, y, which)
    draws = [
        (c, e)
        for c, cell in enumerate(ref.cells)
        for e, edge in enumerate(cell.edges)
        if "skip_connect" in edge.names and edge.stride == 1
    ]
    assert len(draws) == len(drawn) > 0
    by_edge = dict(zip(draws, drawn))
    queue = []
    for c, (waves, _, _) in enumerate(fast.batched_plan.cells):
        for wave in waves:
            for g in wave.groups:
                if g.name == "skip_connect":
                    queue.append(torch.cat([by_edge[c, wave.edges[p]] for p in g.positions], dim=1))
    monkeypatch.setattr(batched, "skip_masks", lambda like, keep: queue.pop(0))
    l2, g2 = one_step(fast, x, y, which)
    assert not queue
    assert close(l2, l1, 1e-12)
    assert all(close(a, b, 1e-12) for a, b in zip(g2, g1))


def test_skip_masks_draw_nn_dropouts_distribution():
    like = torch.empty(64, 32, 8, 8).contiguous(memory_format=CL)
    torch.manual_seed(3)
    mask = batched.skip_masks(like, 0.7)
    assert mask.dtype == torch.bool and mask.shape == like.shape
    assert abs(mask.double().mean().item() - 0.7) < 0.01


def test_eval_autocast_and_compile_take_the_module_path(monkeypatch):
    ref, fast = pair(MASKS["stage3"], dtype=torch.float32)
    calls = []
    monkeypatch.setattr(supernet, "batched_cell", lambda *a: calls.append(a))
    x, _ = batch(torch.float32, CL)
    with torch.no_grad():
        assert torch.equal(fast.eval()(x), ref.eval()(x))
        fast.train()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fast(x)
    assert not calls


def test_none_keeps_its_softmax_mass_and_gradient():
    """`none` computes no term, yet takes softmax mass: its alpha gets a gradient."""
    _, fast = pair(MASKS["stage1"])
    x, y = batch(torch.float64, CL)
    _, (g_normal, g_reduce) = one_step(fast, x, y, "arch")
    none = PRIMITIVES.index("none")
    assert g_normal[:, none].abs().min() > 0 and g_reduce[:, none].abs().min() > 0
