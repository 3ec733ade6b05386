"""Config resolution and validation: presets, files, --set, one-line errors naming the key."""

import json

import pytest
from helpers.cli import run_cli

from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, from_dict, parse_set, resolve, to_dict
from pdarts_ray.core.errors import UserError


def test_paper_presets_match_the_paper():
    c10 = resolve(SearchConfig, SEARCH_PRESETS, "paper-c10")
    assert (c10.cells, c10.ops_kept, c10.skip_dropout) == ([5, 11, 17], [8, 5, 3], [0.0, 0.4, 0.7])
    assert (c10.skip_connects, c10.batch_size, c10.channels, c10.epochs, c10.warmup_epochs) == (
        2,
        96,
        16,
        25,
        10,
    )
    assert (c10.lr, c10.arch_lr, c10.arch_weight_decay, c10.weight_decay) == (0.025, 6e-4, 1e-3, 3e-4)
    c100 = resolve(SearchConfig, SEARCH_PRESETS, "paper-c100")
    assert c100.skip_dropout == [0.1, 0.2, 0.3] and c100.dataset == "cifar100"


@pytest.mark.parametrize("name", list(SEARCH_PRESETS))
def test_every_preset_validates_and_round_trips(name):
    cfg = resolve(SearchConfig, SEARCH_PRESETS, name)
    assert from_dict(SearchConfig, json.loads(json.dumps(to_dict(cfg))), "x") == cfg


def test_layers_override_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nseed: 5\nskip_dropout: [0, 0.3, 0.6]\n")
    cfg = resolve(
        SearchConfig, SEARCH_PRESETS, "tiny", str(f), ["seed=9"], {"device": "cpu", "dataset": None}
    )
    assert (cfg.epochs, cfg.seed, cfg.device) == (7, 9, "cpu")
    assert cfg.skip_dropout == [0.0, 0.3, 0.6] and all(isinstance(r, float) for r in cfg.skip_dropout)


def test_set_values_are_yaml():
    assert parse_set(["cells=[5, 11, 17]", "device=cuda:1", "download=true"]) == {
        "cells": [5, 11, 17],
        "device": "cuda:1",
        "download": True,
    }


def test_on_off_settings_survive_yaml():
    assert resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, ["channels_last=on"]).channels_last == "on"
    assert resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, ["channels_last=off"]).channels_last == "off"


def test_floats_written_without_a_dot_are_floats():
    cfg = resolve(
        SearchConfig,
        SEARCH_PRESETS,
        "tiny",
        None,
        ["lr=1e-3", "arch_lr=6e-4", "skip_dropout=[0, 1e-1, 3e-1]"],
    )
    assert (cfg.lr, cfg.arch_lr, cfg.skip_dropout) == (1e-3, 6e-4, [0.0, 0.1, 0.3])


