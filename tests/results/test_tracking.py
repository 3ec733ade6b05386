"""A search logged to a local MLflow store (an SQLite file): its params, every epoch's
metrics at step global_epoch, the genotype as an artifact, and a resumed search
continuing the same MLflow run with no epoch missing or twice. The sweep's MLflow logging
runs on Ray: tests/distributed/test_jobs.py."""

import json

import mlflow
import pytest
from helpers.cli import run_cli

import pdarts_ray
from pdarts_ray.core.errors import UserError
from pdarts_ray.results import tracking

STEPS = list(range(9))  # smoke: 3 stages of 3 epochs


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def runs_of(uri, experiment):
    client = mlflow.tracking.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


@pytest.mark.slow
def test_a_search_is_one_mlflow_run(store, tmp_path):
    result = pdarts_ray.run_search(
        pdarts_ray.search_config("smoke"), tmp_path / "run", mlflow=store, mlflow_experiment="smoke-searches"
    )
    client, (run,) = runs_of(store, "smoke-searches")
    assert run.info.status == "FINISHED"
    assert run.data.params["cells"] == "[3, 4, 5]" and run.data.params["seed"] == "2"
    for key in ("train_loss", "train_acc", "valid_acc", "lr", "skip_connects_now"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == STEPS
    assert run.data.metrics["best_valid_acc"] == pytest.approx(result.summary["best_valid_acc"])
    artifacts = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path="genotype.json",
        tracking_uri=store,
        dst_path=str(tmp_path / "got"),
    )
    assert json.loads(open(artifacts).read()) == result.summary["genotype"]
    assert (tmp_path / "mlartifacts").is_dir()  # beside the database, not in the working folder


@pytest.mark.slow
def test_a_resumed_search_continues_its_run(store, tmp_path, monkeypatch):
    original = tracking.MlflowSearch.on_epoch_end

    def stop_at_epoch_4(self, metrics, checkpoint):
        if metrics["global_epoch"] == 4:  # after the epoch's checkpoint, before MLflow hears of it
            raise KeyboardInterrupt
        original(self, metrics, checkpoint)

    monkeypatch.setattr(tracking.MlflowSearch, "on_epoch_end", stop_at_epoch_4)
    with pytest.raises(KeyboardInterrupt):
        pdarts_ray.run_search(pdarts_ray.search_config("smoke"), tmp_path / "run", mlflow=store)
    _, (stopped,) = runs_of(store, "pdarts-ray")
    assert stopped.info.status == "KILLED"
    monkeypatch.setattr(tracking.MlflowSearch, "on_epoch_end", original)

    pdarts_ray.resume_search(tmp_path / "run")  # the store is read from the run folder
    client, (run,) = runs_of(store, "pdarts-ray")
    assert run.info.run_id == stopped.info.run_id and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")] == STEPS


@pytest.mark.slow
def test_the_cli_flag_and_its_errors(store, tmp_path):
    code, out, err = run_cli(
        "search",
        "--preset",
        "smoke",
        "--out",
        tmp_path / "run",
        "--mlflow",
        store,
        "--mlflow-experiment",
        "from-cli",
        "--quiet",
    )
    assert code == 0, err
    _, (run,) = runs_of(store, "from-cli")
    assert run.info.status == "FINISHED"
    code, _, err = run_cli("search", "--preset", "smoke", "--out", tmp_path / "other", "--mlflow", "mlruns")
    assert code == 2 and "--mlflow: a folder must be an absolute path" in err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "uri, fragment",
    [
        ("", "must be a tracking URI"),
        ("sqlite:///relative.db", "an SQLite file must be an absolute path"),
        ("runs/mlflow", "a folder must be an absolute path"),
    ],
)
def test_bad_tracking_uris_are_one_line(uri, fragment):
    with pytest.raises(UserError, match=fragment):
        tracking.check_tracking_uri(uri)
