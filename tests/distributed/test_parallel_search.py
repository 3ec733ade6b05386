"""One search over two data-parallel workers as one Ray Train run (gloo on CPU), `smoke` preset.

- `pdarts-ray search --workers 2` finishes with a run folder in the one-worker format, its
  checkpoints holding both workers' random states;
- a second run with the same seed, stopped before its first checkpoint (while Ray starts):
  a rerun names `search --resume`, and a resume with another number of workers is one line
  and exit 2; resumed, one of its workers exits hard mid-search and is replaced (Ray Train's
  FailureConfig); its driver SIGKILLed, it resumes on the same workers only, ending with the
  uninterrupted run's genotype and losses;
- a global batch that does not divide among the workers is one line and exit 2;
- a sweep with `workers_per_trial: 2` on a two-node `ray.cluster_utils.Cluster`, one worker
  per node, stores its rows (with the workers) and the genotype of the search on one machine.
"""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from helpers.cli import main_output, run_cli
from helpers.clusters import node_cluster
from helpers.processes import kill_group

pytestmark = pytest.mark.slow


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("two") / "run"
    t0 = time.time()
    code, out, err = run_cli(
        "search", "--preset", "smoke", "--workers", "2", "--out", run_dir, "--json", timeout=600
    )
    assert code == 0, err[-3000:]
    return {"run_dir": run_dir, "result": json.loads(out), "seconds": time.time() - t0}


def test_two_workers_write_a_plain_run_folder(two_workers):
    from pdarts_ray.core.checkpoint import CheckpointDir

    run_dir, result = two_workers["run_dir"], two_workers["result"]
    assert result["workers"] == 2 and result["sync_bn"] is True
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["genotype"] == result["genotype"] and saved["workers"] == 2
    lines = _lines(run_dir / "metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in lines] == [(s, e) for s in (1, 2, 3) for e in range(3)]
    assert all(0 <= r["train_acc"] <= 1 and r["train_loss"] > 0 for r in lines)
    for name in ("config.json", "genotype.json", "genotypes.json", "alphas.json", "alpha_trajectory.jsonl"):
        assert (run_dir / name).is_file(), name
    state = torch.load(CheckpointDir(run_dir / "checkpoints").latest_path(), weights_only=True)
    assert state["workers"] == 2 and state["sync_bn"] is True and len(state["rng_ranks"]) == 2
    assert "batch_size" in json.loads(
        (run_dir / "config.json").read_text()
    )  # the config, not the run options
    assert "workers" not in json.loads((run_dir / "config.json").read_text())


def test_an_interrupted_search_resumes_only_on_its_workers_and_ends_as_if_never_interrupted(
    two_workers, tmp_path, monkeypatch
):
    from pdarts_ray.cli.main import main
    from pdarts_ray.distributed import parallel_search
    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_MARKER_ENV

    def interrupted(cpus):  # Ctrl-C while Ray starts: the longest stretch before the first checkpoint
        raise KeyboardInterrupt

    run_dir = tmp_path / "run"
    monkeypatch.setattr(parallel_search, "ray_connected", interrupted)
    assert main(["search", "--preset", "smoke", "--workers", "2", "--out", str(run_dir), "--quiet"]) == 130
    monkeypatch.undo()
    assert not (run_dir / "checkpoints").exists() and (run_dir / "config.json").is_file()

    code, out, err = run_cli("search", "--preset", "smoke", "--workers", "2", "--out", run_dir, timeout=120)
    assert (
        code == 2
        and err.count("\n") == 1
        and f"continue it with `pdarts-ray search --resume {run_dir}`" in err
    )
    code, out, err = run_cli("search", "--resume", run_dir, "--workers", "3", timeout=120)
    assert code == 2 and err.count("\n") == 1 and "resume it with the same (--workers 2)" in err, err

    # resumed with its workers alone (no --workers): one of them exits hard after global epoch
    # 4 and is replaced (Ray Train's FailureConfig); then the driver is SIGKILLed
    marker = tmp_path / "exited"
    env = {**os.environ, EXIT_AFTER_EPOCH_ENV: "4", EXIT_MARKER_ENV: str(marker)}
    cmd = [sys.executable, "-m", "pdarts_ray.cli", "search", "--resume", str(run_dir), "--quiet"]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if (run_dir / "metrics.jsonl").is_file() and len(_lines(run_dir / "metrics.jsonl")) >= 6:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the search ended before it could be killed"
    finally:
        kill_group(proc, stop_local_ray=True)
    assert marker.is_file() and not (run_dir / "result.json").exists()

    code, out, err = run_cli("search", "--resume", run_dir, "--workers", "1", timeout=120)
    # (after a warning that it took over the killed driver's claim)
    errors = [line for line in err.strip().splitlines() if not line.startswith("warning: took over")]
    assert code == 2 and len(errors) == 1 and "resume it with the same (--workers 2)" in errors[0], err

    code, out, err = run_cli("search", "--resume", run_dir, "--workers", "2", "--json", timeout=600)
    assert code == 0, err[-3000:]
    assert json.loads(out)["workers"] == 2
    assert json.loads(out)["genotype"] == two_workers["result"]["genotype"]
    lines = _lines(run_dir / "metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in lines] == [(s, e) for s in (1, 2, 3) for e in range(3)]
    assert [r["train_loss"] for r in lines] == [
        r["train_loss"] for r in _lines(two_workers["run_dir"] / "metrics.jsonl")
    ]


def test_a_batch_that_does_not_divide_among_the_workers_is_one_line(tmp_path):
    code, _, err = main_output("search", "--preset", "smoke", "--workers", "3", "--out", tmp_path / "run")
    assert code == 2 and "batch_size: must be divisible by the workers (3), got 32" in err, err
    assert not (tmp_path / "run").exists()


def test_a_sweep_with_two_workers_per_trial_one_on_each_of_two_nodes(two_workers, tmp_path):
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.results import read_epochs, read_trials

    # a worker on each worker node, the trial and its Train controller on the head
    with node_cluster(2, {"one_per_node": 1}, {"trial_driver": 1}) as cluster:
        nodes = list(cluster.worker_nodes)
        sweep = parse_sweep(
            {
                "name": "dp",
                "base": {"preset": "smoke"},
                "storage": str(tmp_path),
                "searcher": "grid",
                "workers_per_trial": 2,
                "max_concurrent_trials": 1,
            }
        )
        run_sweep(sweep, verbose=0)
    assert len(nodes) == 2
    (trial,) = read_trials(str(tmp_path / "dp")).to_pylist()
    assert trial["status"] == "finished" and trial["workers"] == 2
    assert len(read_epochs(str(tmp_path / "dp")).to_pylist()) == 9
    assert json.loads(trial["genotype"]) == two_workers["result"]["genotype"]
