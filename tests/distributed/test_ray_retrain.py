"""Data-parallel retraining through Ray Train on a local Ray (gloo on CPU): metrics and
checkpoints reported through Ray Train, one worker agreeing with the in-process run,
resume, and a killed worker restarted from the last checkpoint."""

import os
import signal
import threading
import time

import pytest
from helpers.metrics import exported_until, node_metrics_url

from pdarts_ray.core.checkpoint import CheckpointDir, read_jsonl
from pdarts_ray.core.config import resolve
from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig
from pdarts_ray.evaluation.genotypes import PDARTS
from pdarts_ray.evaluation.retrain import EvalHooks, EvalRun, check_data, run_evaluation

pytestmark = pytest.mark.slow


def _cfg(*sets):
    return resolve(EvalConfig, EVAL_PRESETS, "eval-smoke", None, list(sets))


def _new_run(cfg, path):
    check_data(cfg)
    return EvalRun.create(cfg, PDARTS, path, "PDARTS")


def _losses(run_dir):
    return [m["train_loss"] for m in read_jsonl(run_dir / "metrics.jsonl")]


def test_two_gloo_workers_report_metrics_and_checkpoints(local_ray, tmp_path):
    from pdarts_ray.distributed.retrain import fit_with_ray

    run = _new_run(_cfg("workers=2", "epochs=1"), tmp_path / "run")
    outcome = fit_with_ray(run, progress=False)
    assert outcome.metrics["epoch"] == 0 and 0 <= outcome.metrics["test_acc"] <= 1
    assert outcome.metrics["train_loss"] > 0
    with outcome.checkpoint.as_directory() as folder:
        state = CheckpointDir(folder).load()
    assert state["epoch"] == 0 and "model" in state and "optimizer" in state
    rows = read_jsonl(run.run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [0] and rows[0]["train_loss"] == outcome.metrics["train_loss"]
    assert CheckpointDir(run.run_dir / "checkpoints").latest_path() is not None
    result = (run.run_dir / "result.json").read_text()
    assert '"workers": 2' in result and (run.run_dir / "weights.pt").is_file()
    # rank 0 set the retraining's Ray gauges, tagged with its run folder and genotype
    run_name = run.run_dir.name
    samples = exported_until(
        node_metrics_url(local_ray),
        "ray_pdarts_eval_",
        lambda samples: ("ray_pdarts_eval_test_acc", run_name) in samples,
    )
    labels, test_acc = samples[("ray_pdarts_eval_test_acc", run_name)]
    assert labels["experiment"] == "evaluate" and labels["genotype"] == "PDARTS"
    assert test_acc == pytest.approx(outcome.metrics["test_acc"])
    assert samples[("ray_pdarts_eval_epoch", run_name)][1] == 0


class StopAfterEpoch(EvalHooks):
    class Stop(Exception):
        pass

    def on_epoch_end(self, metrics, checkpoint):
        if metrics["epoch"] == 0:
            raise self.Stop


def test_one_worker_through_ray_agrees_with_the_plain_run_and_resumes(local_ray, tmp_path):
    from pdarts_ray.distributed.retrain import train_with_ray

    cfg = _cfg("ray_train=true")
    reference = run_evaluation(cfg, PDARTS, tmp_path / "plain")  # in this process, no Ray
    through_ray = train_with_ray(_new_run(cfg, tmp_path / "ray"), progress=False)
    assert _losses(tmp_path / "ray") == pytest.approx(_losses(tmp_path / "plain"), rel=1e-6)
    assert through_ray["top1"] == pytest.approx(reference["top1"])
    # stopped in this process after one epoch, continued through Ray Train
    stopped = _new_run(cfg, tmp_path / "resumed")
    with pytest.raises(StopAfterEpoch.Stop):
        stopped.train(hooks=StopAfterEpoch())
    resumed = train_with_ray(EvalRun.open(tmp_path / "resumed"), progress=False)
    assert [m["epoch"] for m in read_jsonl(tmp_path / "resumed" / "metrics.jsonl")] == list(range(cfg.epochs))
    assert _losses(tmp_path / "resumed") == pytest.approx(_losses(tmp_path / "plain"), rel=1e-6)
    assert resumed["top1"] == pytest.approx(reference["top1"])


def test_a_killed_worker_restarts_from_the_last_checkpoint(local_ray, tmp_path):
    from ray.util.state import list_actors

    from pdarts_ray.distributed.retrain import fit_with_ray

    cfg = _cfg("workers=2", "epochs=8", "synthetic_size=256", "max_failures=2")
    run = _new_run(cfg, tmp_path / "run")
    outcome = {}
    fit = threading.Thread(target=lambda: outcome.setdefault("result", fit_with_ray(run, progress=False)))
    fit.start()
    killed = None
    deadline = time.time() + 300
    while fit.is_alive() and time.time() < deadline and killed is None:
        if read_jsonl(run.run_dir / "metrics.jsonl"):
            workers = list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
            if workers:
                killed = workers[0].pid
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    fit.join(timeout=300)
    assert killed is not None, "the run ended before a worker could be killed"
    rows = read_jsonl(run.run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == list(range(cfg.epochs))  # each epoch once, none lost
    assert "result" in outcome, "the run failed instead of restarting its workers"
    assert outcome["result"].metrics["epoch"] == cfg.epochs - 1
    assert (run.run_dir / "result.json").is_file()
