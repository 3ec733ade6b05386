"""The progressive search end to end on the smoke preset: files, determinism,
kill-and-resume equality, checkpoint fallback, divergence."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers.cli import run_cli

from pdarts_ray.core.checkpoint import CheckpointDir, read_jsonl
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.errors import SearchDiverged
from pdarts_ray.core.search import ProgressiveSearch, initial_switches, resume_search, run_search
from pdarts_ray.core.space import Genotype

SMOKE = resolve(SearchConfig, SEARCH_PRESETS, "smoke")
METRIC_KEYS = {
    "stage",
    "epoch",
    "train_loss",
    "train_acc",
    "valid_acc",
    "skip_dropout",
    "lr",
    "epoch_seconds",
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = run_search(SMOKE, run_dir)
    return run_dir, result


def _load(run_dir, name):
    return json.loads((run_dir / name).read_text())


def test_smoke_search_writes_its_run_folder(smoke_run):
    run_dir, result = smoke_run
    config = _load(run_dir, "config.json")
    assert config["cells"] == SMOKE.cells and config["threads"] == 1
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [(m["stage"], m["epoch"]) for m in metrics] == [(s, e) for s in (1, 2, 3) for e in range(3)]
    for m in metrics:
        assert METRIC_KEYS <= set(m)
        assert 0 <= m["train_acc"] <= 1 and 0 <= m["valid_acc"] <= 1 and m["train_loss"] > 0
    assert [m["skip_dropout"] for m in metrics if m["stage"] == 3][1] == pytest.approx(
        0.7
    )  # back to r after warm-up
    genotypes = _load(run_dir, "genotypes.json")
    assert set(genotypes) == {"stage1", "stage2", "stage3", "final_by_M"}
    assert set(genotypes["final_by_M"]) == {str(m) for m in range(9)}
    for g in [genotypes[f"stage{s}"] for s in (1, 2, 3)] + list(genotypes["final_by_M"].values()):
        Genotype.from_dict(g)
    assert _load(run_dir, "genotype.json") == genotypes["final_by_M"]["2"] == result["genotype"]
    assert Genotype.from_dict(result["genotype"]).skip_count() <= 2
    alphas = _load(run_dir, "alphas.json")
    assert [sum(alphas[f"stage{s}"]["normal"]["switches"][0]) for s in (1, 2, 3)] == [8, 5, 3]
    assert len(alphas["stage3"]["normal"]["alphas"][0]) == 3
    assert len(result["peak_memory_bytes"]) == 3 and all(p > 0 for p in result["peak_memory_bytes"])
    assert len(result["stage_seconds"]) == 3
    assert result["versions"]["torch"] == torch.__version__
    assert 0 <= result["skip_connects_before_refinement"] <= 8
    trajectory = read_jsonl(run_dir / "alpha_trajectory.jsonl")
    assert len(trajectory) == 9 and len(trajectory[0]["normal"]) == 14


def test_stage_masks_follow_pruning(smoke_run):
    run_dir, _ = smoke_run
    from pdarts_ray.core.space import CellState, prune_switches

    alphas = _load(run_dir, "alphas.json")
    for s in (1, 2):
        for cell in ("normal", "reduce"):
            state = CellState.from_dict(alphas[f"stage{s}"][cell], cell)
            drop = SMOKE.ops_kept[s - 1] - SMOKE.ops_kept[s]
            assert (
                prune_switches(state.switches, state.alphas, drop, False)
                == alphas[f"stage{s + 1}"][cell]["switches"]
            )


@pytest.mark.slow
def test_same_seed_same_search(smoke_run, tmp_path):
    run_dir, _ = smoke_run
    again = tmp_path / "again"
    run_search(SMOKE, again)
    assert _load(again, "genotypes.json") == _load(run_dir, "genotypes.json")
    assert _load(again, "alphas.json") == _load(run_dir, "alphas.json")
    losses = lambda d: [m["train_loss"] for m in read_jsonl(d / "metrics.jsonl")]  # noqa: E731
    assert losses(again) == losses(run_dir)


@pytest.mark.slow
def test_validation_cadence_changes_what_is_reported_not_what_is_searched(smoke_run, tmp_path):
    """Validation draws no random numbers and changes no state, so the official cadence (the
    last epochs of each stage) gives the very search validating every epoch gives; which is
    why the cadence is not part of a stored search's identity (config.REPORTING_KEYS)."""
    from pdarts_ray.core.config import identity, replace, to_dict
    from pdarts_ray.core.search import validates

    run_dir, _ = smoke_run
    official = replace(SMOKE, valid_last_epochs=1)  # smoke stages have 3 epochs: validate the last only
    assert [validates(official, e) for e in range(3)] == [False, False, True]
    run_search(official, tmp_path / "official")
    rows = read_jsonl(tmp_path / "official" / "metrics.jsonl")
    assert [r["valid_acc"] is not None for r in rows] == [False, False, True] * 3
    assert _load(tmp_path / "official", "alphas.json") == _load(run_dir, "alphas.json")
    assert [r["train_loss"] for r in rows] == [m["train_loss"] for m in read_jsonl(run_dir / "metrics.jsonl")]
    assert identity(to_dict(official)) == identity(to_dict(SMOKE))


