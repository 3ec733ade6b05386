"""Drivers beside another Ray instance on the same host: a grid sweep and a reproduce print
their table (or JSON) alone on stdout, and neither Tune's warning about
`max_concurrent_trials` nor a traceback (Ray Train's placement-group cleaner asking the
wrong instance) on stderr; a sweep that joins that other instance gives its Tune trials and
Train workers the driver's CPU wait policy, the user's own OpenMP setting first."""

import json

import pytest
from helpers.cli import run_cli
from helpers.processes import ray_process_env, raylet_of

from pdarts_ray.core.waiting import OPENMP_KEYS, wait_policy_env

pytestmark = pytest.mark.slow

GRID = "base: {preset: smoke}\nsearcher: grid\nspace:\n  seed: {grid: [1]}\n"
LOCAL = {"RAY_ADDRESS": "local"}  # a Ray of the command's own, not the instance beside it


def assert_quiet(err: str) -> None:
    assert "max_concurrent_trials" not in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


def assert_only_the_table(out: str, name: str, experiment) -> None:
    lines = out.strip().splitlines()
    assert lines[0].strip() == f"{name}: 1 trials" and lines[-1] == f"experiment: {experiment}", out
    assert "Trial status" not in out and "╭" not in out  # Ray Tune's status boxes went to stderr


def test_a_grid_sweep_beside_another_ray_prints_its_table_alone(second_ray, tmp_path):
    space = tmp_path / "grid.yaml"
    space.write_text(GRID)
    store = tmp_path / "store"
    code, out, err = run_cli("sweep", "--space", space, "--storage", store, "--name", "grid", env=LOCAL)
    assert code == 0, err[-3000:]
    assert_quiet(err)
    assert_only_the_table(out, "grid", store / "grid")


def test_reproduce_beside_another_ray_prints_json_alone(second_ray, tmp_path):
    code, out, err = run_cli(
        "reproduce",
        "table3",
        "--preset",
        "smoke",
        "--runs",
        "1",
        "--storage",
        tmp_path / "store",
        "--out",
        tmp_path / "out",
        "--json",
        env=LOCAL,
    )
    assert code == 0, err[-3000:]
    assert_quiet(err)
    assert json.loads(out)["searches_started"] == 1


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
    assert_only_the_table(out, "joined", store / "joined")
    # the instance's own processes start without it: these have it from the driver
    assert started["ImplicitFunc"] and all(env == expected for env in started["ImplicitFunc"]), started
    assert started["RayTrainWorker"] and all(env == expected for env in started["RayTrainWorker"]), started
    assert all(env == {} for env in started.get("DashboardAgent", [])), started
