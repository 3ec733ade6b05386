"""One stage of the progressive search: its supernet, optimisers and random streams, and
the step.

A stage builds a fresh supernet over the switch masks it is given (new weights, new alphas
drawn as 1e-3 N(0, 1), new optimisers); every random stream is seeded from (seed, stage).
Warm-up epochs train weights only; afterwards every train batch is preceded by an
architecture step on the next valid batch (first order), both in train mode with skip
dropout on. The learning rate follows a cosine schedule stepped at the start of each
epoch; skip dropout decays linearly during warm-up, then exponentially.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import SearchConfig
from .data import DeviceImages, shuffled_batches
from .errors import SearchDiverged, UserError
from .hooks import SearchHooks
from .parallel import Ranks, synchronise_batch_norm
from .runtime import capture_rng, derived_seed, memory_format, restore_rng
from .space import CellState
from .supernet import SearchNetwork

# ---------------------------------------------------------------- schedules


def lr_at(cfg: SearchConfig, epoch: int) -> float:
    """Cosine schedule stepped at the start of each epoch: epoch e uses step e + lr_step_offset."""
    step = epoch + cfg.lr_step_offset
    return cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * step / cfg.epochs)) / 2


def skip_dropout_at(rate: float, epoch: int, epochs: int, warmup: int) -> float:
    """Linear decay during warm-up, then back to `rate` and exponential decay (0.2 per epoch)."""
    if epoch < warmup:
        return rate * (epochs - epoch - 1) / epochs
    return rate * math.exp(-0.2 * (epoch - warmup))


def count_correct(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(dim=1) == y).sum()


# ---------------------------------------------------------------- one stage


@dataclass
class StagePlan:
    index: int  # 0-based
    cells: int
    ops: int
    skip_dropout_rate: float  # the stage's entry of the config's skip_dropout
    last: bool


class Stage:
    """One stage's supernet with its optimisers and random streams."""

    def __init__(
        self,
        cfg: SearchConfig,
        plan: StagePlan,
        switches: dict,
        num_classes: int,
        device: torch.device,
        ranks: Ranks | None = None,
    ):
        self.cfg, self.plan, self.device = cfg, plan, device
        self.ranks = ranks or Ranks()
        self.switches = switches
        seed = derived_seed(cfg.seed, plan.index + 1)
        torch.manual_seed(seed)  # weight initialisation and skip dropout draw from it
        alpha_gen = torch.Generator().manual_seed(derived_seed(seed, 1))
        # the memory-lean kernels normalise with their own batch: global statistics take the module path
        kernels = "reference" if self.ranks.sync_bn else cfg.kernels
        self.model = SearchNetwork(
            cfg.channels,
            num_classes,
            plan.cells,
            switches["normal"],
            switches["reduce"],
            plan.skip_dropout_rate,
            alpha_generator=alpha_gen,
            kernels=kernels,
        )
        if self.ranks.sync_bn:
            synchronise_batch_norm(self.model, self.ranks)
        if self.ranks.rank > 0:  # the same weights everywhere, then skip-dropout masks of each rank's own
            torch.manual_seed(derived_seed(seed, 3, self.ranks.rank))
        self.model.to(device=device, memory_format=memory_format(cfg.channels_last, device, cfg.image_size))
        # bf16 autocast: convolutions in bfloat16, BatchNorm, softmax and losses in float32
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.data_gen = torch.Generator(device=device).manual_seed(derived_seed(seed, 2))
        self.weights = self.model.weight_parameters()
        self.alphas = self.model.arch_parameters()
        # foreach: a few calls for all tensors instead of a few per tensor (the same bits on CPU,
        # tests/core/test_optimisers.py; CUDA picks it anyway)
        self.opt_w = torch.optim.SGD(
            self.weights, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
        )
        self.opt_a = torch.optim.Adam(
            self.alphas,
            lr=cfg.arch_lr,
            betas=(cfg.arch_beta1, cfg.arch_beta2),
            weight_decay=cfg.arch_weight_decay,
            foreach=True,
        )

    def rng_state(self) -> dict:
        return capture_rng(self.device, self.data_gen)

    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt_w": self.opt_w.state_dict(),
            "opt_a": self.opt_a.state_dict(),
            "rng": self.rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.opt_w.load_state_dict(state["opt_w"])
            self.opt_a.load_state_dict(state["opt_a"])
            for group in self.opt_w.param_groups + self.opt_a.param_groups:
                group["foreach"] = True  # checkpoints written before foreach say None
            restore_rng(state["rng"], self.device, self.data_gen)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise UserError(
                f"checkpoint does not fit stage {self.plan.index + 1}'s supernet ({reason})"
            ) from None

    def cell_states(self) -> dict[str, CellState]:
        return {
            name: CellState(self.switches[name], alpha.detach().cpu().tolist())
            for name, alpha in zip(("normal", "reduce"), self.alphas)
        }

    def _loss(self, logits, y, batch: int):
        """The mean cross-entropy of the global batch: on several ranks, each rank's summed part
        of it (their gradients then add up to the global batch's)."""
        if not self.ranks.active:
            return F.cross_entropy(logits, y)
        return F.cross_entropy(logits, y, reduction="sum") / batch

    def arch_step(self, x, y, batch: int | None = None):
        self.opt_a.zero_grad(set_to_none=True)
        with self.autocast:
            loss = self._loss(self.forward(x, weight_grad=False), y, batch or len(y))
        # Only the alphas' gradients are needed: skip the weight-gradient kernels.
        for alpha, grad in zip(self.alphas, torch.autograd.grad(loss, self.alphas)):
            alpha.grad = grad
        self.ranks.sum_grads(self.alphas)
        torch.nn.utils.clip_grad_norm_(self.alphas, self.cfg.grad_clip, foreach=True)
        self.opt_a.step()

    def weight_step(self, x, y, batch: int | None = None):
        self.opt_w.zero_grad(set_to_none=True)
        with self.autocast:
            logits = self.forward(x, arch_grad=False)
            loss = self._loss(logits, y, batch or len(y))
        loss.backward()
        self.ranks.sum_grads(self.weights)
        torch.nn.utils.clip_grad_norm_(self.weights, self.cfg.grad_clip, foreach=True)
        self.opt_w.step()
        return loss.detach(), logits.detach()

    def train_epoch(self, epoch: int, train: DeviceImages, train_idx, valid_idx, hooks: SearchHooks) -> dict:
        cfg = self.cfg
        for group in self.opt_w.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        rate = skip_dropout_at(self.plan.skip_dropout_rate, epoch, cfg.epochs, cfg.warmup_epochs)
        self.model.set_skip_dropout(rate)
        self.model.train()
        search_arch = epoch >= cfg.warmup_epochs
        train_batches = shuffled_batches(train_idx, cfg.batch_size, self.data_gen)
        valid_batches: list = []
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        seen = 0
        part = self.ranks.part if self.ranks.active else None
        for step, index in enumerate(train_batches):
            x, y = train.batch(index, self.data_gen, part(len(index)) if part else None)
            if search_arch:
                if not valid_batches:  # a fresh reshuffled pass whenever the valid half runs out
                    valid_batches = shuffled_batches(valid_idx, cfg.batch_size, self.data_gen)[::-1]
                valid = valid_batches.pop()
                vx, vy = train.batch(valid, self.data_gen, part(len(valid)) if part else None)
                self.arch_step(vx, vy, len(valid))
            loss, logits = self.weight_step(x, y, len(index))
            # the batch's summed loss: on several ranks `loss` is already this rank's share of it
            loss_sum += loss * (len(index) if self.ranks.active else len(y))
            correct += count_correct(logits, y)
            seen += len(index) if self.ranks.active else len(y)
            hooks.on_batch(self.plan.index + 1, epoch, step + 1, len(train_batches))
        if self.ranks.active:
            totals = torch.stack([loss_sum.double(), correct.double()])
            self.ranks.sum_([totals])
            loss_sum, correct = totals[0], totals[1].long()
        train_loss = loss_sum.item() / seen
        if not math.isfinite(train_loss) or not all(torch.isfinite(a).all() for a in self.alphas):
            raise SearchDiverged(f"non-finite training loss in stage {self.plan.index + 1}, epoch {epoch}")
        return {
            "train_loss": train_loss,
            "train_acc": correct.item() / seen,
            "skip_dropout": rate,
            "lr": lr_at(cfg, epoch),
        }

    @torch.no_grad()
    def validate(self, data: DeviceImages, valid_idx) -> tuple[float, float]:
        """Accuracy and mean loss on the valid half; on several ranks each takes its share."""
        self.model.eval()
        loss_sum, correct = 0.0, 0
        mine = valid_idx[self.ranks.part(len(valid_idx))] if self.ranks.active else valid_idx
        for index in mine.split(self.cfg.batch_size):
            x, y = data.batch(index)
            logits = self.model(x, arch_grad=False)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += count_correct(logits, y).item()
        if self.ranks.active:
            loss_sum, correct = self.ranks.sum_values([loss_sum, correct])
        return correct / len(valid_idx), loss_sum / len(valid_idx)
