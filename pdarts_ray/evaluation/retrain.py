"""Retraining a genotype from scratch and measuring its test error (the paper's section 4.3).

One run trains the evaluation network built from a genotype (network.py) with SGD,
drop path ramped linearly over the epochs, an auxiliary loss and cutout (CIFAR), or
label smoothing and a warmed-up linear LR decay (ImageNet), and tests it every epoch.

The same loop serves one process and data parallelism: when torch.distributed is
initialised (the Ray Train layer does that, see distributed/retrain.py) the model is wrapped
in DistributedDataParallel, each rank takes its share of every global batch and of the
test set, and epoch metrics are summed over ranks. This module imports no Ray.

Random streams are re-derived from (seed, epoch, rank) at the start of each epoch and
the weight initialisation from the seed alone, so a checkpoint needs no random state
and a resumed run (any number of ranks) continues exactly as an uninterrupted one.
Rank 0 writes the run folder: config, genotype, one metrics line and one checkpoint
per epoch, then the final weights and result.json.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from ..core.config import from_dict, to_dict
from ..core.data import ImageData
from ..core.errors import UserError
from ..core.run_folder import CONFIG_FILE, GENOTYPE_FILE, METRICS_FILE, RESULT_FILE, RunFolder
from ..core.runtime import cpu_threads, derived_seed, pin_threads, resolve_device
from ..core.search import check_out_dir
from ..core.space import Genotype
from ..core.version import VERSION as __version__
from .config import EvalConfig
from .counting import network_cost
from .data import check_data, eval_memory_format, open_data
from .network import EvalNetwork, build_network

LINEAR_TAIL_EPOCHS = 5  # the reference's linear decay takes a smaller slope over the last 5 epochs


class EvaluationFailed(RuntimeError):
    """A retraining that cannot finish: it diverged, or its Ray Train run failed after its retries."""


class EvaluationDiverged(EvaluationFailed):
    """Training produced a non-finite loss."""


# ---------------------------------------------------------------- schedules


def lr_at(cfg: EvalConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch`.

    cosine: lr_min + (lr - lr_min)(1 + cos(pi (e + 1) / E)) / 2 (stepped at the epoch's
    start, so the last epoch uses lr_min). linear: lr (E - 5 - e) / (E - 5), then over the
    last 5 epochs lr (E - e) / (5 (E - 5)) (plain lr (E - e) / E for E <= 5). Warm-up
    scales the epoch's value by (e + 1) / warmup_epochs.
    """
    E = cfg.epochs
    if cfg.lr_schedule == "cosine":
        lr = cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * (epoch + 1) / E)) / 2
    else:
        tail = LINEAR_TAIL_EPOCHS if E > LINEAR_TAIL_EPOCHS else 0
        if E - epoch > tail:
            lr = cfg.lr * (E - tail - epoch) / (E - tail)
        else:
            lr = cfg.lr * (E - epoch) / (tail * (E - tail))
    if epoch < cfg.warmup_epochs:
        lr *= (epoch + 1) / cfg.warmup_epochs
    return lr


def drop_path_at(cfg: EvalConfig, epoch: int) -> float:
    return cfg.drop_path * epoch / cfg.epochs


# ---------------------------------------------------------------- training and testing


class Ranks:
    """Rank and world size, and a sum over ranks (nothing to sum in one process)."""

    def __init__(self):
        self.active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.active else 0
        self.world = dist.get_world_size() if self.active else 1

    def sum(self, values: list) -> list[float]:
        t = torch.stack([torch.as_tensor(v, dtype=torch.float64).detach().cpu() for v in values])
        if self.active:
            if dist.get_backend() == "nccl":
                t = t.cuda()
            dist.all_reduce(t)
        return t.cpu().tolist()


class EvalHooks:
    """Called on every rank; the Ray layer reports and checkpoints through these."""

    def on_epoch_end(self, metrics: dict, checkpoint: Path | None) -> None: ...


