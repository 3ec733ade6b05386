"""The bundled datasets, digits and synthetic (and the opt-in mnist5k, core/mnist5k.py), as
real CIFAR-10 files read by torchvision.

Each is built from its source (the handwritten digits scikit-learn ships; a seeded
generator) into the bytes of CIFAR-10's own batch files (pickled dicts, 5 train batches,
a test batch, batches.meta), cached under `$PDARTS_CACHE` (default ~/.cache/pdarts-ray) or
a given folder, and read back through torchvision's CIFAR-10 reader.

torchvision's reader unpickles the files, and unpickling runs code, so a file is trusted
only if it is byte for byte the file built from the source in this process: its SHA-256
is compared with that of the freshly built bytes (never with a digest read from the
folder). A file that differs (tampered with, half-written, or written by another numpy
version) is rewritten with a one-line warning. torchvision then reads a private copy of
the verified bytes, so a file swapped after the check is never unpickled.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import write_bytes_atomic
from .errors import UserError

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
DIGITS_IMAGES = 1797  # scikit-learn's load_digits
SYNTHETIC_SEED = 20191027  # fixed: a synthetic set is the same for every run that asks for it


def cache_dir() -> Path:
    return Path(os.environ.get("PDARTS_CACHE") or Path.home() / ".cache" / "pdarts-ray")


# ---------------------------------------------------------------- CIFAR-format files


def cifar10_files(
    train_x: np.ndarray, train_y, test_x: np.ndarray, test_y, label_names: list[str]
) -> dict[str, bytes]:
    """The CIFAR-10 batch files of images N, 32, 32, 3 (uint8), as bytes: deterministic."""
    chunks = np.array_split(np.arange(len(train_x)), 5)

    def batch(name, images, labels, batch_label) -> bytes:
        flat = np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(len(images), -1)
        entry = {
            "batch_label": batch_label,
            "labels": [int(v) for v in labels],
            "data": flat,
            "filenames": [f"{name}_{i:05d}.png" for i in range(len(images))],
        }
        return pickle.dumps(entry, protocol=2)

    files = {
        f"data_batch_{i}": batch(
            f"data_batch_{i}", train_x[idx], np.asarray(train_y)[idx], f"training batch {i} of 5"
        )
        for i, idx in enumerate(chunks, start=1)
    }
    files["test_batch"] = batch("test_batch", test_x, test_y, "testing batch 1 of 1")
    files["batches.meta"] = pickle.dumps(
        {"label_names": label_names, "num_cases_per_batch": int(len(chunks[0])), "num_vis": 3072}, protocol=2
    )
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sync_cache(root: Path, files: dict[str, bytes], what: str) -> Path:
    """Make `root/cifar-10-batches-py` hold exactly `files`: missing files are written, files
    that differ are rewritten (with a warning), each atomically. Returns `root`."""
    folder = Path(root) / CIFAR10_FOLDER
    for name, data in files.items():
        path = folder / name
        try:
            on_disk = path.read_bytes()
        except FileNotFoundError:
            on_disk = None
        except OSError as err:
            raise UserError(f"{path}: cannot read the {what} cache ({err.strerror})") from None
        if on_disk == data:
            continue
        if on_disk is not None:
            print(
                f"warning: {path} is not the {what} data this version builds (modified, half-written or from "
                f"another numpy); rewritten",
                file=sys.stderr,
            )
        try:
            write_bytes_atomic(path, data)
        except OSError as err:
            raise UserError(f"{folder}: cannot write the {what} cache ({err.strerror})") from None
    return Path(root)


def read_verified(root: Path, files: dict[str, bytes], what: str):
    """(train images, train labels, test images, test labels, label names) of the cache at
    `root`, read by torchvision only after every file matched `files`, from a private copy."""
    from torchvision.datasets import CIFAR10

    folder = Path(root) / CIFAR10_FOLDER
    for name, data in files.items():
        try:
            ok = _sha256((folder / name).read_bytes()) == _sha256(data)
        except OSError:
            ok = False
        if not ok:
            raise UserError(f"{folder / name}: does not match the {what} data; refusing to read it")

    class VerifiedCIFAR10(CIFAR10):
        """torchvision's reader with the checksums of the verified files."""

        train_list = [[n, hashlib.md5(files[n]).hexdigest()] for n in CIFAR10_FILES[:5]]
        test_list = [["test_batch", hashlib.md5(files["test_batch"]).hexdigest()]]
        meta = {
            "filename": "batches.meta",
            "key": "label_names",
            "md5": hashlib.md5(files["batches.meta"]).hexdigest(),
        }

    with tempfile.TemporaryDirectory(prefix="pdarts-verified-") as private:
        os.chmod(private, 0o700)
        (Path(private) / CIFAR10_FOLDER).mkdir()
        for name, data in files.items():
            (Path(private) / CIFAR10_FOLDER / name).write_bytes(data)
        try:
            train, test = VerifiedCIFAR10(private, train=True), VerifiedCIFAR10(private, train=False)
        except RuntimeError as err:
            raise UserError(f"{folder}: {err}") from None
    return train.data, train.targets, test.data, test.targets, train.classes