def test_the_result_says_which_step_ran(smoke_run):
    _, result = smoke_run
    assert result["step_path"] == {
        "kernels": "lean",
        "dtype": "float32",
        "compiled": False,
        "channels_last": True,
    }


def test_paper_presets_validate_as_the_official_code():
    """The official train_search.py validates when `epochs - epoch < 5`: epochs 21..24 of 25."""
    from pdarts_ray.core.search import validates

    for preset in ("paper-c10", "paper-c100"):
        cfg = resolve(SearchConfig, SEARCH_PRESETS, preset)
        assert [e for e in range(cfg.epochs) if validates(cfg, e)] == [21, 22, 23, 24]


def _wait_for(path, predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate(read_jsonl(path)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_sigkill_mid_stage_two_then_resume_is_bit_identical(smoke_run, tmp_path):
    reference_dir, _ = smoke_run
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdarts_ray.cli",
            "search",
            "--preset",
            "smoke",
            "--out",
            str(run_dir),
            "--quiet",
        ],
        env={**os.environ},
    )
    try:
        assert _wait_for(run_dir / "metrics.jsonl", lambda rows: any(r["stage"] == 2 for r in rows), proc), (
            "the search finished or failed before stage 2 began"
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "result.json").exists()
    code, stdout, stderr = run_cli("search", "--resume", run_dir, "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["genotype"] == _load(reference_dir, "genotype.json")
    assert _load(run_dir, "genotypes.json") == _load(reference_dir, "genotypes.json")
    assert _load(run_dir, "alphas.json") == _load(reference_dir, "alphas.json")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [(m["stage"], m["epoch"]) for m in rows] == [(s, e) for s in (1, 2, 3) for e in range(3)]
    reference = read_jsonl(reference_dir / "metrics.jsonl")
    assert [m["train_loss"] for m in rows] == [m["train_loss"] for m in reference]


@pytest.mark.slow
def test_corrupt_newest_checkpoint_falls_back(smoke_run, tmp_path, capsys):
    reference_dir, _ = smoke_run
    run_dir = tmp_path / "run"

    class StopAfter(Exception):
        pass

    from pdarts_ray.core.search import SearchHooks

    class Stop(SearchHooks):
        def on_epoch_end(self, metrics, checkpoint):
            if (metrics["stage"], metrics["epoch"]) == (2, 1):
                raise StopAfter

    with pytest.raises(StopAfter):
        run_search(SMOKE, run_dir, Stop())
    newest = CheckpointDir(run_dir / "checkpoints").latest_path()
    newest.write_bytes(newest.read_bytes()[:100])  # torn file
    resume_search(run_dir)
    assert "unreadable" in capsys.readouterr().err
    assert _load(run_dir, "genotypes.json") == _load(reference_dir, "genotypes.json")
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [(m["stage"], m["epoch"]) for m in rows] == [(s, e) for s in (1, 2, 3) for e in range(3)]


def test_resume_errors(tmp_path, smoke_run):
    run_dir, _ = smoke_run
    code, _, stderr = run_cli("search", "--resume", run_dir, "--seed", "3")
    assert code == 2 and "--seed" in stderr and stderr.count("\n") == 1
    code, _, stderr = run_cli("search", "--resume", run_dir)
    assert code == 2 and "already finished" in stderr
    code, _, stderr = run_cli("search", "--resume", tmp_path / "nothing")
    assert code == 2 and "not a search run folder" in stderr


@pytest.mark.slow
def test_a_search_stopped_before_its_first_checkpoint_resumes_from_the_start(tmp_path, smoke_run):
    run_dir, _ = smoke_run
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "config.json").write_text((run_dir / "config.json").read_text())
    (fresh / "metrics.jsonl").write_text(json.dumps({"stage": 1, "epoch": 0, "partial": True}) + "\n")
    resume_search(fresh)
    assert _load(fresh, "genotypes.json") == _load(run_dir, "genotypes.json")
    losses = lambda d: [(m["stage"], m["epoch"], m["train_loss"]) for m in read_jsonl(d / "metrics.jsonl")]  # noqa: E731
    assert losses(fresh) == losses(run_dir)


