"""Sweeps: definition parsing and validation, GPU shares (no Ray); then sweeps on a real
local Ray (the `smoke` preset): Optuna end to end, a grid with a diverging trial, ASHA,
and a sweep stopped by Ctrl-C (its driver exits 130 naming the resume) and resumed with
`pdarts-ray sweep --resume`."""

import json
import signal
import subprocess
import sys
import time

import pytest
from helpers.cli import main_output, run_cli
from helpers.paths import ROOT
from helpers.processes import kill_group

from pdarts_ray.core.errors import UserError
from pdarts_ray.distributed.definition import load_sweep, parse_gpus, parse_sweep, trial_config
from pdarts_ray.distributed.packing import resolve_gpus_per_trial, worst_case_config


def _sweep(**over):
    return parse_sweep({"base": {"preset": "smoke"}, **over})


# ---------------------------------------------------------------- definitions (no Ray)


def test_defaults_and_the_base_config():
    sweep = _sweep(base={"preset": "smoke", "config": {"epochs": 4}})
    assert (sweep.metric, sweep.mode, sweep.searcher, sweep.num_samples) == ("valid_acc", "max", "optuna", 1)
    assert sweep.gpus_per_trial == "auto" and sweep.scheduler is None and sweep.space == {}
    assert sweep.base_config().epochs == 4 and sweep.base_config().dataset == "synthetic"


def test_a_space_over_m_is_not_a_search_dimension():
    sweep = _sweep(
        searcher="grid",
        space={
            "skip_connects": {"grid": [4, 2, 3]},
            "skip_dropout": {"grid": [[0.0, 0.3, 0.6], [0.0, 0.4, 0.7]]},
        },
    )
    assert sweep.m_values == [2, 3, 4]
    assert list(sweep.space) == ["skip_dropout"]
    # Optuna takes M too: it never reaches the sampler
    assert _sweep(space={"skip_connects": {"choice": [0, 1]}}).space == {}


def test_every_kind_of_space_entry_is_accepted():
    sweep = _sweep(
        space={
            "lr": {"loguniform": [0.01, 0.1]},
            "momentum": {"uniform": [0.5, 0.9]},
            "seed": {"randint": [0, 10]},
            "ops_kept": {"choice": [[8, 5, 3], [8, 4, 2]]},
        }
    )
    assert sweep.space["seed"] == {"randint": [0, 10]}
    assert sweep.space["lr"] == {"loguniform": [0.01, 0.1]}


@pytest.mark.parametrize(
    "space, words",
    [
        ({"nope": {"choice": [1]}}, "space: nope: not a config key"),
        ({"skip_dropout": {"choice": [[0.0, 0.4]]}}, "space: skip_dropout: skip_dropout: has 2 entries"),
        ({"skip_dropout": {"choice": [[0.0, 0.4, 1.5]]}}, "space: skip_dropout: skip_dropout: stage 3 rate"),
        ({"ops_kept": {"grid": [[8, 5, 6]]}}, "space: ops_kept"),
        ({"lr": {"uniform": [0.1]}}, "space: lr: uniform: needs [low, high]"),
        ({"lr": {"loguniform": [0.0, 0.1]}}, "space: lr: loguniform: low must be positive"),
        ({"lr": {"uniform": [-1.0, 0.1]}}, "space: lr: lr: must not be negative"),
        ({"seed": {"uniform": [0, 3]}}, "space: seed: uniform: seed is not a number key"),
        ({"lr": {"randint": [0, 3]}}, "space: lr: randint: lr is not an integer key"),
        ({"cells": {"between": [1, 2]}}, "space: cells: must be one of"),
        ({"skip_connects": {"uniform": [0, 3]}}, "space: skip_connects"),
        ({"skip_connects": {"grid": [9]}}, "space: skip_connects: skip_connects: must be in 0..8"),
        (
            {"warmup_epochs": {"choice": [1, 2]}, "epochs": {"choice": [2, 3]}},
            "the point warmup_epochs=2, epochs=2",
        ),
    ],
)
def test_bad_space_values_fail_naming_the_key(space, words):
    with pytest.raises(UserError, match=None) as err:
        _sweep(searcher="grid", space=space)
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "over, words",
    [
        ({"searcher": "random"}, "searcher: must be one of optuna, grid"),
        ({"space": {"lr": {"grid": [0.1, 0.2]}}}, "grid needs `searcher: grid`"),
        ({"objective": {"metric": "accuracy"}}, "unknown metric 'accuracy'"),
        ({"objective": {"metric": "valid_acc", "mode": "up"}}, "mode: must be max or min"),
        ({"scheduler": {"type": "asha", "grace_period": 2}}, "grace_period: at least one stage (3 epochs)"),
        ({"scheduler": {"type": "hyperband"}}, "scheduler: must be {type: asha"),
        ({"scheduler": "asha", "objective": "best_valid_acc"}, "only reported at the end"),
        ({"num_samples": 0}, "num_samples: must be at least 1"),
        ({"gpus_per_trial": 2}, "gpus_per_trial: a search uses one GPU"),
        ({"gpus_per_trial": "many"}, "gpus_per_trial: must be a number or auto"),
        ({"base": {"preset": "huge"}}, "base.preset: unknown preset 'huge'"),
        ({"base": {"preset": "smoke", "config": {"cells": [3, 2, 4]}}}, "stage 2 needs at least 3 cells"),
        ({"colour": "blue"}, "unknown key 'colour'"),
        ({"name": "../x"}, "sweep: name"),
    ],
)
def test_bad_definitions_fail_in_one_line(over, words):
    with pytest.raises(UserError) as err:
        _sweep(**over)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_asha_defaults_to_one_stage_of_grace():
    sweep = _sweep(scheduler="asha")
    assert sweep.scheduler == {"type": "asha", "grace_period": 3, "reduction_factor": 3}


