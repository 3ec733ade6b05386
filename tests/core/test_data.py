"""Datasets: the bundled digits and synthetic data round-trip through torchvision's
CIFAR-10 reader; ImageFolder; missing data; on-device augmentation."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from pdarts_ray.core.bundled import CIFAR10_FOLDER, ensure_bundled, load_bundled, make_synthetic
from pdarts_ray.core.data import DeviceImages, load_dataset, random_crop_flip, shuffled_batches
from pdarts_ray.core.errors import UserError


def test_digits_round_trip_through_torchvision_cifar_reader(tmp_path):
    from sklearn.datasets import load_digits

    root = ensure_bundled("digits", tmp_path / "digits")
    folder = root / CIFAR10_FOLDER
    with open(folder / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="latin1")  # the layout of the real CIFAR-10 files
    assert entry["data"].dtype == np.uint8 and entry["data"].shape[1] == 3072
    train_data, train_targets, test_data, _, _ = load_bundled("digits", root)  # through torchvision's CIFAR10
    assert len(train_data) == 1498 and len(test_data) == 299
    assert train_data.shape == (1498, 32, 32, 3)
    digits = load_digits()
    expected_labels = digits.target[np.arange(1797) % 6 != 5]
    assert list(train_targets) == expected_labels.tolist()
    train = type("Loaded", (), {"data": train_data})
    # the brightest 8x8 source pixel stays the brightest region after upsampling
    first = train.data[0, :, :, 0].astype(float)
    src = digits.images[0]
    r, c = np.unravel_index(src.argmax(), src.shape)
    assert first[4 * r : 4 * r + 4, 4 * c : 4 * c + 4].mean() > first.mean()
    assert (train.data[..., 0] == train.data[..., 2]).all()  # grey in 3 channels
    data = load_dataset("digits", str(tmp_path / "digits"), image_size=32)
    assert data.num_classes == 10 and data.train_x.shape == (1498, 3, 32, 32)
    assert torch.equal(data.train_x, torch.from_numpy(train.data).permute(0, 3, 1, 2))


def test_digits_are_written_once(tmp_path):
    root = ensure_bundled("digits", tmp_path)
    stamp = (root / CIFAR10_FOLDER / "test_batch").stat().st_mtime_ns
    ensure_bundled("digits", tmp_path)
    load_dataset("digits", str(tmp_path))
    assert (root / CIFAR10_FOLDER / "test_batch").stat().st_mtime_ns == stamp


PAYLOAD = b"cos\nsystem\n(S'touch {marker}'\ntR."  # unpickling this runs a shell command


@pytest.mark.parametrize("dataset", ["digits", "synthetic"])
@pytest.mark.parametrize("planted", ["data_batch_1", "batches.meta"])
def test_a_planted_pickle_in_the_cache_is_never_unpickled(tmp_path, capsys, dataset, planted):
    marker = tmp_path / "pwned"
    cache = tmp_path / "cache"
    clean = load_bundled(dataset, cache, 120, 4)
    target = cache / CIFAR10_FOLDER / planted
    target.write_bytes(PAYLOAD.replace(b"{marker}", str(marker).encode()))
    proof = tmp_path / "proof"  # the payload is real: unpickled, it runs
    subprocess.run(
        [sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"],
        input=PAYLOAD.replace(b"{marker}", str(proof).encode()),
        check=True,
    )
    assert proof.exists()
    again = load_bundled(dataset, cache, 120, 4)
    assert not marker.exists()
    assert "rewritten" in capsys.readouterr().err
    assert all(np.array_equal(a, b) for a, b in zip(again[:4], clean[:4]))
    assert target.read_bytes() != PAYLOAD.replace(b"{marker}", str(marker).encode())


def test_a_cache_file_swapped_after_the_check_is_refused(tmp_path):
    from pdarts_ray.core.bundled import bundled_files, read_verified

    files = bundled_files("synthetic", 60, 3)
    root = ensure_bundled("synthetic", tmp_path, 60, 3)
    (root / CIFAR10_FOLDER / "test_batch").write_bytes(b"not the file")
    with pytest.raises(UserError, match="test_batch: does not match the synthetic data"):
        read_verified(root, files, "synthetic")


def test_synthetic_round_trip_and_is_learnable(tmp_path):
    train_x, train_y, *_ = load_bundled("synthetic", tmp_path / "syn", 300, 5)
    assert len(train_x) == 300 and set(train_y) == set(range(5))
    images, labels = make_synthetic(360, 5)
    assert np.array_equal(train_x, images[:300])  # the same generator, the same data
    # nearest class mean on raw pixels beats chance by far: the classes have structure
    x = images.reshape(len(images), -1).astype(float)
    means = np.stack([x[:300][labels[:300] == c].mean(0) for c in range(5)])
    pred = ((x[300:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == labels[300:]).mean() > 0.6


def test_imagefolder_any_size_resized(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                size = (int(rng.integers(10, 40)), int(rng.integers(10, 40)))
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(
                    tmp_path / split / cls / f"{i}.png"
                )
    data = load_dataset("imagefolder", str(tmp_path), image_size=16)
    assert data.train_x.shape == (12, 3, 16, 16) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (4, 3, 16, 16)
    assert data.num_classes == 2 and data.train_y.tolist() == [0] * 6 + [1] * 6


def test_imagefolder_without_train_folder(tmp_path):
    with pytest.raises(UserError, match="train not found"):
        load_dataset("imagefolder", str(tmp_path), image_size=16)


def test_missing_cifar_files_are_named(tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset("cifar10", str(tmp_path))
    assert "data_batch_1" in str(err.value) and "--download" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="cifar-100-python"):
        load_dataset("cifar100", str(tmp_path))


def test_cifar10_files_that_fail_checksums_are_an_error(tmp_path):
    # digits written in CIFAR-10 layout are not the real CIFAR-10: torchvision's checksums refuse them
    ensure_bundled("digits", tmp_path)
    with pytest.raises(UserError, match="corrupted"):
        load_dataset("cifar10", str(tmp_path))


def test_crop_flip_is_a_padded_crop_of_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6) + 1
    out = random_crop_flip(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        options = [padded[i, :, r : r + 6, c : c + 6] for r in range(5) for c in range(5)]
        options += [o.flip(-1) for o in options]
        assert any(torch.equal(out[i], o) for o in options)


def test_batches_are_normalised_and_deterministic():
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    data = DeviceImages(images, torch.arange(10), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "cpu")
    x, y = data.batch(torch.tensor([3, 1]))
    assert torch.allclose(x, (images[[3, 1]].float() / 255 - 0.5) / 0.25) and y.tolist() == [3, 1]
    a = data.batch(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(5))[0]
    b = data.batch(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(5))[0]
    assert torch.equal(a, b)


def test_shuffled_batches_cover_the_indices_once():
    idx = torch.arange(10, 35)
    batches = shuffled_batches(idx, 8, torch.Generator().manual_seed(1))
    assert [len(b) for b in batches] == [8, 8, 8, 1]
    assert sorted(torch.cat(batches).tolist()) == idx.tolist()
