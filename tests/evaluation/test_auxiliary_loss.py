"""Retraining minimises main + auxiliary_weight * auxiliary cross entropy, the auxiliary
logits coming from the head on the second reduction cell's output (as the official
train_cifar.py / train_imagenet.py, label smoothing on both terms for ImageNet).

The loss of one training batch is computed here from the network's parts, the auxiliary
term from the head applied to that cell's output, and compared with what train_epoch
reports and with the gradients it hands the optimiser."""

import copy

import pytest
import torch
import torch.nn.functional as F

from pdarts_ray.core.config import resolve
from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig
from pdarts_ray.evaluation.genotypes import PDARTS
from pdarts_ray.evaluation.retrain import Ranks, build_model, train_epoch

CLASSES = 4


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny network: a second thread only adds contention
    yield
    torch.set_num_threads(threads)


class OneBatch:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def train_batches(self, epoch):
        yield self.x, self.y


class Recorder:
    """An optimiser that only keeps the gradients it is asked to step with."""

    def __init__(self, params):
        self.params = list(params)
        self.param_groups = [{"lr": 0.0}]
        self.grads = None

    def zero_grad(self, set_to_none=True):
        for p in self.params:
            p.grad = None

    def step(self):
        self.grads = [None if p.grad is None else p.grad.clone() for p in self.params]


def expected_loss(model, x, y, weight: float, smoothing: float):
    """Main cross entropy plus `weight` times the auxiliary head's on the second reduction cell's output."""
    second_reduction = [i for i, cell in enumerate(model.cells) if cell.reduction][1]
    seen = {}
    hook = model.cells[second_reduction].register_forward_hook(lambda m, args, out: seen.update(out=out))
    try:
        logits, _ = model(x)
    finally:
        hook.remove()
    loss = F.cross_entropy(logits, y, label_smoothing=smoothing)
    if weight:
        loss = loss + weight * F.cross_entropy(
            model.auxiliary_head(seen["out"]), y, label_smoothing=smoothing
        )
    return loss


@pytest.mark.parametrize("weight, smoothing", [(0.4, 0.0), (0.7, 0.0), (0.4, 0.1), (0.0, 0.0)])
def test_training_loss_is_main_plus_weighted_auxiliary(weight, smoothing):
    # 4 cells: the auxiliary head's cell (the second reduction) is followed by a normal one, so
    # a head on the wrong cell changes the loss instead of vanishing
    cfg = resolve(
        EvalConfig,
        EVAL_PRESETS,
        "eval-smoke",
        None,
        [
            "layers=4",
            f"auxiliary_weight={weight}",
            f"label_smoothing={smoothing}",
            "grad_clip=0",
            "drop_path=0",
        ],
    )
    model = build_model(cfg, PDARTS, CLASSES).double()
    assert (model.auxiliary_head is not None) == (weight > 0)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4, 3, cfg.image_size, cfg.image_size, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (4,), generator=g)
    independent = copy.deepcopy(model).train()
    want = expected_loss(independent, x, y, weight, smoothing)
    want_grads = torch.autograd.grad(want, list(independent.parameters()), allow_unused=True)

    optimizer = Recorder(model.parameters())
    metrics = train_epoch(cfg, model, model, optimizer, OneBatch(x, y), 0, Ranks())
    assert metrics["train_loss"] == pytest.approx(want.item(), rel=1e-12)
    for name_p, got, expected in zip(model.named_parameters(), optimizer.grads, want_grads):
        if expected is None:  # a parameter the loss does not reach
            assert got is None or not got.any(), name_p[0]
        else:
            torch.testing.assert_close(
                got, expected, rtol=1e-10, atol=1e-12 * expected.abs().max().item(), msg=name_p[0]
            )
