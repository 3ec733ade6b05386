"""The memory-lean kernels compute exactly what the module path computes: same losses,
gradients, buffers and random draws, bit for bit, while keeping far less for backward."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from pdarts_ray.core.bench import harness_switches
from pdarts_ray.core.checkpoint import read_jsonl
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.search import run_search
from pdarts_ray.core.space import PRIMITIVES
from pdarts_ray.core.supernet import MixedOp, SearchNetwork

CL = torch.channels_last


def _pair(stage, rate=0.4, layers=5, memory_format=CL):
    sw = harness_switches(stage)
    torch.manual_seed(0)
    ref = SearchNetwork(
        8, 10, layers, sw, sw, rate, alpha_generator=torch.Generator().manual_seed(1), kernels="reference"
    )
    lean = copy.deepcopy(ref)
    lean.kernels = "lean"
    return ref.to(memory_format=memory_format), lean.to(memory_format=memory_format)


def _step(net, x, y, which):
    net.train()
    net.zero_grad(set_to_none=True)
    torch.manual_seed(5)  # the skip dropout draws
    if which == "weight":
        loss = F.cross_entropy(net(x, arch_grad=False), y)
        loss.backward()
        grads = [p.grad for p in net.weight_parameters()]
    else:
        loss = F.cross_entropy(net(x, weight_grad=False), y)
        grads = list(torch.autograd.grad(loss, net.arch_parameters()))
    return loss.detach(), grads, torch.rand(4)


@pytest.mark.parametrize("memory_format", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
@pytest.mark.parametrize("stage", [1, 2, 3])
@pytest.mark.parametrize("which", ["weight", "arch"])
def test_network_steps_are_bit_identical(stage, which, memory_format):
    ref, lean = _pair(stage, memory_format=memory_format)
    torch.manual_seed(7)
    x = torch.randn(8, 3, 16, 16).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (8,))
    (l1, g1, r1), (l2, g2, r2) = _step(ref, x, y, which), _step(lean, x, y, which)
    assert torch.equal(l1, l2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    assert torch.equal(r1, r2)  # the same random numbers were consumed
    s1, s2 = ref.state_dict(), lean.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)  # BN running statistics too


@pytest.mark.parametrize("name", [p for p in PRIMITIVES if p != "none"])
@pytest.mark.parametrize("stride", [1, 2])
def test_every_op_kind_alone(name, stride):
    row = [p == name for p in PRIMITIVES]
    torch.manual_seed(0)
    ref = MixedOp(8, stride, row, skip_dropout_rate=0.3).to(memory_format=CL).train()
    lean = copy.deepcopy(ref)
    results = []
    for net, kernels in ((ref, "reference"), (lean, "lean")):
        x = torch.randn(4, 8, 12, 12, generator=torch.Generator().manual_seed(2)).contiguous(memory_format=CL)
        x.requires_grad_()
        w = torch.tensor([0.6], requires_grad=True)
        torch.manual_seed(3)
        out = net(x, w, kernels)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(4)))
        results.append([out.detach(), x.grad, w.grad] + [p.grad for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def _saved_bytes(net, x, y, which):
    """Bytes of distinct storages the autograd graph keeps for backward."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if which == "weight":
            F.cross_entropy(net(x, arch_grad=False), y)
        else:
            F.cross_entropy(net(x, weight_grad=False), y)
    return sum(storages.values())


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_lean_kernels_keep_far_less_for_backward(stage):
    """The heavier of the two steps sets the peak: the lean kernels keep at most 60% of
    what the module path keeps there, and under 40% in the architecture step."""
    ref, lean = _pair(stage)
    x = torch.randn(8, 3, 16, 16).contiguous(memory_format=CL)
    y = torch.randint(0, 10, (8,))
    kept = {
        (name, which): _saved_bytes(net, x, y, which)
        for name, net in (("ref", ref), ("lean", lean))
        for which in ("weight", "arch")
    }
    peak = {name: max(kept[name, "weight"], kept[name, "arch"]) for name in ("ref", "lean")}
    assert peak["lean"] <= 0.6 * peak["ref"]
    assert kept["lean", "arch"] < 0.4 * kept["ref", "arch"]


# tiny: its networks and batches (16-pixel images, 8 channels, 48 a batch) at every stage, one
# epoch of both steps on two batches of synthetic images. The kernel paths see the tensors'
# shapes, not what they show; the bundled digits (about 900 images an epoch) cost 5 CPU-minutes.
SHORTER = {
    "smoke": [],
    "tiny": [
        "epochs=1",
        "warmup_epochs=0",
        "dataset=synthetic",
        "synthetic_size=192",
        "synthetic_classes=10",
    ],
}


def _search(preset, kernels, out):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, preset, None, [f"kernels={kernels}", *SHORTER[preset]])
    run_search(cfg, out)
    return (
        json.loads((out / "genotypes.json").read_text()),
        json.loads((out / "alphas.json").read_text()),
        [(m["train_loss"], m["valid_acc"]) for m in read_jsonl(out / "metrics.jsonl")],
    )


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["smoke", "tiny"])
def test_presets_find_the_same_genotypes_with_both_kernels(preset, tmp_path):
    reference = _search(preset, "reference", tmp_path / "reference")
    lean = _search(preset, "lean", tmp_path / "lean")
    assert lean[0] == reference[0]  # every stage's genotype and every M
    assert lean[1] == reference[1]  # alphas, to the last bit
    assert lean[2] == reference[2]  # per-epoch losses and accuracies


@pytest.mark.parametrize("memory_format", [CL, torch.contiguous_format], ids=["channels_last", "contiguous"])
def test_dropout_masks_are_nn_dropouts(memory_format):
    from pdarts_ray.core.kernels import dropout_mask
    from pdarts_ray.core.supernet import SkipDropout

    x = torch.randn(4, 8, 6, 6).contiguous(memory_format=memory_format)
    torch.manual_seed(11)
    expected = torch.nn.functional.dropout(x, 0.3, training=True)
    after = torch.rand(3)
    torch.manual_seed(11)
    mask = dropout_mask(x, 0.7)
    assert torch.equal(mask, expected != 0) and torch.equal(torch.rand(3), after)
    torch.manual_seed(11)
    assert torch.equal(SkipDropout(0.3).train()(x), expected)  # the same values, bit for bit
    assert torch.equal(SkipDropout(0.3).eval()(x), x)