def test_trial_config_decodes_per_stage_lists_and_pins_threads():
    base = _sweep(base={"preset": "smoke", "config": {"threads": 0}}).base_config()
    from pdarts_ray.core.config import to_dict

    cfg = trial_config(to_dict(base), {"skip_dropout": "[0.0, 0.3, 0.6]", "lr": 0.05}, cpus_per_trial=2)
    assert cfg["skip_dropout"] == [0.0, 0.3, 0.6] and cfg["lr"] == 0.05 and cfg["threads"] == 2
    assert trial_config(to_dict(base), {}, 1)["threads"] == 1
    pinned = to_dict(_sweep().base_config())
    assert trial_config(pinned, {}, 4)["threads"] == pinned["threads"] == 1  # smoke pins its own


def test_gpu_shares():
    assert parse_gpus("0.25") == 0.25 and parse_gpus("auto") == "auto" and parse_gpus(0) == 0.0
    assert resolve_gpus_per_trial(0.5, "auto", cluster_gpus=0) == 0.5  # a number is kept
    assert resolve_gpus_per_trial("auto", "auto", cluster_gpus=0) == 0.0  # CPU cluster
    assert resolve_gpus_per_trial("auto", "cpu", cluster_gpus=8) == 0.0
    assert resolve_gpus_per_trial("auto", "auto", cluster_gpus=8) == 1.0  # no memory figures
    gib = 2**30
    # 80 GiB, a 5 GiB search (+ a 0.6 GiB CUDA context): 72 GiB usable fits 12 -> 1/12
    assert (
        resolve_gpus_per_trial("auto", "auto", 8, predicted_bytes=5 * gib, gpu_memory_bytes=80 * gib)
        == 1 / 12
    )
    assert (
        resolve_gpus_per_trial("auto", "auto", 8, predicted_bytes=100 * gib, gpu_memory_bytes=80 * gib) == 1.0
    )
    assert resolve_gpus_per_trial("auto", "auto", 8, predicted_bytes=1, gpu_memory_bytes=80 * gib) == 1 / 16


def test_auto_gpus_ask_the_memory_model_for_the_largest_config():
    from pdarts_ray.core.config import to_dict
    from pdarts_ray.distributed.packing import predicted_peak_bytes

    sweep = _sweep(space={"batch_size": {"choice": [16, 64]}, "cells": {"choice": [[3, 4, 5], [5, 4, 3]]}})
    worst = worst_case_config(to_dict(sweep.base_config()), sweep.space)
    assert worst.batch_size == 64 and worst.cells == [5, 4, 5]
    small = predicted_peak_bytes(sweep.base_config())
    assert predicted_peak_bytes(worst) > small > 0


