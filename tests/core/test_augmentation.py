"""The search's batch augmentation is the official one: a 32x32 random crop from the image
zero-padded by 4 pixels and a random horizontal flip (probability 1/2), before normalising,
on every weight-step batch and every architecture-step batch (the official valid queue is
built on the training set with the training transform). Validation, logging only, sees
un-augmented images (docs/search.md).

The crop and flip are checked exactly against an independent per-image implementation fed
the draws our batch made, and the draws themselves by their distribution over many images:
a change of padding, a dropped flip or a skipped crop fails one or the other, whatever the
seed."""

import numpy as np
import pytest
import torch

from pdarts_ray.core import data as data_module
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.data import DeviceImages
from pdarts_ray.core.hooks import SearchHooks
from pdarts_ray.core.search import initial_switches
from pdarts_ray.core.stage import Stage, StagePlan

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
PAD = 4  # torchvision RandomCrop(32, padding=4), as the official search transform
N = 2304  # draws: 256 per crop offset on average


def cifar_like(n: int, size: int = 32, seed: int = 0, classes: int = 10) -> DeviceImages:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return DeviceImages(images, torch.arange(n) % classes, MEAN, STD, "cpu")


def expected_image(image: np.ndarray, oy: int, ox: int, flip: bool) -> np.ndarray:
    """RandomCrop(32, padding=4) at (oy, ox), then RandomHorizontalFlip, ToTensor, Normalize."""
    size = image.shape[-1]
    padded = np.pad(image.astype(np.float32) / np.float32(255), ((0, 0), (PAD, PAD), (PAD, PAD)))
    crop = padded[:, oy : oy + size, ox : ox + size]
    if flip:
        crop = crop[:, :, ::-1]
    mean = np.array(MEAN, dtype=np.float32)[:, None, None]
    std = np.array(STD, dtype=np.float32)[:, None, None]
    return (crop - mean) / std


def test_train_batches_are_padded_random_crops_and_flips(monkeypatch):
    data = cifar_like(64)
    draws = []

    def recording(*args, **kwargs):
        out = real(*args, **kwargs)
        draws.append([t.clone() for t in out])
        return out

    real = data_module.draw_crop_flip
    monkeypatch.setattr(data_module, "draw_crop_flip", recording)
    index = torch.arange(N) % 64
    x, y = data.batch(index, torch.Generator().manual_seed(3))
    assert len(draws) == 1, "the batch drew no crop and flip (or drew twice)"
    oy, ox, flip = (t.numpy() for t in draws[0])
    images = data.x.numpy()
    for i in range(N):
        want = expected_image(images[index[i]], int(oy[i]), int(ox[i]), bool(flip[i]))
        np.testing.assert_allclose(x[i].numpy(), want, rtol=0, atol=2e-6, err_msg=f"image {i}")
    assert torch.equal(y, index % 10)
    # RandomCrop draws each offset uniformly from 0 .. 2 * padding, rows and columns apart;
    # 1/9 of 2304 is 256, and a binomial count strays past +-80 with odds below 1e-6
    for offsets in (oy, ox):
        counts = np.bincount(offsets, minlength=2 * PAD + 1)
        assert len(counts) == 2 * PAD + 1 and (abs(counts - N / 9) < 80).all(), counts.tolist()
    assert abs(flip.mean() - 0.5) < 0.05  # 0.05 is 4.8 standard deviations


def test_without_a_generator_a_batch_is_only_normalised():
    data = cifar_like(8)
    x, _ = data.batch(torch.arange(8))
    for i in range(8):
        np.testing.assert_allclose(
            x[i].numpy(), expected_image(data.x[i].numpy(), PAD, PAD, False), rtol=0, atol=2e-6
        )


class Recording:
    """DeviceImages that remembers every batch it served: (index, generator, augmented?)."""

    def __init__(self, images: DeviceImages):
        self.images, self.calls = images, []

    def batch(self, index, augment=None, part=None):
        x, y = self.images.batch(index, augment, part)
        plain, _ = self.images.batch(index if part is None else index[part])
        self.calls.append((index.clone(), augment, not torch.equal(x, plain)))
        return x, y


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny supernet: a second thread only adds contention
    yield
    torch.set_num_threads(threads)


def test_the_search_augments_weight_and_architecture_batches_from_its_stream(one_thread):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke", sets=["batch_size=4", "threads=1"])
    stage = Stage(
        cfg, StagePlan(0, cfg.cells[0], 8, 0.0, False), initial_switches(cfg), 4, torch.device("cpu")
    )
    images = Recording(cifar_like(16, size=cfg.image_size, seed=1, classes=4))
    train_idx, valid_idx = torch.arange(8), torch.arange(8, 16)
    stage.train_epoch(cfg.warmup_epochs, images, train_idx, valid_idx, SearchHooks())  # a searching epoch
    kinds = [("train" if set(i.tolist()) <= set(range(8)) else "valid") for i, _, _ in images.calls]
    # per step the train batch is drawn, then the valid batch its architecture step runs on first
    assert kinds == ["train", "valid"] * 2
    assert all(g is stage.data_gen for _, g, _ in images.calls)
    assert all(changed for _, _, changed in images.calls)  # 4 images each: a no-op draw would be rare
    images.calls.clear()
    stage.validate(images, valid_idx)
    assert images.calls and all(g is None and not changed for _, g, changed in images.calls)
