"""The config of an evaluation run: keys, validation, presets.

Same conventions as the search config (config.py): resolved from a preset, a file,
`--set key=value` and flags, every key validated with a one-line error naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.config import DATASETS, _at_least, _choice, check_device, check_types
from ..core.errors import UserError

EVAL_DATASETS = DATASETS + ("imagenet",)  # imagenet: train/ and val/ image folders, streamed from disk


@dataclass
class EvalConfig:
    """Everything one retraining run depends on (the genotype comes separately)."""

    # digits, synthetic, cifar10, cifar100, imagefolder, mnist5k (in memory); imagenet (streamed)
    dataset: str = "digits"
    data_root: str | None = None
    download: bool = False
    image_size: int = 32
    synthetic_size: int = 2000
    synthetic_classes: int = 10
    network: str = "cifar"  # cifar: 3x3 stem; imagenet: three stride-2 stem convolutions
    channels: int = 36
    layers: int = 20
    auxiliary_weight: float = 0.4  # 0 = no auxiliary head
    drop_path: float = 0.3  # reached at the end: epoch e uses drop_path * e / epochs
    epochs: int = 600
    batch_size: int = 128  # global: split evenly over the workers
    lr: float = 0.025
    lr_schedule: str = "cosine"  # cosine (stepped at epoch start) or linear (the reference's ImageNet decay)
    lr_min: float = 0.0  # cosine only
    warmup_epochs: int = 0  # epoch e < warmup_epochs scales its lr by (e + 1) / warmup_epochs
    momentum: float = 0.9
    weight_decay: float = 3e-4
    label_smoothing: float = 0.0  # training loss only
    grad_clip: float = 5.0  # global-norm clip; 0 = off
    cutout: int = 16  # side of the zeroed square; 0 = off
    test_every: int = 1  # test every k-th epoch (and always the last)
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # CPU threads per process; 0 = the cores this process may use, shared by local workers
    channels_last: str = "auto"
    loader_workers: int = 4  # DataLoader processes per worker, for dataset=imagenet
    workers: int = 1  # data-parallel workers
    ray_train: bool = False  # run one worker through Ray Train too (more than one always runs there)
    max_failures: int = 2  # Ray Train restarts from the last checkpoint after a worker failure

    def validate(self) -> EvalConfig:
        # imported here: the presets below are read by --help, which must not load torch
        from .network import NETWORKS, auxiliary_input_size, auxiliary_min_input, check_network_args

        check_types(self)
        _choice(self, "dataset", EVAL_DATASETS)
        _choice(self, "network", NETWORKS)
        _at_least(self, "image_size", 8)
        _at_least(self, "synthetic_size", 4)
        _at_least(self, "synthetic_classes", 2)
        try:
            check_network_args(self.network, self.channels, self.layers)
        except ValueError as err:
            raise UserError(f"config: {err}") from None
        if self.auxiliary_weight < 0:
            raise UserError(f"config: auxiliary_weight: must not be negative, got {self.auxiliary_weight}")
        aux_size = auxiliary_input_size(self.network, self.image_size)
        if self.auxiliary_weight > 0 and aux_size < auxiliary_min_input(self.network):
            raise UserError(
                f"config: auxiliary_weight: the auxiliary head needs at least "
                f"{auxiliary_min_input(self.network)}x{auxiliary_min_input(self.network)} features "
                f"after the second reduction, image_size {self.image_size} leaves {aux_size}x{aux_size} "
                f"(set auxiliary_weight=0 or a larger image_size)"
            )
        if not 0.0 <= self.drop_path < 1.0:
            raise UserError(f"config: drop_path: must be in [0, 1), got {self.drop_path}")
        _at_least(self, "epochs", 1)
        _at_least(self, "warmup_epochs", 0)
        if self.warmup_epochs > self.epochs:
            raise UserError(
                f"config: warmup_epochs: must not exceed epochs ({self.epochs}), got {self.warmup_epochs}"
            )
        _at_least(self, "workers", 1)
        _at_least(self, "batch_size", 2 * self.workers)  # BatchNorm needs 2 samples per worker
        if self.batch_size % self.workers:
            raise UserError(
                f"config: batch_size: must be divisible by workers ({self.workers}), got {self.batch_size}"
            )
        for key in ("lr", "lr_min", "weight_decay", "grad_clip"):
            if getattr(self, key) < 0:
                raise UserError(f"config: {key}: must not be negative, got {getattr(self, key)}")
        if self.lr_min > self.lr:
            raise UserError("config: lr_min: must not exceed lr")
        _choice(self, "lr_schedule", ("cosine", "linear"))
        for key in ("momentum", "label_smoothing"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise UserError(f"config: {key}: must be in [0, 1), got {getattr(self, key)}")
        _at_least(self, "cutout", 0)
        _at_least(self, "test_every", 1)
        _at_least(self, "seed", 0)
        err = check_device(self.device)
        if err:
            raise UserError(f"config: device: {err}, got {self.device!r}")
        _at_least(self, "threads", 0)
        _choice(self, "channels_last", ("auto", "on", "off"))
        _at_least(self, "loader_workers", 0)
        _at_least(self, "max_failures", 0)
        return self

    @property
    def uses_ray(self) -> bool:
        return self.workers > 1 or self.ray_train


_CIFAR_RECIPE = dict(
    network="cifar",
    image_size=32,
    channels=36,
    layers=20,
    auxiliary_weight=0.4,
    drop_path=0.3,
    epochs=600,
    batch_size=128,
    lr=0.025,
    lr_schedule="cosine",
    warmup_epochs=0,
    momentum=0.9,
    label_smoothing=0.0,
    grad_clip=5.0,
    cutout=16,
    seed=0,
)
_IMAGENET_RECIPE = dict(
    dataset="imagenet",
    network="imagenet",
    image_size=224,
    channels=48,
    layers=14,
    auxiliary_weight=0.4,
    drop_path=0.0,
    epochs=250,
    lr_schedule="linear",
    momentum=0.9,
    weight_decay=3e-5,
    label_smoothing=0.1,
    grad_clip=5.0,
    cutout=0,
    seed=0,
    loader_workers=8,
)

EVAL_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's CIFAR recipe (section 4.3.1): 600 epochs, batch 128, SGD 0.025 with cosine
    # decay, drop path ramped to 0.3, auxiliary weight 0.4, cutout 16, grad clip 5.
    "eval-c10": dict(dataset="cifar10", weight_decay=3e-4, **_CIFAR_RECIPE),
    "eval-c100": dict(dataset="cifar100", weight_decay=5e-4, **_CIFAR_RECIPE),
    # The paper's ImageNet recipe (section 4.3.2): batch 1024, lr 0.5, 5 warm-up epochs,
    # linear decay, label smoothing 0.1, weight decay 3e-5.
    "eval-imagenet": dict(batch_size=1024, lr=0.5, warmup_epochs=5, **_IMAGENET_RECIPE),
    # The reference code's defaults: batch 256, lr 0.1 (its warm-up only runs above batch 256).
    "eval-imagenet-256": dict(batch_size=256, lr=0.1, warmup_epochs=0, **_IMAGENET_RECIPE),
    # CPU in minutes on the bundled digits: a narrow, shallow CIFAR network, the full recipe.
    "eval-tiny": dict(
        dataset="digits",
        network="cifar",
        image_size=32,
        channels=8,
        layers=5,
        auxiliary_weight=0.4,
        drop_path=0.1,
        epochs=12,
        batch_size=64,
        lr=0.05,
        lr_schedule="cosine",
        weight_decay=3e-4,
        cutout=8,
        seed=0,
    ),
    # The `small` tables' retraining: eval-tiny with 8 cells and 20 epochs.
    "eval-small": dict(
        dataset="digits",
        network="cifar",
        image_size=32,
        channels=8,
        layers=8,
        auxiliary_weight=0.4,
        drop_path=0.1,
        epochs=20,
        batch_size=64,
        lr=0.05,
        lr_schedule="cosine",
        weight_decay=3e-4,
        cutout=8,
        seed=0,
    ),
    # For tests: seconds.
    "eval-smoke": dict(
        dataset="synthetic",
        synthetic_size=128,
        synthetic_classes=4,
        network="cifar",
        image_size=32,
        channels=4,
        layers=3,
        auxiliary_weight=0.4,
        drop_path=0.2,
        epochs=3,
        batch_size=32,
        lr=0.1,
        cutout=8,
        threads=1,
        seed=0,
    ),
}