def test_sweep_command_rejects_bad_input_before_starting_anything(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("base: {preset: smoke}\nspace:\n  skip_dropout: {choice: [[0.0, 0.5]]}\n")
    code, _, err = main_output("sweep", "--space", space, "--storage", tmp_path / "store")
    assert code == 2 and "space: skip_dropout" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "store").exists()
    good = tmp_path / "good.yaml"
    good.write_text("base: {preset: smoke}\n")
    code, _, err = main_output("sweep", "--space", good, "--storage", "relative/store")
    assert code == 2 and "relative path" in err
    code, _, err = main_output("sweep", "--resume", "nothing-here", "--storage", tmp_path / "store")
    assert code == 2 and "no such experiment" in err
    code, _, err = main_output("sweep", "--resume", "x", "--preset", "smoke")
    assert code == 2 and "cannot be combined with --preset" in err


# ---------------------------------------------------------------- on a local Ray


def _read(path):
    from pdarts_ray.results import read_epochs, read_trials

    return read_trials(str(path)).to_pylist(), read_epochs(str(path)).to_pylist()


def _epochs_of(epochs, trial_id):
    return sorted((e["stage"], e["epoch"]) for e in epochs if e["trial_id"] == trial_id)


ALL_EPOCHS = [(s, e) for s in (1, 2, 3) for e in range(3)]


@pytest.mark.slow
def test_optuna_sweep_end_to_end(local_ray, tmp_path):
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.results import expand_m

    sweep = _sweep(
        name="optuna",
        storage=str(tmp_path),
        num_samples=2,
        max_concurrent_trials=2,
        seed=3,
        space={
            "lr": {"loguniform": [0.02, 0.1]},
            "skip_dropout": {"choice": [[0.0, 0.0, 0.0], [0.0, 0.4, 0.7]]},
        },
    )
    out = run_sweep(sweep, verbose=0)
    trials, epochs = _read(tmp_path / "optuna")
    assert len(trials) == 2 and len({t["trial_id"] for t in trials}) == 2
    for t in trials:
        assert t["status"] == "finished" and t["failure"] is None
        assert 0.02 <= t["cfg_lr"] <= 0.1 and t["cfg_skip_dropout"] in ([0.0, 0.0, 0.0], [0.0, 0.4, 0.7])
        assert len(t["stage_genotypes"]) == 3 and len(json.loads(t["genotypes_by_m"])) == 9
        assert t["skip_connects_after_refinement"] <= 2 and t["best_valid_acc"] is not None
        assert t["started"] < t["finished"]
        assert _epochs_of(epochs, t["trial_id"]) == ALL_EPOCHS
    assert len(expand_m(trials, [0, 1])) == 4
    # Tune's view: the last report carries the result and the genotypes for every M
    from ray.tune import ExperimentAnalysis

    analysis = ExperimentAnalysis(str(tmp_path / "optuna"))
    for trial in analysis.trials:
        last = trial.last_result
        assert last["search_done"] == 1 and last["global_epoch"] == 8
        assert json.loads(last["genotype_m0"])["normal"] and json.loads(last["result_json"])["genotype"]
        assert json.loads(last["stage_genotype"]) == json.loads(last["genotype"])
    saved = json.loads((tmp_path / "optuna" / "sweep.json").read_text())
    assert saved["base_config"]["dataset"] == "synthetic" and saved["sweep"]["searcher"] == "optuna"
    assert out["name"] == "optuna" and len(out["trials"]) == 2
    assert any(p.name.startswith("searcher-state") for p in (tmp_path / "optuna").iterdir())


@pytest.mark.slow
def test_grid_sweep_with_m_values_and_a_diverging_trial(local_ray, tmp_path):
    from pdarts_ray.cli.sweep import trials_table
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.results import expand_m

    sweep = _sweep(
        name="grid",
        storage=str(tmp_path),
        searcher="grid",
        max_concurrent_trials=2,
        space={"lr": {"grid": [0.05, 1e30]}, "skip_connects": {"grid": [1, 3]}},
    )
    out = run_sweep(sweep, verbose=0)
    trials, epochs = _read(tmp_path / "grid")
    assert len(trials) == 2  # two values of M: no extra searches
    by_lr = {t["cfg_lr"]: t for t in trials}
    good, bad = by_lr[0.05], by_lr[1e30]
    assert good["status"] == "finished" and _epochs_of(epochs, good["trial_id"]) == ALL_EPOCHS
    assert bad["status"] == "failed" and bad["genotype"] is None
    assert bad["failure"] == "SearchDiverged: non-finite training loss in stage 1, epoch 0"
    assert _epochs_of(epochs, bad["trial_id"]) == []
    assert bad["finished"] < good["finished"]  # the good trial went on after the failure
    rows = expand_m(trials, out["m_values"])
    assert [r["M"] for r in rows] == [1, 3] and all(
        r["skip_connects_after_refinement"] <= r["M"] for r in rows
    )
    assert trials_table(out).row_count == 3  # the finished trial once per M, the failed one once


