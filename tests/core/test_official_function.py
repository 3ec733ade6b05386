"""Every kernel path of our supernet computes the official P-DARTS supernet's function.

tests/fixtures/official_supernet.json holds what the official `model_search.Network` gave
(benchmarks/official_fixture.py wrote it) for one training-mode forward and backward in
float64, with all 8 ops on every edge and with a random 4-op mask per edge (`none` on
some). Our network is filled, fed and summarised here by the rules that script's docstring
defines, with the constants (seeds, scales, sizes) read from the fixture. The other kernel
tests compare our paths with each other, which cannot see a change in code they all share
(how alphas become mixing weights, the cell wiring, BatchNorm settings); this one can.

Tolerance: RTOL of each quantity's scale, well above the float64 rounding that separates
different summation orders and well below any real change. The scale is the largest
magnitude for the logits and for each alpha gradient matrix; for a summary, the summed
absolute value of its gradient, or of its BatchNorm module's mean and variance together: a
BatchNorm fed by normalised features (a pool over a 2x2 map of a BatchNorm output) has a
running mean that is itself rounding noise, and is judged in the units of its variance.
"""

import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from helpers.paths import FIXTURES
from torch import nn

from pdarts_ray.core.supernet import SearchNetwork

FIXTURE = json.loads((FIXTURES / "official_supernet.json").read_text())
CONFIG = FIXTURE["config"]
RTOL = 1e-12
KERNELS = ["reference", "lean", "batched"]


# ---------------------------------------------------------------- the fixture's rules, for our network


def canonical_parameters(net: nn.Module) -> list[nn.Parameter]:
    names = [name for name, _ in net.named_parameters()]
    assert names[:2] == ["alphas_normal", "alphas_reduce"] and not any(
        n.startswith("alphas") for n in names[2:]
    )
    return list(net.parameters())


@torch.no_grad()
def fill(net: nn.Module) -> None:
    for i, p in enumerate(canonical_parameters(net)):
        values = torch.randn(
            p.shape, generator=torch.Generator().manual_seed(CONFIG["fill_seed"] + i), dtype=torch.float64
        )
        if i < 2:
            values *= CONFIG["alpha_scale"]
        elif p.dim() > 1:
            values /= math.sqrt(p[0].numel())
        else:
            values *= CONFIG["bias_scale"]
        p.copy_(values)


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    c = CONFIG
    g = torch.Generator().manual_seed(c["input_seed"])
    x = torch.randn(c["batch"], 3, c["image_size"], c["image_size"], generator=g, dtype=torch.float64)
    return x, torch.randint(0, c["classes"], (c["batch"],), generator=g)


def bn_modules(net: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]


def summaries(tensors: list[torch.Tensor]) -> list[list[float]]:
    out = []
    for k, t in enumerate(tensors):
        flat = t.detach().to(torch.float64).flatten()
        g = torch.Generator().manual_seed(CONFIG["probe_seed"] + k)
        probe = torch.rand(flat.numel(), generator=g, dtype=torch.float64) * 2 - 1
        out.append([flat.sum().item(), (flat @ probe).item()])
    return out


def switches(rows: list[str]) -> list[list[bool]]:
    return [[c == "1" for c in row] for row in rows]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Hundreds of tiny float64 kernels: a second thread only adds contention on a loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def ours(case: str, kernels: str) -> dict:
    """Our network's outputs on the fixture's case, with the tensors the summaries came from."""
    c, fx = CONFIG, FIXTURE["masks"][case]
    torch.manual_seed(0)
    net = SearchNetwork(
        c["channels"],
        c["classes"],
        c["layers"],
        switches(fx["switches_normal"]),
        switches(fx["switches_reduce"]),
        skip_dropout_rate=c["skip_dropout"],
        kernels=kernels,
    )
    net = net.double().train()
    params = canonical_parameters(net)
    assert [list(p.shape) for p in params] == fx["parameter_shapes"], "parameter order or shapes differ"
    fill(net)
    x, y = inputs()
    logits = net(x)
    running = [t.clone() for m in bn_modules(net) for t in (m.running_mean, m.running_var)]
    loss = F.cross_entropy(logits, y)
    loss.backward()
    return {
        "loss": loss.detach(),
        "logits": logits.detach(),
        "alpha_normal": params[0].grad,
        "alpha_reduce": params[1].grad,
        "weight_grads": [p.grad for p in params[2:]],
        "bn_running": running,
        "bn_batches_tracked": sorted({int(m.num_batches_tracked) for m in bn_modules(net)}),
    }