class AllHooks(EvalHooks):
    """Several hooks, called in order (None entries left out)."""

    def __init__(self, *hooks: EvalHooks | None):
        self.hooks = [h for h in hooks if h is not None]

    def on_epoch_end(self, metrics: dict, checkpoint: Path | None) -> None:
        for hook in self.hooks:
            hook.on_epoch_end(metrics, checkpoint)


class EpochLines(EvalHooks):
    """One line per finished epoch (printed by the process that holds rank 0)."""

    def __init__(self, epochs: int, stream):
        self.epochs, self.stream = epochs, stream

    def on_epoch_end(self, m: dict, checkpoint) -> None:
        test = "-" if m["test_acc"] is None else f"{m['test_acc']:.4f}"
        # a plain write: inside a Ray Train worker `print` is patched to log (and echo) every line
        self.stream.write(
            f"epoch {m['epoch'] + 1}/{self.epochs}  loss {m['train_loss']:.4f}  "
            f"train acc {m['train_acc']:.4f}  test acc {test}  lr {m['lr']:.3g}  "
            f"drop path {m['drop_path']:.3f}  {m['epoch_seconds']:.1f} s\n"
        )
        self.stream.flush()


def build_model(cfg: EvalConfig, genotype: Genotype, num_classes: int) -> EvalNetwork:
    torch.manual_seed(derived_seed(cfg.seed, 0))  # the same initial weights on every rank
    return build_network(
        genotype, cfg.network, cfg.channels, num_classes, cfg.layers, cfg.auxiliary_weight > 0
    )


def train_epoch(
    cfg: EvalConfig, net: nn.Module, model: EvalNetwork, optimizer, data, epoch: int, ranks: Ranks
) -> dict:
    """One epoch; `net` is `model` or its DistributedDataParallel wrapper."""
    lr = lr_at(cfg, epoch)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.drop_path_prob = drop_path_at(cfg, epoch)
    torch.manual_seed(derived_seed(cfg.seed, 3, epoch, ranks.rank))  # drop-path masks (and loader transforms)
    net.train()
    device = next(model.parameters()).device
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for x, y in data.train_batches(epoch):
        optimizer.zero_grad(set_to_none=True)
        logits, logits_aux = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        if logits_aux is not None:
            loss = loss + cfg.auxiliary_weight * F.cross_entropy(
                logits_aux, y, label_smoothing=cfg.label_smoothing
            )
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(dim=1) == y).sum()
        seen += len(y)
    loss_sum, correct, seen = ranks.sum([loss_sum, correct, seen])
    train_loss = loss_sum / seen
    if not math.isfinite(train_loss):
        raise EvaluationDiverged(f"non-finite training loss in epoch {epoch}")
    return {
        "train_loss": train_loss,
        "train_acc": correct / seen,
        "lr": lr,
        "drop_path": model.drop_path_prob,
    }


