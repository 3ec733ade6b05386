"""Retraining a genotype in one process: config and presets, schedules against the design
fixtures, cutout and batch sharding, the run folder, determinism, resume, test-only,
ImageNet-style folders, and bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli import run_cli
from helpers.paths import FIXTURES
from PIL import Image

from pdarts_ray.core.checkpoint import read_jsonl
from pdarts_ray.core.config import resolve
from pdarts_ray.core.data import cutout
from pdarts_ray.core.errors import UserError
from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig
from pdarts_ray.evaluation.data import epoch_batches
from pdarts_ray.evaluation.genotypes import DARTS_V2, PDARTS
from pdarts_ray.evaluation.retrain import (
    EvalHooks,
    drop_path_at,
    lr_at,
    resume_evaluation,
    run_evaluation,
    score_weights,
)

SMOKE = resolve(EvalConfig, EVAL_PRESETS, "eval-smoke")
METRIC_KEYS = {"epoch", "train_loss", "train_acc", "test_acc", "lr", "drop_path", "epoch_seconds"}


def _cfg(preset="eval-smoke", *sets):
    return resolve(EvalConfig, EVAL_PRESETS, preset, None, list(sets))


# ---------------------------------------------------------------- config and schedules


def test_presets_hold_the_paper_recipes():
    c10, c100 = _cfg("eval-c10"), _cfg("eval-c100")
    assert (c10.dataset, c10.network, c10.channels, c10.layers, c10.epochs, c10.batch_size) == (
        "cifar10",
        "cifar",
        36,
        20,
        600,
        128,
    )
    assert (
        c10.lr,
        c10.lr_schedule,
        c10.momentum,
        c10.weight_decay,
        c10.cutout,
        c10.drop_path,
        c10.auxiliary_weight,
        c10.grad_clip,
    ) == (0.025, "cosine", 0.9, 3e-4, 16, 0.3, 0.4, 5.0)
    assert c100.dataset == "cifar100" and c100.weight_decay == 5e-4
    imagenet, reference = _cfg("eval-imagenet"), _cfg("eval-imagenet-256")
    assert (imagenet.network, imagenet.channels, imagenet.layers, imagenet.image_size) == (
        "imagenet",
        48,
        14,
        224,
    )
    assert (
        imagenet.batch_size,
        imagenet.lr,
        imagenet.warmup_epochs,
        imagenet.lr_schedule,
        imagenet.label_smoothing,
        imagenet.weight_decay,
    ) == (1024, 0.5, 5, "linear", 0.1, 3e-5)
    assert (reference.batch_size, reference.lr, reference.warmup_epochs) == (256, 0.1, 0)
    tiny = _cfg("eval-tiny")
    assert tiny.dataset == "digits" and tiny.workers == 1


@pytest.mark.parametrize(
    "sets, fragment",
    [
        (["channels=0"], "config: channels: must be at least 1"),
        (["network=imagenet", "channels=5", "auxiliary_weight=0"], "config: channels: must be even"),
        (["image_size=16"], "config: auxiliary_weight: the auxiliary head needs at least 8x8"),
        (["workers=3"], "config: batch_size: must be divisible by workers (3)"),
        (["drop_path=1.0"], "config: drop_path: must be in [0, 1)"),
        (["lr_schedule=step"], "config: lr_schedule: must be one of cosine, linear"),
        (["dataset=mnist"], "config: dataset: must be one of"),
        (["layers=2"], "config: layers: must be at least 3"),
        (["epochs=ten"], "config: epochs: must be an integer"),
        (["warmup_epochs=9"], "config: warmup_epochs: must not exceed epochs"),
        (["colour=1"], "--set: unknown key 'colour'"),
    ],
)
def test_bad_config_values_name_the_key(sets, fragment):
    with pytest.raises(UserError) as err:
        _cfg("eval-smoke", *sets)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_image_size_leaves_room_for_the_auxiliary_head():
    assert _cfg("eval-smoke", "image_size=29").image_size == 29  # 29 -> 15 -> 8
    assert _cfg("eval-smoke", "image_size=16", "auxiliary_weight=0").auxiliary_weight == 0


def test_cifar_lr_schedule_matches_the_fixture():
    expected = json.loads((FIXTURES / "schedules.json").read_text())["cifar_eval_lr_first3_last3"]
    cfg = _cfg("eval-c10")
    got = [lr_at(cfg, e) for e in (0, 1, 2, 597, 598, 599)]
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_imagenet_lr_schedule_matches_the_fixture():
    expected = json.loads((FIXTURES / "schedules.json").read_text())["imagenet_lr_paper_setting_first6_last6"]
    cfg = _cfg("eval-imagenet")
    got = [lr_at(cfg, e) for e in list(range(6)) + list(range(244, 250))]
    assert got == pytest.approx(expected, abs=6e-7)  # the fixture is rounded to 6 decimals
    reference = _cfg("eval-imagenet-256")
    assert lr_at(reference, 0) == pytest.approx(0.1)  # no warm-up at batch 256
    assert lr_at(_cfg("eval-smoke", "lr_schedule=linear", "epochs=4"), 3) == pytest.approx(0.1 / 4)


def test_drop_path_ramps_linearly():
    cfg = _cfg("eval-c10")
    assert [drop_path_at(cfg, e) for e in (0, 300, 599)] == pytest.approx([0.0, 0.15, 0.3 * 599 / 600])


# ---------------------------------------------------------------- augmentation and sharding


def test_cutout_zeroes_one_square_clipped_at_the_border():
    g = torch.Generator().manual_seed(0)
    x = torch.ones(500, 3, 32, 32)
    out = cutout(x, 16, g)
    zeros = (out == 0).all(1)  # N,H,W: all channels zeroed together
    assert torch.equal((out == 0).any(1), zeros)
    areas = zeros.flatten(1).sum(1)
    assert areas.max() == 256 and areas.min() >= 64  # a centre in a corner keeps a quarter
    rows, cols = zeros.any(2), zeros.any(1)
    assert torch.equal(areas, rows.sum(1) * cols.sum(1))  # one axis-aligned rectangle
    assert torch.equal(cutout(x, 16, torch.Generator().manual_seed(0)), out)


def test_epoch_batches_shard_every_global_batch():
    whole = epoch_batches(50, 16, seed=3, epoch=2, rank=0, world=1)
    assert [len(b) for b in whole] == [16, 16, 16, 2]
    assert sorted(torch.cat(whole).tolist()) == list(range(50))
    shards = [epoch_batches(50, 16, 3, 2, rank, 2) for rank in (0, 1)]
    assert [len(b) for b in shards[0]] == [8, 8, 8]  # a last batch of 2 cannot give two workers two images
    for k in range(3):  # rank r takes items r, r + 2, ... of the same global batch
        assert torch.equal(torch.stack([shards[0][k], shards[1][k]], 1).flatten(), whole[k])
    assert [len(b) for b in epoch_batches(49, 16, 3, 2, 0, 1)] == [16, 16, 16]  # a last batch of 1 is dropped
    assert not torch.equal(whole[0], epoch_batches(50, 16, 3, 3, 0, 1)[0])  # a new order every epoch


# ---------------------------------------------------------------- a run end to end


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    result = run_evaluation(SMOKE, PDARTS, run_dir, name="PDARTS")
    return run_dir, result


def _load(run_dir, name):
    return json.loads((run_dir / name).read_text())


def test_smoke_run_writes_its_run_folder(smoke_run):
    run_dir, result = smoke_run
    config = _load(run_dir, "config.json")
    assert config["channels"] == SMOKE.channels and config["threads"] == 1
    assert _load(run_dir, "genotype.json") == {"name": "PDARTS", **PDARTS.to_dict()}
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["epoch"] for m in metrics] == list(range(SMOKE.epochs))
    for m in metrics:
        assert METRIC_KEYS <= set(m)
        assert 0 <= m["train_acc"] <= 1 and 0 <= m["test_acc"] <= 1 and m["train_loss"] > 0
        assert m["lr"] == lr_at(SMOKE, m["epoch"]) and m["drop_path"] == drop_path_at(SMOKE, m["epoch"])
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert result == _load(run_dir, "result.json")
    assert result["top1"] == metrics[-1]["test_acc"] and result["top5"] == metrics[-1]["test_top5"]
    assert result["error_pct"] == pytest.approx(100 * (1 - result["top1"]))
    assert result["top5"] == 1.0  # 4 classes: top-5 counts every class
    from pdarts_ray.evaluation.counting import network_cost

    assert {k: result[k] for k in ("params", "params_with_aux", "macs")} == network_cost(
        PDARTS, "cifar", SMOKE.channels, SMOKE.layers, SMOKE.synthetic_classes, 32
    )
    assert result["seconds"] > 0 and result["genotype"] == PDARTS.to_dict() and result["workers"] == 1
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["ckpt-000002.pt", "ckpt-000003.pt"]
    weights = torch.load(run_dir / "weights.pt", weights_only=True)
    assert "classifier.weight" in weights and any(k.startswith("auxiliary_head.") for k in weights)


def test_same_seed_same_losses(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    run_evaluation(SMOKE, PDARTS, tmp_path / "again")
    losses = lambda d: [m["train_loss"] for m in read_jsonl(d / "metrics.jsonl")]  # noqa: E731
    assert losses(tmp_path / "again") == losses(run_dir)
    run_evaluation(_cfg("eval-smoke", "seed=1"), PDARTS, tmp_path / "other")
    assert losses(tmp_path / "other") != losses(run_dir)


class StopAfterEpoch(EvalHooks):
    class Stop(Exception):
        pass

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, metrics, checkpoint):
        if metrics["epoch"] == self.epoch:
            raise self.Stop


def test_resume_continues_exactly(smoke_run, tmp_path):
    reference_dir, reference = smoke_run
    run_dir = tmp_path / "run"
    with pytest.raises(StopAfterEpoch.Stop):
        run_evaluation(SMOKE, PDARTS, run_dir, StopAfterEpoch(0), name="PDARTS")
    assert not (run_dir / "result.json").exists()
    # a line written after the last checkpoint (a run killed between the two) is dropped
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 1, "train_loss": 99.0}) + "\n")
    result = resume_evaluation(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    expected = read_jsonl(reference_dir / "metrics.jsonl")
    assert [m["epoch"] for m in rows] == list(range(SMOKE.epochs))
    assert [m["train_loss"] for m in rows] == [m["train_loss"] for m in expected]
    assert [m["test_acc"] for m in rows] == [m["test_acc"] for m in expected]
    assert result["top1"] == reference["top1"] and result["genotype_name"] == "PDARTS"


def test_resume_errors(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    with pytest.raises(UserError, match="already finished"):
        resume_evaluation(run_dir)
    with pytest.raises(UserError, match="not an evaluation run folder"):
        resume_evaluation(tmp_path)
    code, stdout, stderr = run_cli("evaluate", "--resume", run_dir, "--seed", "3")
    assert code == 2 and "--seed" in stderr and stderr.count("\n") == 1 and stdout == ""


def test_test_only_reproduces_the_final_accuracy(smoke_run):
    run_dir, result = smoke_run
    scored = score_weights(SMOKE, PDARTS, run_dir / "weights.pt")
    assert scored["top1"] == result["top1"] and scored["test_loss"] == pytest.approx(result["test_loss"])
    code, stdout, stderr = run_cli(
        "evaluate",
        "--genotype",
        "PDARTS",
        "--preset",
        "eval-smoke",
        "--weights",
        run_dir / "weights.pt",
        "--test-only",
        "--json",
    )
    assert code == 0, stderr
    assert json.loads(stdout)["top1"] == result["top1"]
    with pytest.raises(UserError, match="weights do not fit"):
        score_weights(SMOKE, DARTS_V2, run_dir / "weights.pt")


# ---------------------------------------------------------------- ImageNet-style folders


def _write_image_folder(root: Path, classes=3, per_class=(8, 3)):
    """Small coloured images of varying sizes: class c is mostly channel c."""
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "val"), per_class):
        for c in range(classes):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                h, w = rng.integers(40, 80, size=2)
                img = rng.integers(0, 60, size=(h, w, 3), dtype=np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(folder / f"{i}.png")
    return root


def test_imagenet_network_on_a_generated_image_folder(tmp_path):
    root = _write_image_folder(tmp_path / "imagenet")
    cfg = _cfg(
        "eval-imagenet",
        f"data_root={root}",
        "channels=4",
        "layers=3",
        "epochs=2",
        "batch_size=8",
        "loader_workers=0",
        "threads=1",
        "warmup_epochs=1",
    )
    assert cfg.image_size == 224 and cfg.auxiliary_weight == 0.4  # the ImageNet head at 7x7
    result = run_evaluation(cfg, PDARTS, tmp_path / "run")
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [m["epoch"] for m in rows] == [0, 1] and all(0 <= m["test_acc"] <= 1 for m in rows)
    assert rows[0]["lr"] == pytest.approx(cfg.lr * 1 / 1 * (2 - 0) / 2)  # warm-up 1 epoch, linear decay
    assert result["top5"] == 1.0  # 3 classes
    assert result["params"] == json.loads((tmp_path / "run" / "result.json").read_text())["params"]
    again = run_evaluation(cfg, PDARTS, tmp_path / "again")
    assert again["test_loss"] == result["test_loss"]  # transforms draw from the seeded streams


def test_image_folder_errors(tmp_path):
    (tmp_path / "only_train" / "train" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match="expected .*/train/<class>/<images> and .*/val/"):
        run_evaluation(_cfg("eval-imagenet", f"data_root={tmp_path / 'only_train'}"), PDARTS, tmp_path / "r1")
    root = _write_image_folder(tmp_path / "mismatch", classes=2)
    (root / "val" / "class_1").rename(root / "val" / "class_9")
    with pytest.raises(UserError, match="classes differ"):
        run_evaluation(_cfg("eval-imagenet", f"data_root={root}"), PDARTS, tmp_path / "r2")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


# ---------------------------------------------------------------- bad input on the command line


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--genotype", "NOT_A_CELL"], "unknown genotype 'NOT_A_CELL'"),
        (["--genotype", "BAD_FILE"], "invalid JSON"),
        (["--genotype", "PDARTS", "--set", "channels=0"], "config: channels: must be at least 1"),
        (["--genotype", "PDARTS", "--preset", "eval-c11"], "unknown preset 'eval-c11'"),
        (["--genotype", "PDARTS", "--test-only"], "--test-only and --weights go together"),
        (["--genotype", "PDARTS", "--workers", "0"], "config: workers: must be at least 1"),
        ([], "--genotype is required"),
    ],
)
def test_bad_evaluate_input_is_one_line_and_writes_nothing(tmp_path, args, fragment):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    args = [str(bad) if a == "BAD_FILE" else a for a in args]
    preset = [] if "--preset" in args else ["--preset", "eval-smoke"]
    out = tmp_path / "out"
    code, stdout, stderr = run_cli("evaluate", *args, *preset, "--out", out)
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1 and stdout == ""
    assert not out.exists()


def test_non_empty_out_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    code, _, stderr = run_cli(
        "evaluate", "--genotype", "PDARTS", "--preset", "eval-smoke", "--out", tmp_path / "out"
    )
    assert code == 2 and "not empty" in stderr
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


@pytest.mark.slow
def test_eval_tiny_learns_the_digits(tmp_path):
    # one thread: the preset's two wait on each other beside the other test worker (333 s in
    # the whole run; one thread alone takes 166 s)
    code, stdout, stderr = run_cli(
        "evaluate",
        "--genotype",
        "PDARTS",
        "--preset",
        "eval-tiny",
        "--set",
        "threads=1",
        "--out",
        tmp_path / "run",
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["top1"] > 0.8  # ten classes: chance is 0.1
    rows = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == EVAL_PRESETS["eval-tiny"]["epochs"] and "epoch 1/" in stderr
