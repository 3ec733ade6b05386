"""Data of a retraining: every rank's share of every global batch, in memory on the device
(CIFAR, digits, synthetic, small image folders) or streamed from ImageNet-style folders.

Every rank draws the same epoch permutation from (seed, epoch) and takes items r, r + W,
... of each global batch; its augmentation streams come from (seed, epoch, rank), so a
checkpoint needs no random state.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from ..core.data import DeviceImages, ImageData, cutout, load_dataset
from ..core.errors import UserError
from ..core.runtime import derived_seed, memory_format
from .config import EvalConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------- data


def eval_memory_format(cfg: EvalConfig, device: torch.device) -> torch.memory_format:
    """`auto`: channels-last on CPU for the CIFAR network on images up to 32 pixels only
    (1.3x faster there; see `runtime.memory_format` for why not on larger images)."""
    if cfg.channels_last == "auto" and cfg.network != "cifar":
        return torch.contiguous_format
    return memory_format(cfg.channels_last, device, cfg.image_size)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int, world: int
) -> list[torch.Tensor]:
    """This rank's share of every global batch of one epoch (CPU index tensors).

    Every rank draws the same permutation; rank r takes items r, r + W, ... of each global
    batch. A last batch too small to give every rank two images is dropped (BatchNorm).
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, 1, epoch)))
    return [b[rank::world] for b in order.split(batch_size) if len(b) >= 2 * world]


class MemoryData:
    """A dataset held on the device (CIFAR, digits, synthetic, small image folders)."""

    def __init__(
        self,
        data: ImageData,
        cfg: EvalConfig,
        device: torch.device,
        fmt: torch.memory_format,
        rank: int = 0,
        world: int = 1,
    ):
        if data.test_x is None:
            raise UserError(f"{cfg.dataset}: no test images (an image folder needs a test/ or val/ folder)")
        self.cfg, self.device, self.rank, self.world = cfg, device, rank, world
        self.num_classes = data.num_classes
        self.train = DeviceImages(data.train_x, data.train_y, data.mean, data.std, device, fmt)
        self.test = DeviceImages(data.test_x, data.test_y, data.mean, data.std, device, fmt)
        self.fmt = fmt

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        g = torch.Generator(device=self.device).manual_seed(derived_seed(cfg.seed, 2, epoch, self.rank))
        for index in epoch_batches(len(self.train), cfg.batch_size, cfg.seed, epoch, self.rank, self.world):
            x, y = self.train.batch(index.to(self.device), g)  # random crop + flip, normalised
            if cfg.cutout:
                x = cutout(x, cfg.cutout, g).contiguous(memory_format=self.fmt)
            yield x, y

    def test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        mine = torch.arange(self.rank, len(self.test), self.world, device=self.device)
        for index in mine.split(self.cfg.batch_size // self.world):
            yield self.test.batch(index)


class FolderData:
    """ImageNet-style folders (root/train/<class>/*, root/val/<class>/*), streamed from disk.

    Training: RandomResizedCrop, horizontal flip, ColorJitter(0.4, 0.4, 0.4, 0.2); test:
    Resize to size * 256/224 and CenterCrop (the reference's transforms).
    """

    def __init__(
        self, cfg: EvalConfig, device: torch.device, fmt: torch.memory_format, rank: int = 0, world: int = 1
    ):
        from torchvision import transforms

        self.cfg, self.device, self.fmt, self.rank, self.world = cfg, device, fmt, rank, world
        train_dir, test_dir = imagenet_folders(cfg)
        size = cfg.image_size
        normalize = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.train_set = _image_folder(
            train_dir,
            transforms.Compose(
                [
                    transforms.RandomResizedCrop(size),
                    transforms.RandomHorizontalFlip(),
                    transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.2),
                    transforms.ToTensor(),
                    normalize,
                ]
            ),
        )
        self.test_set = _image_folder(
            test_dir,
            transforms.Compose(
                [
                    transforms.Resize(round(size * 256 / 224)),
                    transforms.CenterCrop(size),
                    transforms.ToTensor(),
                    normalize,
                ]
            ),
        )
        if self.test_set.classes != self.train_set.classes:
            raise UserError(f"imagenet: {test_dir}: classes differ from {train_dir}")
        self.num_classes = len(self.train_set.classes)

    def _load(self, dataset, batches, seed: int):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=[b.tolist() for b in batches],
            num_workers=self.cfg.loader_workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(seed),
        )
        for x, y in loader:
            yield (
                x.to(self.device, non_blocking=True).contiguous(memory_format=self.fmt),
                y.to(self.device, non_blocking=True),
            )

    def train_batches(self, epoch: int):
        cfg = self.cfg
        batches = epoch_batches(len(self.train_set), cfg.batch_size, cfg.seed, epoch, self.rank, self.world)
        return self._load(self.train_set, batches, derived_seed(cfg.seed, 4, epoch, self.rank))

    def test_batches(self):
        mine = torch.arange(self.rank, len(self.test_set), self.world)
        return self._load(self.test_set, list(mine.split(self.cfg.batch_size // self.world)), 0)


def imagenet_folders(cfg: EvalConfig) -> tuple[Path, Path]:
    if not cfg.data_root:
        raise UserError(
            "imagenet: no data_root given (pass --data-root DIR, the folder holding train/ and val/)"
        )
    root = Path(cfg.data_root).expanduser()
    train_dir = root / "train"
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise UserError(f"imagenet: expected {root}/train/<class>/<images> and {root}/val/<class>/<images>")
    return train_dir, test_dir


def _image_folder(folder: Path, transform):
    from torchvision import datasets

    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except (FileNotFoundError, RuntimeError) as err:
        raise UserError(f"imagenet: {folder}: {err}") from None


def load_memory_data(cfg: EvalConfig) -> ImageData:
    return load_dataset(
        cfg.dataset, cfg.data_root, cfg.image_size, cfg.download, cfg.synthetic_size, cfg.synthetic_classes
    )


def check_data(cfg: EvalConfig) -> ImageData | None:
    """Fail early on missing data: in-memory sets are loaded (and returned), folders listed."""
    if cfg.dataset == "imagenet":
        FolderData(cfg, torch.device("cpu"), torch.contiguous_format)
        return None
    data = load_memory_data(cfg)
    if data.test_x is None:
        raise UserError(f"{cfg.dataset}: no test images (an image folder needs a test/ or val/ folder)")
    return data


def open_data(cfg: EvalConfig, device, fmt, rank: int = 0, world: int = 1, data: ImageData | None = None):
    if cfg.dataset == "imagenet":
        return FolderData(cfg, device, fmt, rank, world)
    return MemoryData(data or load_memory_data(cfg), cfg, device, fmt, rank, world)