def deviation(got: torch.Tensor, want) -> float:
    """Largest deviation from the fixture, relative to the fixture's largest magnitude."""
    want = torch.tensor(want, dtype=torch.float64)
    return ((got - want).abs().max() / want.abs().max()).item()


def summary_deviation(tensors: list, want: list, scales: list[float]) -> float:
    """Largest deviation of a summary from the fixture, relative to its scale."""
    assert len(tensors) == len(want) == len(scales)
    worst = 0.0
    for g, w, scale in zip(summaries(tensors), want, scales):
        for a, b in zip(g, w):
            if a != b:
                worst = max(worst, abs(a - b) / scale if scale else float("inf"))
    return worst


def bn_scales(stats: list) -> list[float]:
    """Per mean and variance, the summed absolute value of both of its module's statistics."""
    scales = []
    for mean, var in zip(stats[::2], stats[1::2]):
        scales += [mean.abs().sum().item() + var.abs().sum().item()] * 2
    return scales


def deviations(case: str, kernels: str) -> dict:
    fx, out = FIXTURE["masks"][case], ours(case, kernels)
    return {
        "loss": abs(out["loss"].item() - fx["loss"]) / abs(fx["loss"]),
        "logits": deviation(out["logits"], fx["logits"]),
        "alpha_grad_normal": deviation(out["alpha_normal"], fx["alpha_grads"]["normal"]),
        "alpha_grad_reduce": deviation(out["alpha_reduce"], fx["alpha_grads"]["reduce"]),
        "weight_grads": summary_deviation(
            out["weight_grads"], fx["weight_grads"], [g.abs().sum().item() for g in out["weight_grads"]]
        ),
        "bn_running": summary_deviation(out["bn_running"], fx["bn_running"], bn_scales(out["bn_running"])),
    }


@pytest.mark.parametrize("kernels", KERNELS)
@pytest.mark.parametrize("case", list(FIXTURE["masks"]))
def test_each_kernel_path_computes_the_official_supernet(case, kernels):
    dev = deviations(case, kernels)
    bad = {k: v for k, v in dev.items() if not v <= RTOL}
    assert not bad, f"{kernels} on {case}: deviations beyond {RTOL}: {bad}"
    assert ours(case, kernels)["bn_batches_tracked"] == FIXTURE["masks"][case]["bn_batches_tracked"]


def test_the_fixture_exercises_what_it_claims():
    """Mixing weights far from uniform (else a wrong softmax could go unseen), `none` on some
    edges of the random case, and gradients that are not vanishingly small."""
    assert CONFIG["dtype"] == "float64" and CONFIG["skip_dropout"] == 0.0
    assert FIXTURE["official"]["commit"] and len(FIXTURE["official"]["commit"]) == 40
    random = FIXTURE["masks"]["random-4"]
    rows = random["switches_normal"] + random["switches_reduce"]
    assert 0 < sum(r[0] == "1" for r in rows) < len(rows)
    assert random["switches_normal"] != random["switches_reduce"]
    assert all(r.count("1") == 4 for r in rows)
    assert all(r == "1" * 8 for r in FIXTURE["masks"]["all-ops"]["switches_normal"])
    for case in FIXTURE["masks"].values():
        grads = torch.tensor(case["alpha_grads"]["normal"] + case["alpha_grads"]["reduce"])
        assert grads.abs().max() > 1e-4
