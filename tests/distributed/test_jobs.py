"""Ray Jobs against a head like a cluster's (token authentication, dashboard on loopback):
the dropout ablation submitted through the Jobs API, stopped (`ray job stop`) after its first
trial and continued with `sweep --resume` as another job, stores every trial once, logs
every trial to one MLflow run each (the trials the stop cut short continue theirs) and leaves
Tune's TensorBoard files."""

import json
import time
from pathlib import Path

import mlflow
import pytest
from helpers.clusters import token_head
from helpers.paths import ROOT
from helpers.processes import free_port
from ray.job_submission import JobStatus, JobSubmissionClient

from pdarts_ray.results import read_trials

pytestmark = pytest.mark.slow

SMOKE_STEPS = list(range(9))  # 3 stages of 3 epochs


@pytest.fixture(scope="module")
def head():
    gcs, dashboard = free_port(), free_port()
    command = (
        f"RAY_AUTH_MODE=token ray start --head --port={gcs} --dashboard-host=127.0.0.1 "
        f"--dashboard-port={dashboard} --temp-dir={{temp}} --num-cpus=4 --block"
    )
    with token_head(command, gcs, dashboard) as started:
        yield started


@pytest.fixture(scope="module")
def jobs(head):
    return JobSubmissionClient(head["dashboard"], headers={"Authorization": f"Bearer {head['token']}"})


@pytest.fixture(scope="module")
def places(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobs")
    return {"store": str(root / "store"), "mlflow": f"sqlite:///{root}/mlflow.db"}


def wait_for(jobs, job_id, statuses, timeout=600):
    deadline = time.time() + timeout
    while (status := jobs.get_job_status(job_id)) not in statuses:
        assert not status.is_terminal(), f"{job_id} ended {status}: {jobs.get_job_logs(job_id)[-3000:]}"
        assert time.time() < deadline, f"{job_id} still {status}"
        time.sleep(1)
    return status


def mlflow_runs(uri, experiment):
    client = mlflow.tracking.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


def test_a_client_without_the_token_is_refused(head):
    with pytest.raises(Exception, match="401|Unauthorized|token"):
        JobSubmissionClient(head["dashboard"]).list_jobs()


@pytest.fixture(scope="module")
def ablation_job(jobs, places):
    """The dropout ablation's script (3 trials, 2 at a time) submitted through the Jobs API,
    stopped once its first trial is stored, then continued by `sweep --resume` as a second
    job run to its end. Returns the two jobs' ids."""
    job_id = jobs.submit_job(
        entrypoint=f"python ablations/dropout_grid.py --preset smoke --name dropout-job --concurrent 2 "
        f"--storage {places['store']} --mlflow {places['mlflow']}",
        runtime_env={"working_dir": str(ROOT), "excludes": ["benchmarks/results", "tests/fixtures"]},
    )
    rows = Path(places["store"], "dropout-job", "trials")
    deadline = time.time() + 600
    while not (rows.is_dir() and any(rows.glob("*.parquet"))):
        assert not jobs.get_job_status(job_id).is_terminal(), jobs.get_job_logs(job_id)[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
    jobs.stop_job(job_id)
    assert wait_for(jobs, job_id, {JobStatus.STOPPED, JobStatus.FAILED}) == JobStatus.STOPPED
    assert read_trials(places["store"], "dropout-job").num_rows < 3  # the stop cut the sweep short

    again = jobs.submit_job(entrypoint=f"pdarts-ray sweep --resume dropout-job --storage {places['store']}")
    assert wait_for(jobs, again, {JobStatus.SUCCEEDED}) == JobStatus.SUCCEEDED, jobs.get_job_logs(again)[
        -3000:
    ]
    return job_id, again


def test_an_ablation_submitted_as_a_job_stopped_and_resumed(jobs, places, ablation_job, tmp_path):
    assert "experiment: " in jobs.get_job_logs(ablation_job[1])  # the resumed job's summary

    trials = read_trials(places["store"], "dropout-job").to_pylist()
    assert len(trials) == 3 and {t["status"] for t in trials} == {"finished"}

    client, runs = mlflow_runs(places["mlflow"], "dropout-job")
    assert sorted(r.data.tags["pdarts_ray.trial_id"] for r in runs) == sorted(t["trial_id"] for t in trials)
    by_trial = {t["trial_id"]: t for t in trials}
    for run in runs:
        trial = by_trial[run.data.tags["pdarts_ray.trial_id"]]
        assert run.info.status == "FINISHED"
        assert json.loads(run.data.params["skip_dropout"]) == trial["cfg_skip_dropout"]
        assert run.data.params["cells"] == "[3, 4, 5]"  # the whole config, not only the sampled keys
        # every epoch in the trial's one run (a trial cut short re-logs the epochs after its
        # last checkpoint when it continues)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "valid_acc")]
        assert sorted(set(steps)) == SMOKE_STEPS
        got = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id,
            artifact_path="genotype.json",
            tracking_uri=places["mlflow"],
            dst_path=str(tmp_path / run.info.run_id),
        )
        assert json.loads(Path(got).read_text()) == json.loads(trial["genotype"])

    # Ray Tune's TensorBoard files in every trial folder, with every reported metric
    events = sorted(Path(places["store"], "dropout-job").glob("*/events.out.tfevents.*"))
    assert len({e.parent for e in events}) == 3
    for folder in {e.parent for e in events}:
        logged = b"".join(e.read_bytes() for e in events if e.parent == folder)
        assert b"ray/tune/valid_acc" in logged and b"ray/tune/global_epoch" in logged


def test_ray_tunes_own_readers_see_the_finished_sweep(places, ablation_job):
    """tune.ExperimentAnalysis on the experiment folder (no Ray needed) lists every trial with
    the metrics of its last report and its sampled config, as docs/results.md says."""
    from ray import tune

    trials = {t["trial_id"]: t for t in read_trials(places["store"], "dropout-job").to_pylist()}
    analysis = tune.ExperimentAnalysis(str(Path(places["store"], "dropout-job")))
    frame = analysis.dataframe()
    assert sorted(frame["trial_id"]) == sorted(trials)
    for _, row in frame.iterrows():
        assert row["best_valid_acc"] == pytest.approx(trials[row["trial_id"]]["best_valid_acc"])
    sampled = [c["skip_dropout"] for c in analysis.get_all_configs().values()]  # a list as JSON text
    assert sorted(json.loads(v) for v in sampled) == sorted(t["cfg_skip_dropout"] for t in trials.values())


def test_the_docs_show_the_job_commands():
    text = (ROOT / "docs" / "clusters.md").read_text()
    assert "ray job submit" in text and "ray job stop" in text and "sweep --resume" in text
