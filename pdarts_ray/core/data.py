"""Image data: CIFAR-10/100 through torchvision, ImageFolder, the bundled digits and
synthetic data (real CIFAR-format files read back by torchvision's CIFAR-10 reader, see
bundled.py), and device-resident batches with on-device augmentation.

Whole datasets are held as uint8 tensors (N, 3, H, W) on the training device; a batch
is an index gather, a random crop with zero padding and a horizontal flip, then
normalisation, all on that device. No DataLoader worker processes are involved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .bundled import CIFAR10_FILES, CIFAR10_FOLDER, load_bundled
from .errors import UserError

CIFAR10_MEAN = (0.49139968, 0.48215827, 0.44653124)
CIFAR10_STD = (0.24703233, 0.24348505, 0.26158768)
CIFAR100_MEAN = (0.5071, 0.4867, 0.4408)
CIFAR100_STD = (0.2675, 0.2565, 0.2761)
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ["train", "test", "meta"]


@dataclass
class ImageData:
    """A dataset held in memory: uint8 images N,3,H,W and int64 labels."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor | None
    test_y: torch.Tensor | None
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# ---------------------------------------------------------------- loading


def _to_tensors(data: np.ndarray, targets) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()
    return x, torch.as_tensor(np.asarray(targets), dtype=torch.long)


def _resize(x: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if x is None or x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round().clamp(0, 255).to(torch.uint8)


def _channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    f = x.float().div(255)
    mean = f.mean(dim=(0, 2, 3))
    std = f.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def _missing(folder: Path, names: list[str]) -> list[str]:
    return [n for n in names if not (folder / n).is_file()]


def _load_cifar(kind: str, root: str, download: bool):
    from torchvision import datasets

    folder_name, files, cls = (
        (CIFAR10_FOLDER, CIFAR10_FILES, datasets.CIFAR10)
        if kind == "cifar10"
        else (CIFAR100_FOLDER, CIFAR100_FILES, datasets.CIFAR100)
    )
    folder = Path(root).expanduser() / folder_name
    if not download:
        missing = _missing(folder, files)
        if missing:
            raise UserError(
                f"{kind}: missing {', '.join(str(folder / m) for m in missing)} "
                f"(put the dataset there, or pass --download)"
            )
    try:
        train = cls(str(Path(root).expanduser()), train=True, download=download)
        test = cls(str(Path(root).expanduser()), train=False, download=download)
    except RuntimeError as err:
        raise UserError(f"{kind}: {folder}: {err}") from None
    except OSError as err:
        raise UserError(f"{kind}: cannot download to {folder} ({err})") from None
    return train.data, train.targets, test.data, test.targets, len(train.classes)


def _load_imagefolder(root: str, size: int):
    from torchvision import datasets, transforms

    base = Path(root).expanduser()
    train_dir = base / "train"
    if not train_dir.is_dir():
        raise UserError(f"imagefolder: {train_dir} not found (expected {base}/train/<class>/<images>)")
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.PILToTensor()])

    def read(folder: Path, classes: list[str] | None):
        try:
            ds = datasets.ImageFolder(str(folder), transform=tf)
        except (FileNotFoundError, RuntimeError) as err:
            raise UserError(f"imagefolder: {folder}: {err}") from None
        if classes is not None and ds.classes != classes:
            raise UserError(f"imagefolder: {folder}: classes differ from {train_dir}")
        xs, ys = [], []
        for i in range(len(ds)):
            try:
                img, label = ds[i]
            except OSError as err:
                raise UserError(f"imagefolder: cannot read {ds.samples[i][0]} ({err})") from None
            xs.append(img)
            ys.append(label)
        return torch.stack(xs), torch.tensor(ys, dtype=torch.long), ds.classes

    train_x, train_y, classes = read(train_dir, None)
    test_dir = next((base / n for n in ("test", "val") if (base / n).is_dir()), None)
    test_x = test_y = None
    if test_dir is not None:
        test_x, test_y, _ = read(test_dir, classes)
    return train_x, train_y, test_x, test_y, len(classes)


