"""A new experiment is one registered function: run at smoke size through `reproduce` and
`sweep --experiment` on a local Ray."""

import json

import pytest
from helpers.cli import main_stdout as cli


@pytest.mark.slow
def test_a_new_experiment_runs_through_reproduce_and_sweep(toy, local_ray, tmp_path):
    argv = ["--preset", "smoke", "--storage", tmp_path, "--json", "--out", tmp_path / "out"]
    code, stdout = cli("reproduce", "toy", *argv)
    assert code == 0
    data = json.loads(stdout)
    assert data["experiment"] == "reproduce-smoke-synthetic" and data["searches_started"] == 1
    assert float(data["rows"][0][1]) >= 0

    code, stdout = cli(
        "sweep",
        "--experiment",
        "toy",
        "--preset",
        "smoke",
        "--storage",
        tmp_path,
        "--name",
        "toy-sweep",
        "--json",
    )
    assert code == 0
    out = json.loads(stdout)
    assert out["name"] == "toy-sweep" and [t["status"] for t in out["trials"]] == ["finished"]
    assert (tmp_path / "toy-sweep" / "sweep.json").is_file()