# ---------------------------------------------------------------- the bundled digits


def digits_test_images() -> int:
    """Images in the digits' test batch: every 6th of the 1,797."""
    return DIGITS_IMAGES // 6


def digits_files() -> dict[str, bytes]:
    """The 1,797 handwritten digits shipped inside scikit-learn, as CIFAR-10 files.

    8x8 grey images (0..16) are scaled to 0..255, upsampled to 32x32 and copied to
    3 channels; every 6th image goes to the test batch (1,498 train / 299 test).
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    big = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    images = big.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    labels = bunch.target.astype(np.int64)
    test = np.arange(len(images)) % 6 == 5
    return cifar10_files(
        images[~test], labels[~test], images[test], labels[test], [str(d) for d in range(10)]
    )


# ---------------------------------------------------------------- synthetic data


def make_synthetic(size: int, classes: int, seed: int = SYNTHETIC_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Images with class structure a small network can learn.

    Each class has a smooth colour template (low-resolution noise, upsampled); a sample
    is its class template, randomly shifted, with a random contrast and pixel noise.
    """
    g = torch.Generator().manual_seed(seed)
    templates = F.interpolate(
        torch.rand(classes, 3, 4, 4, generator=g), size=(32, 32), mode="bicubic", align_corners=False
    )
    labels = torch.arange(size) % classes
    labels = labels[torch.randperm(size, generator=g)]
    x = templates[labels]
    shifts = torch.randint(-3, 4, (size, 2), generator=g)
    x = torch.stack([torch.roll(img, (int(dy), int(dx)), dims=(1, 2)) for img, (dy, dx) in zip(x, shifts)])
    contrast = 0.6 + 0.8 * torch.rand(size, 1, 1, 1, generator=g)
    x = 0.5 + (x - 0.5) * contrast + 0.12 * torch.randn(x.shape, generator=g)
    images = (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return images, labels.numpy()


def synthetic_test_images(size: int, classes: int) -> int:
    return max(classes, size // 5)


def synthetic_files(size: int, classes: int) -> dict[str, bytes]:
    """`size` training images plus synthetic_test_images(size, classes), as CIFAR-10 files."""
    test_size = synthetic_test_images(size, classes)
    images, labels = make_synthetic(size + test_size, classes)
    return cifar10_files(
        images[:size], labels[:size], images[size:], labels[size:], [f"class_{c}" for c in range(classes)]
    )


def bundled_folder(dataset: str, root: str | Path | None = None, size: int = 2000, classes: int = 10) -> Path:
    if root:
        return Path(root)
    return cache_dir() / (dataset if dataset in ("digits", "mnist5k") else f"synthetic-n{size}-c{classes}")


def bundled_files(dataset: str, size: int = 2000, classes: int = 10) -> dict[str, bytes]:
    if dataset == "mnist5k":
        from . import mnist5k

        return cifar10_files(*mnist5k.split(), [str(d) for d in range(10)])
    return digits_files() if dataset == "digits" else synthetic_files(size, classes)


def ensure_bundled(dataset: str, root: str | Path | None = None, size: int = 2000, classes: int = 10) -> Path:
    """The cache folder of digits or synthetic data, written or repaired."""
    return sync_cache(
        bundled_folder(dataset, root, size, classes), bundled_files(dataset, size, classes), dataset
    )


def load_bundled(dataset: str, root: str | Path | None = None, size: int = 2000, classes: int = 10):
    """(train images, train labels, test images, test labels, label names) of digits or
    synthetic data: built, cached in `root` (default: under the cache folder), verified, read."""
    files = bundled_files(dataset, size, classes)
    folder = sync_cache(bundled_folder(dataset, root, size, classes), files, dataset)
    return read_verified(folder, files, dataset)