def load_dataset(
    dataset: str,
    data_root: str | None = None,
    image_size: int = 32,
    download: bool = False,
    synthetic_size: int = 2000,
    synthetic_classes: int = 10,
) -> ImageData:
    if dataset in ("cifar10", "cifar100", "imagefolder") and not data_root:
        raise UserError(f"{dataset}: no data_root given (pass --data-root DIR, the folder that holds it)")
    if dataset in ("cifar10", "cifar100"):
        train_d, train_t, test_d, test_t, classes = _load_cifar(dataset, data_root, download)
        train_x, train_y = _to_tensors(train_d, train_t)
        test_x, test_y = _to_tensors(test_d, test_t)
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    elif dataset in ("digits", "synthetic", "mnist5k"):
        train_d, train_t, test_d, test_t, names = load_bundled(
            dataset, data_root, synthetic_size, synthetic_classes
        )
        train_x, train_y = _to_tensors(train_d, train_t)
        test_x, test_y = _to_tensors(test_d, test_t)
        classes = len(names)
        mean, std = _channel_stats(train_x)
    elif dataset == "imagefolder":
        train_x, train_y, test_x, test_y, classes = _load_imagefolder(data_root, image_size)
        mean, std = _channel_stats(train_x)
    else:
        raise UserError(f"unknown dataset '{dataset}'")
    return ImageData(
        dataset,
        _resize(train_x, image_size),
        train_y,
        _resize(test_x, image_size),
        test_y,
        classes,
        tuple(mean),
        tuple(std),
    )


# ---------------------------------------------------------------- device-resident batches


class DeviceImages:
    """A set of images living on the training device, served as normalised batches."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean,
        std,
        device,
        memory_format: torch.memory_format = torch.contiguous_format,
    ):
        self.device = torch.device(device)
        self.memory_format = memory_format
        self.x = images.to(self.device)
        self.y = labels.to(self.device)
        self.mean = torch.tensor(mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, -1, 1, 1)
        self.pad = max(1, images.shape[-1] // 8)  # 4 pixels at 32x32, as CIFAR's RandomCrop

    def __len__(self):
        return len(self.y)

    def batch(self, index: torch.Tensor, augment: torch.Generator | None = None, part: slice | None = None):
        """Images `index` as float N,3,H,W; with a generator, random-crop and flip them. With
        `part`, only that slice of the batch, augmented exactly as it would be in the whole
        batch (the random draws are the whole batch's)."""
        crops = draw_crop_flip(len(index), self.pad, augment, self.device) if augment is not None else None
        if part is not None:
            index = index[part]
            crops = tuple(c[part] for c in crops) if crops is not None else None
        x = self.x.index_select(0, index).float().div_(255)
        if crops is not None:
            x = crop_flip(x, self.pad, *crops)
        x = ((x - self.mean) / self.std).contiguous(memory_format=self.memory_format)
        return x, self.y.index_select(0, index)


def draw_crop_flip(n: int, pad: int, g: torch.Generator, device) -> tuple[torch.Tensor, ...]:
    """Random crop offsets and flips of n images: (row offsets, column offsets, flips)."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=device)
    flip = torch.rand(n, generator=g, device=device) < 0.5
    return oy, ox, flip


def crop_flip(
    x: torch.Tensor, pad: int, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    """Zero-pad by `pad`, crop back at the given offsets, flip where asked."""
    n, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (oy[:, None] + torch.arange(h, device=dev)).view(n, 1, h, 1)
    cols = ox[:, None] + torch.arange(w, device=dev)
    cols = torch.where(flip[:, None], cols.flip(1), cols).view(n, 1, 1, w)
    return padded[
        torch.arange(n, device=dev).view(n, 1, 1, 1), torch.arange(c, device=dev).view(1, c, 1, 1), rows, cols
    ]


def random_crop_flip(x: torch.Tensor, pad: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad`, crop back at a random offset, flip half the images horizontally."""
    return crop_flip(x, pad, *draw_crop_flip(x.shape[0], pad, g, x.device))


def shuffled_batches(indices: torch.Tensor, batch_size: int, g: torch.Generator) -> list[torch.Tensor]:
    """One epoch of a random sampler over `indices`: a fresh permutation, last batch partial."""
    order = indices[torch.randperm(len(indices), generator=g, device=indices.device)]
    return list(order.split(batch_size))


def cutout(x: torch.Tensor, length: int, g: torch.Generator) -> torch.Tensor:
    """Zero one length x length square per image (x: N,C,H,W, already normalised).

    The centre is uniform over the image and the square is clipped at the borders, so
    squares near an edge are smaller (the reference's Cutout, applied after Normalize).
    """
    n, _, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (n, 1), generator=g, device=dev)
    cx = torch.randint(0, w, (n, 1), generator=g, device=dev)
    rows = torch.arange(h, device=dev)
    cols = torch.arange(w, device=dev)
    inside_y = (rows >= cy - length // 2) & (rows < cy + length // 2)  # N,H
    inside_x = (cols >= cx - length // 2) & (cols < cx + length // 2)  # N,W
    keep = ~(inside_y[:, :, None] & inside_x[:, None, :])  # N,H,W
    return x * keep[:, None].to(x.dtype)
