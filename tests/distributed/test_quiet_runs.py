"""Drivers beside another Ray instance on the same host, each starting a Ray of its own or
joining that one: they print their table (or JSON) alone on stdout, and neither Tune's
warning about `max_concurrent_trials` nor a traceback (Ray Train's placement-group cleaner
asking the wrong instance) on stderr. The drivers are the suite's end-to-end runs of
`reproduce` and of a resumed sweep, so each run is checked for both:

- `reproduce table3 --preset smoke` end to end: a second run starts nothing, a lost row is
  continued (retrainings as Ray tasks: tests/distributed/test_reproduce.py);
- a sweep saved by pdarts-ray 0.1.0, before the package had layers, still resumes;
- a sweep that joins the other instance gives its Tune trials and Train workers the
  driver's CPU wait policy, the user's own OpenMP setting first.
"""

import json
import shutil

import pytest
from helpers.cli import run_cli
from helpers.paths import FIXTURES
from helpers.processes import ray_process_env, raylet_of

from pdarts_ray.core.waiting import OPENMP_KEYS, wait_policy_env

pytestmark = pytest.mark.slow

GRID = "base: {preset: smoke}\nsearcher: grid\nspace:\n  seed: {grid: [1]}\n"
LOCAL = {"RAY_ADDRESS": "local"}  # a Ray of the command's own, not the instance beside it


def assert_quiet(err: str) -> None:
    assert "max_concurrent_trials" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def assert_only_the_table(out: str, title: str, experiment) -> None:
    lines = out.strip().splitlines()
    assert lines[0].strip() == title and lines[-1] == f"experiment: {experiment}", out
    assert "Trial status" not in out and "╭" not in out  # Ray Tune's status boxes went to stderr


# ---------------------------------------------------------------- reproduce end to end


def test_table3_smoke_end_to_end_then_nothing_to_start(second_ray, tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    args = ["reproduce", "table3", "--preset", "smoke", "--runs", "2", "--storage", store, "--out", out]
    code, stdout, err = run_cli(*args, "--json", env=LOCAL)
    assert code == 0, err[-3000:]
    assert_quiet(err)
    data = json.loads(stdout)  # stdout is the JSON alone
    assert data["searches_started"] == 2 and data["missing"] == []
    assert [row[:3] for row in data["rows"]] == [["1", "2", "9.8"], ["2", "3", "9.8"]]
    assert all(float(c) > 0 for row in data["rows"] for c in row[3::2])
    sweeps = sorted(p.name for p in store.iterdir())
    assert len(sweeps) == 1 and sweeps[0].startswith("reproduce-smoke-synthetic.s-")
    for name in ("table3.md", "table3.csv", "table3.png"):
        assert (out / name).stat().st_size > 0
    code, stdout, err = run_cli(*args, env=LOCAL)
    assert code == 0, err
    assert "started 0 searches and 0 retrainings" in stdout and "Table 3" in stdout and "9.8" in stdout
    assert sorted(p.name for p in store.iterdir()) == sweeps

    # a driver killed after a trial ended but before its row was written: the batch is
    # continued (Tune's state restored, the row written), not searched again under a new name
    rows = sorted((store / sweeps[0] / "trials").glob("*.parquet"))
    assert len(rows) == 2
    rows[1].unlink()
    code, stdout, err = run_cli(*args, env=LOCAL)
    assert code == 0, err
    assert f"continuing: {sweeps[0]} (1 search)" in err
    assert stdout.lstrip().startswith("Table 3")  # Ray Tune's console went to stderr
    assert "started 1 searches and 0 retrainings" in stdout
    assert sorted(p.name for p in store.iterdir()) == sweeps
    assert len(list((store / sweeps[0] / "trials").glob("*.parquet"))) == 2


# ---------------------------------------------------------------- a sweep saved by 0.1.0

# An experiment folder that 0.1.0 wrote: a two-trial `smoke` grid over seeds 1 and 2 whose
# driver was SIGKILLed after trial 9b478_00000 had finished and while trial 9b478_00001
# waited after global epoch 4. Ray Tune's saved state names the sweep's callback and its
# trial-naming function by their 0.1.0 module path, `pdarts_ray.sweep`. The paths in its
# `sweep.json` are placeholders, filled in for the copy that the test resumes.
OLD_LAYOUT = FIXTURES / "old-layout-sweep"
FINISHED, UNFINISHED = "9b478_00000", "9b478_00001"


def test_the_fixture_names_the_old_module_path():
    assert b"pdarts_ray.sweep" in (OLD_LAYOUT / "tuner.pkl").read_bytes()


def test_a_sweep_saved_by_the_old_layout_resumes(second_ray, tmp_path):
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.results import read_epochs, read_trials

    store, cache = tmp_path / "store", tmp_path / "cache"
    experiment = store / "old-layout"
    shutil.copytree(OLD_LAYOUT, experiment)
    setup = experiment / "sweep.json"
    setup.write_text(setup.read_text().replace("@STORAGE@", str(store)).replace("@CACHE@", str(cache)))
    before = read_trials(str(experiment)).to_pylist()
    assert [t["trial_id"] for t in before] == [FINISHED]

    code, out, err = run_cli(
        "sweep",
        "--resume",
        "old-layout",
        "--storage",
        store,
        env={**LOCAL, "PDARTS_CACHE": str(cache)},
        timeout=600,
    )
    assert code == 0, err[-3000:]
    # its saved Tuner gave Tune the concurrency limit beside the generator's own: dropped, no warning
    assert_quiet(err)
    assert_only_the_table(out, "old-layout: 2 trials", experiment)
    trials = {t["trial_id"]: t for t in read_trials(str(experiment)).to_pylist()}
    assert sorted(trials) == [FINISHED, UNFINISHED]
    assert all(t["status"] == "finished" for t in trials.values())
    assert trials[FINISHED] == before[0]  # stored once, not run again
    epochs = read_epochs(str(experiment)).to_pylist()
    for trial_id in trials:
        assert sorted((e["stage"], e["epoch"]) for e in epochs if e["trial_id"] == trial_id) == [
            (s, e) for s in (1, 2, 3) for e in range(3)
        ]
    # the resumed trial continued from its epoch-4 checkpoint to the uninterrupted search's cell
    reference = run_search(
        parse_sweep({"base": {"preset": "smoke", "config": {"seed": 2}}}).base_config(),
        tmp_path / "reference",
    )
    assert json.loads(trials[UNFINISHED]["genotype"]) == reference["genotype"]


# ---------------------------------------------------------------- joining the other instance


def test_a_sweep_joining_a_cluster_brings_the_drivers_wait_policy(second_ray, tmp_path, monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)  # put here by `import pdarts_ray`
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # the user's own choice, in the driver's environment
    expected = {"OMP_WAIT_POLICY": "PASSIVE"}
    assert wait_policy_env() == expected
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    store = tmp_path / "store"
    with ray_process_env(raylet_of(second_ray["home"]), OPENMP_KEYS) as started:
        code, out, err = run_cli(
            "sweep",
            "--space",
            space,
            "--storage",
            store,
            "--name",
            "joined",
            "--address",
            second_ray["gcs"],
            env=second_ray["join_env"],
        )
    assert code == 0, err[-3000:]
    assert_quiet(err)
    assert_only_the_table(out, "joined: 1 trials", store / "joined")
    # the instance's own processes start without it: these have it from the driver
    assert started["ImplicitFunc"] and all(env == expected for env in started["ImplicitFunc"]), started
    assert started["RayTrainWorker"] and all(env == expected for env in started["RayTrainWorker"]), started
    assert all(env == {} for env in started.get("DashboardAgent", [])), started