@pytest.mark.slow
def test_asha_stops_the_worse_trial_after_one_stage(local_ray, tmp_path):
    from pdarts_ray.distributed.sweep import run_sweep

    # objective `lr`: at the same epoch the smaller initial lr reports the smaller value, so the
    # second trial (run after the first) is below the rung's median when it reaches global epoch 3
    sweep = _sweep(
        name="asha",
        storage=str(tmp_path),
        searcher="grid",
        max_concurrent_trials=1,
        objective={"metric": "lr", "mode": "max"},
        scheduler={"type": "asha", "grace_period": 3, "reduction_factor": 2},
        space={"lr": {"grid": [0.1, 0.01]}},
    )
    run_sweep(sweep, verbose=0)
    trials, epochs = _read(tmp_path / "asha")
    by_lr = {t["cfg_lr"]: t for t in trials}
    assert by_lr[0.1]["status"] == "finished" and _epochs_of(epochs, by_lr[0.1]["trial_id"]) == ALL_EPOCHS
    stopped = by_lr[0.01]
    assert stopped["status"] == "failed" and "stopped early" in stopped["failure"]
    assert max(_epochs_of(epochs, stopped["trial_id"])) < (3, 0)  # stage 3 never ran


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_without_rerunning_finished_trials(local_ray, tmp_path):
    from ray.tune import ExperimentAnalysis

    from pdarts_ray.results import has_trial

    address = local_ray.get_runtime_context().gcs_address
    space = tmp_path / "space.yaml"
    space.write_text(
        "base: {preset: smoke}\nsearcher: grid\nmax_concurrent_trials: 1\nspace:\n  seed: {grid: [1, 2]}\n"
    )
    store = tmp_path / "store"
    cmd = [
        sys.executable,
        "-m",
        "pdarts_ray.cli",
        "sweep",
        "--space",
        str(space),
        "--storage",
        str(store),
        "--name",
        "cut",
        "--address",
        address,
        "--quiet",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    experiment = store / "cut"
    deadline = time.time() + 240
    first = None
    try:
        while time.time() < deadline and proc.poll() is None:
            trials = (
                list((experiment / "trials").glob("*.parquet")) if (experiment / "trials").is_dir() else []
            )
            if trials:
                first = trials[0].stem
                break
            time.sleep(0.2)
        assert first is not None, (
            f"no trial row before the deadline: {proc.stderr.read() if proc.poll() else ''}"
        )
        while time.time() < deadline and proc.poll() is None:  # Ctrl-C in the middle of the second trial
            parts = list((experiment / "epochs").glob("*.parquet"))
            if any(not p.name.startswith(first) for p in parts):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        # Ray Tune catches the SIGINT, saves its state and returns: the driver still ends as on
        # Ctrl-C, naming the command that continues the sweep
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == (
            f"interrupted; continue with: pdarts-ray sweep --resume cut --storage {store}"
        )
    finally:
        kill_group(proc)
    first_metrics = experiment / "runs" / first / "metrics.jsonl"
    before = first_metrics.stat().st_mtime_ns
    code, out, err = run_cli(
        "sweep", "--resume", "cut", "--storage", store, "--address", address, "--json", timeout=400
    )
    assert code == 0, err
    summary = json.loads(out)
    trials, epochs = _read(experiment)
    assert len(trials) == 2 and len({t["trial_id"] for t in trials}) == 2
    assert all(t["status"] == "finished" for t in trials) and len(summary["trials"]) == 2
    assert first_metrics.stat().st_mtime_ns == before  # the finished trial did not run again
    assert {t["cfg_seed"] for t in trials} == {1, 2}
    assert sorted(p.stem for p in (experiment / "trials").glob("*.parquet")) == sorted(
        t["trial_id"] for t in trials
    )
    assert len(ExperimentAnalysis(str(experiment)).trials) == 2  # no trial was added on resume
    for t in trials:
        assert _epochs_of(epochs, t["trial_id"]) == ALL_EPOCHS and has_trial(str(store), "cut", t["trial_id"])
        lines = (experiment / "runs" / t["trial_id"] / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["global_epoch"] for x in lines] == list(range(9))


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_the_shipped_sweep_definitions_are_valid(path):
    sweep = load_sweep(path)
    assert sweep.space, f"{path.name} sweeps nothing"
    assert sweep.base_config().validate()