@torch.no_grad()
def score_test_set(model: EvalNetwork, data, ranks: Ranks) -> dict:
    """Top-1 / top-5 accuracy (fractions) and mean cross-entropy over the whole test set."""
    model.eval()
    k = min(5, data.num_classes)
    device = next(model.parameters()).device
    top1 = torch.zeros((), dtype=torch.long, device=device)
    top5 = torch.zeros((), dtype=torch.long, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    seen = 0
    for x, y in data.test_batches():
        logits, _ = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        best = logits.topk(k, dim=1).indices
        top1 += (best[:, 0] == y).sum()
        top5 += (best == y[:, None]).any(dim=1).sum()
        seen += len(y)
    top1, top5, loss_sum, seen = ranks.sum([top1, top5, loss_sum, seen])
    return {"test_acc": top1 / seen, "test_top5": top5 / seen, "test_loss": loss_sum / seen}


# ---------------------------------------------------------------- the run folder


class EvalRun:
    """An evaluation run folder; `train()` starts or continues the training in it."""

    def __init__(self, cfg: EvalConfig, genotype: Genotype, run_dir: Path, name: str = ""):
        self.cfg, self.genotype, self.name = cfg, genotype, name
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(run_dir)
        self.checkpoints = self.folder.checkpoints

    @classmethod
    def create(cls, cfg: EvalConfig, genotype: Genotype, run_dir: Path, name: str = "") -> EvalRun:
        run_dir = Path(run_dir)
        check_out_dir(run_dir)
        resolved = to_dict(cfg)
        # pinned, so a resume computes the same bits; local workers share the cores
        resolved["threads"] = cfg.threads or max(1, cpu_threads(0) // cfg.workers)
        folder = RunFolder(run_dir)
        folder.path.mkdir(parents=True, exist_ok=True)
        folder.write_genotype({"name": name, **genotype.to_dict()})
        folder.write_config(resolved)
        return cls(from_dict(EvalConfig, resolved, str(folder / CONFIG_FILE)), genotype, run_dir, name)

    @classmethod
    def open(cls, run_dir: Path) -> EvalRun:
        folder = RunFolder(run_dir)
        if not folder.started or not folder.has(GENOTYPE_FILE):
            raise UserError(f"{run_dir}: not an evaluation run folder (no {CONFIG_FILE} and {GENOTYPE_FILE})")
        if folder.finished:
            raise UserError(f"{run_dir}: this evaluation has already finished ({RESULT_FILE} exists)")
        cfg = from_dict(EvalConfig, folder.read_config(), str(folder / CONFIG_FILE))
        data = folder.read_genotype()
        try:
            genotype = Genotype.from_dict({k: v for k, v in data.items() if k != "name"})
        except ValueError as err:
            raise UserError(f"{folder / GENOTYPE_FILE}: {err}") from None
        return cls(cfg, genotype, run_dir, str(data.get("name", "")))

    def saved_state(self) -> dict | None:
        """The newest readable checkpoint, or None before the first epoch finished."""
        return self.checkpoints.load() if self.checkpoints.latest_path() is not None else None

    def train(
        self,
        state: dict | None = None,
        hooks: EvalHooks | None = None,
        device: torch.device | None = None,
        data: ImageData | None = None,
    ) -> dict:
        """Train from `state` (a checkpoint) or from scratch; every rank calls this."""
        cfg, hooks = self.cfg, hooks or EvalHooks()
        ranks = Ranks()
        device = device or resolve_device(cfg.device)
        pin_threads(cfg.threads, device, "--set threads=1", "this retraining")
        fmt = eval_memory_format(cfg, device)
        data_source = open_data(cfg, device, fmt, ranks.rank, ranks.world, data)
        model = build_model(cfg, self.genotype, data_source.num_classes).to(device=device, memory_format=fmt)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
        first_epoch, elapsed, last_row = 0, 0.0, None
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                first_epoch, elapsed, last_row = (
                    int(state["epoch"]) + 1,
                    float(state["elapsed"]),
                    state["row"],
                )
            except (KeyError, TypeError, ValueError, RuntimeError):
                raise UserError(
                    f"{self.checkpoints.folder}: checkpoint does not fit this run's "
                    f"{CONFIG_FILE} and {GENOTYPE_FILE}"
                ) from None
        if ranks.rank == 0 and self.folder.has(METRICS_FILE):  # each epoch appears once
            self.folder.keep_epochs(lambda r: r.get("epoch", 0) < first_epoch, files=(METRICS_FILE,))
        net = model
        if ranks.active:
            device_ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        for epoch in range(first_epoch, cfg.epochs):
            t0 = time.perf_counter()
            row = {"epoch": epoch, **train_epoch(cfg, net, model, optimizer, data_source, epoch, ranks)}
            tested = epoch == cfg.epochs - 1 or (epoch + 1) % cfg.test_every == 0
            row.update(
                score_test_set(model, data_source, ranks)
                if tested
                else {"test_acc": None, "test_top5": None, "test_loss": None}
            )
            row["epoch_seconds"] = time.perf_counter() - t0
            elapsed += row["epoch_seconds"]
            last_row = row
            checkpoint = None
            if ranks.rank == 0:
                self.folder.append_metrics(row)
                checkpoint = self.checkpoints.save(
                    {
                        "epoch": epoch,
                        "elapsed": elapsed,
                        "row": row,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                    }
                )
            hooks.on_epoch_end(row, checkpoint)
        if ranks.rank == 0:
            return self._finish(model, last_row, elapsed, data_source.num_classes, device, ranks.world)
        return {}

    def _finish(
        self, model: EvalNetwork, last: dict, elapsed: float, num_classes: int, device, world: int
    ) -> dict:
        cfg = self.cfg
        buffer = _state_bytes(model.state_dict())
        self.folder.write_weights(buffer)
        cost = network_cost(self.genotype, cfg.network, cfg.channels, cfg.layers, num_classes, cfg.image_size)
        result = {
            "top1": last["test_acc"],
            "top5": last["test_top5"],
            "error_pct": 100.0 * (1.0 - last["test_acc"]),
            "test_loss": last["test_loss"],
            **cost,
            "image_size": cfg.image_size,
            "seconds": elapsed,
            "epochs": cfg.epochs,
            "workers": world,
            "genotype_name": self.name,
            "genotype": self.genotype.to_dict(),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "versions": {
                "pdarts_ray": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        self.folder.write_result(result)
        return result


def _state_bytes(state: dict) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    return buf.getvalue()


# ---------------------------------------------------------------- entry points


def run_evaluation(
    cfg: EvalConfig, genotype: Genotype, run_dir: Path, hooks: EvalHooks | None = None, name: str = ""
) -> dict:
    """A new evaluation in this process. Bad input fails before anything is written."""
    check_out_dir(run_dir)
    resolve_device(cfg.device)
    data = check_data(cfg)
    return EvalRun.create(cfg, genotype, run_dir, name).train(hooks=hooks, data=data)


def resume_evaluation(run_dir: Path, hooks: EvalHooks | None = None) -> dict:
    run = EvalRun.open(run_dir)
    return run.train(run.saved_state(), hooks)


def score_weights(cfg: EvalConfig, genotype: Genotype, weights: Path) -> dict:
    """Test accuracy of saved weights, without training (the auxiliary head is not needed)."""
    weights = Path(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{weights}: no such file") from None
    except Exception as err:  # any unreadable or unsafe file
        raise UserError(f"{weights}: not a weights file ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(state, dict):
        raise UserError(f"{weights}: not a state dict")
    device = resolve_device(cfg.device)
    pin_threads(cfg.threads, device, "--set threads=1", "this evaluation")
    fmt = eval_memory_format(cfg, device)
    data = open_data(cfg, device, fmt, data=check_data(cfg))
    model = build_network(genotype, cfg.network, cfg.channels, data.num_classes, cfg.layers, auxiliary=False)
    state = {k: v for k, v in state.items() if not k.startswith("auxiliary_head.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = [line.strip() for line in str(err).splitlines() if line.strip()][1:2] or ["mismatch"]
        raise UserError(
            f"{weights}: weights do not fit the {cfg.network} network with channels={cfg.channels}, "
            f"layers={cfg.layers} and this genotype ({first[0][:160]})"
        ) from None
    model.to(device=device, memory_format=fmt)
    result = score_test_set(model, data, Ranks())
    cost = network_cost(genotype, cfg.network, cfg.channels, cfg.layers, data.num_classes, cfg.image_size)
    return {
        "top1": result["test_acc"],
        "top5": result["test_top5"],
        "error_pct": 100.0 * (1.0 - result["test_acc"]),
        "test_loss": result["test_loss"],
        **cost,
    }