def test_diverging_search_reports_why(tmp_path):
    cfg = resolve(
        SearchConfig, SEARCH_PRESETS, "smoke", None, ["lr=1e30", "grad_clip=1e30", "warmup_epochs=0"]
    )
    with pytest.raises(SearchDiverged, match="stage 1, epoch 0"):
        run_search(cfg, tmp_path / "run")


def test_random_initial_op_space_when_stage_one_keeps_fewer_ops():
    cfg = resolve(
        SearchConfig, SEARCH_PRESETS, "smoke", None, ["ops_kept=[3]", "cells=[5]", "skip_dropout=[0.7]"]
    )
    sw = initial_switches(cfg)
    assert all(sum(row) == 3 for row in sw["normal"] + sw["reduce"])
    assert len({tuple(r) for r in sw["normal"]}) > 1  # sampled per edge
    assert initial_switches(cfg) == sw  # seeded
    other = resolve(
        SearchConfig,
        SEARCH_PRESETS,
        "smoke",
        None,
        ["ops_kept=[3]", "cells=[5]", "skip_dropout=[0.7]", "space_seed=99"],
    )
    assert initial_switches(other) != sw


@pytest.mark.slow
def test_resume_from_a_checkpoint_held_elsewhere(smoke_run, tmp_path):
    """A checkpoint restored on another node continues in a fresh run folder."""
    reference_dir, _ = smoke_run

    class StopAfter(Exception):
        pass

    from pdarts_ray.core.search import SearchHooks

    class Stop(SearchHooks):
        def on_epoch_end(self, metrics, checkpoint):
            if (metrics["stage"], metrics["epoch"]) == (2, 0):
                raise StopAfter

    with pytest.raises(StopAfter):
        run_search(SMOKE, tmp_path / "first", Stop())
    state = CheckpointDir(tmp_path / "first" / "checkpoints").load()
    elsewhere = ProgressiveSearch.create(SMOKE, tmp_path / "second")
    result = elsewhere.run(checkpoint=state)
    assert result["genotype"] == _load(reference_dir, "genotype.json")
    assert [(m["stage"], m["epoch"]) for m in read_jsonl(tmp_path / "second" / "metrics.jsonl")] == [
        (s, e) for s in (2, 3) for e in range(3) if (s, e) != (2, 0)
    ]


def test_a_finished_searchs_last_checkpoint_resumes_to_its_result(smoke_run, tmp_path, capsys):
    """A search stopped after its last checkpoint was written and before its result: as a
    trial (a job stopped at that moment, restored from the checkpoint Ray Train kept) and as
    a run folder resumed. The last stage is done, no switches are left to prune, and the
    search only ends."""
    reference_dir, reference = smoke_run
    for how in ("restored", "resumed"):
        run_dir = tmp_path / how
        shutil.copytree(reference_dir, run_dir)
        for name in ("result.json", "genotype.json", "genotypes.json"):
            (run_dir / name).unlink()
        opened = ProgressiveSearch.open(run_dir)
        if how == "restored":
            state = CheckpointDir(run_dir / "checkpoints").load()
            assert state["stage_done"] and state["stage"] == 2 and state["switches"] is None
            result = opened.run(checkpoint=state)
        else:
            result = opened.run(resume=True)
            assert "unreadable" not in capsys.readouterr().err  # taken whole, no fallback
        assert result["genotype"] == reference["genotype"]
        assert read_jsonl(run_dir / "metrics.jsonl") == read_jsonl(reference_dir / "metrics.jsonl")
