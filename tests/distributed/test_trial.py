"""The search trial on Ray Train inside Ray Tune: a worker killed mid-search is restarted by
Train's FailureConfig, continues from its last epoch checkpoint and ends with the genotype
of an uninterrupted search."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_a_killed_worker_resumes_from_its_checkpoint_with_the_same_genotype(local_ray, tmp_path, monkeypatch):
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_MARKER_ENV
    from pdarts_ray.results import read_epochs, read_trials

    marker = tmp_path / "killed-once"
    monkeypatch.setenv(EXIT_AFTER_EPOCH_ENV, "4")  # stage 2, epoch 1: mid-stage, after a stage change
    monkeypatch.setenv(EXIT_MARKER_ENV, str(marker))
    sweep = parse_sweep(
        {
            "name": "kill",
            "base": {"preset": "smoke"},
            "storage": str(tmp_path / "store"),
            "max_failures": 1,
            "trial_retries": 0,
        }
    )
    run_sweep(sweep, verbose=0)
    assert marker.exists(), "the worker was never killed"
    trials = read_trials(str(tmp_path / "store" / "kill")).to_pylist()
    assert len(trials) == 1 and trials[0]["status"] == "finished"
    epochs = read_epochs(str(tmp_path / "store" / "kill")).to_pylist()
    assert [(e["stage"], e["epoch"]) for e in epochs] == [(s, e) for s in (1, 2, 3) for e in range(3)]
    trial_dir = tmp_path / "store" / "kill" / "runs" / trials[0]["trial_id"]
    lines = [json.loads(x) for x in (trial_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["global_epoch"] for r in lines] == list(range(9))  # each epoch once across the restart

    reference = run_search(sweep.base_config(), tmp_path / "plain")  # the core alone, no Ray
    assert json.loads(trials[0]["genotype"]) == reference["genotype"]
    plain = json.loads((tmp_path / "plain" / "genotypes.json").read_text())
    assert json.loads(trials[0]["genotypes_by_m"]) == plain["final_by_M"]
    losses = [r["train_loss"] for r in lines]
    plain_losses = [
        json.loads(x)["train_loss"] for x in (tmp_path / "plain" / "metrics.jsonl").read_text().splitlines()
    ]
    assert losses == pytest.approx(plain_losses, rel=1e-6)