@pytest.mark.parametrize(
    "sets, key",
    [
        (["foo=1"], "foo"),
        (["cells=[5, 11]"], "ops_kept"),
        (["ops_kept=[8, 9, 3]"], "ops_kept"),
        (["ops_kept=[5, 8, 3]"], "ops_kept"),
        (["ops_kept=[8, 5, 1]"], "ops_kept"),
        (["skip_dropout=[0, 0.4, 1.0]"], "skip_dropout"),
        (["skip_connects=9"], "skip_connects"),
        (["warmup_epochs=6"], "warmup_epochs"),
        (["epochs=0"], "epochs"),
        (["batch_size=0"], "batch_size"),
        (["channels=0"], "channels"),
        (["channels=7"], "channels"),
        (["cells=abc"], "cells"),
        (["cells=[5, 2, 17]"], "cells"),
        (["device=gpu"], "device"),
        (["dataset=mnist"], "dataset"),
        (["seed=-1"], "seed"),
        (["lr=fast"], "lr"),
        (["lr=.nan"], "lr"),
        (["arch_lr=inf"], "arch_lr"),
        (["train_portion=1.0"], "train_portion"),
        (["threads=-2"], "threads"),
        (["download=maybe"], "download"),
    ],
)
def test_bad_values_name_their_key(sets, key):
    with pytest.raises(UserError) as err:
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, sets)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_bad_config_files(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("cells: [5, 11\n")
    with pytest.raises(UserError, match="not valid YAML"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", str(bad_yaml))
    listing = tmp_path / "list.json"
    listing.write_text("[1, 2]")
    with pytest.raises(UserError, match="mapping"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", str(listing))
    with pytest.raises(UserError, match="cannot read"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", str(tmp_path / "missing.yaml"))
    with pytest.raises(UserError, match="unknown preset"):
        resolve(SearchConfig, SEARCH_PRESETS, "paper-c11")


def test_a_mistyped_key_value_or_preset_names_the_closest(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("warmup_epoch: 2\n")
    with pytest.raises(
        UserError, match=r"^.*c\.yaml: unknown key 'warmup_epoch' \(did you mean 'warmup_epochs'\?\)$"
    ):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", str(f))
    with pytest.raises(UserError, match=r"^--set: unknown key 'chanels' \(did you mean 'channels'\?\)$"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, ["chanels=8"])
    with pytest.raises(UserError, match=r"^--set: unknown key 'colour'$"):  # nothing close: no guess
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, ["colour=1"])
    with pytest.raises(
        UserError, match=r"^unknown preset 'smoek' \(did you mean 'smoke'\?\) \(choose from paper-c10,"
    ):
        resolve(SearchConfig, SEARCH_PRESETS, "smoek")
    with pytest.raises(UserError, match=r"^config: dataset: .*, got 'cifar' \(did you mean 'cifar10'\?\)$"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", None, ["dataset=cifar"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--set", "ops_kept=[8,9,3]"], "ops_kept"),
        (["--set", "cells=[5,11]"], "cells has 2"),
        (["--preset", "nope"], "unknown preset"),
        (["--seed", "x"], "invalid int value"),
        (["--device", "tpu"], "device"),
        (["--dataset", "cifar10", "--data-root", "{tmp}/nodata"], "data_batch_1"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    out = tmp_path / "run"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, stdout, stderr = run_cli("search", *args, "--out", out)
    assert code == 2
    assert stderr.count("\n") == 1 and fragment in stderr, stderr
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists()


def test_cli_refuses_a_non_empty_out_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("precious")
    code, _, stderr = run_cli("search", "--preset", "smoke", "--out", tmp_path)
    assert code == 2 and "not empty" in stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_dry_run_prints_the_resolved_config(tmp_path):
    code, stdout, _ = run_cli(
        "search", "--preset", "paper-c10", "--seed", "7", "--dry-run", "--json", "--out", tmp_path / "x"
    )
    assert code == 0
    cfg = json.loads(stdout)
    assert cfg["seed"] == 7 and cfg["cells"] == [5, 11, 17] and cfg["dataset"] == "cifar10"
    assert not (tmp_path / "x").exists()


def test_lr_step_offset_takes_zero_or_one():
    from pdarts_ray.core.config import SEARCH_PRESETS, resolve

    assert resolve(SearchConfig, SEARCH_PRESETS, "tiny", sets=["lr_step_offset=0"]).lr_step_offset == 0
    with pytest.raises(UserError, match="lr_step_offset: must be one of 0, 1, got 2"):
        resolve(SearchConfig, SEARCH_PRESETS, "tiny", sets=["lr_step_offset=2"])


def test_a_key_added_later_keeps_stored_searches_identical_at_its_default():
    from pdarts_ray.core.config import IDENTITY_NEUTRAL, identity, to_dict

    new = to_dict(SearchConfig().validate())
    stored_before_the_key = {k: v for k, v in new.items() if k not in IDENTITY_NEUTRAL}
    read_from_an_old_file = {**stored_before_the_key, **{k: None for k in IDENTITY_NEUTRAL}}
    assert identity(new) == identity(stored_before_the_key) == identity(read_from_an_old_file)
    assert identity({**new, "lr_step_offset": 0}) != identity(new)
