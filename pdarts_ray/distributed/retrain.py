"""Data-parallel retraining with Ray Train: one TorchTrainer, `workers` DDP workers.

Each worker runs the core loop (`EvalRun.train`) in a process group Ray Train sets up
(NCCL on GPUs, gloo on CPU), on its share of every batch. Every epoch each worker
reports the epoch's metrics through Ray Train (a barrier), and rank 0 attaches the
epoch's checkpoint, which it has already written to the run folder. When a worker
dies, FailureConfig restarts the group, and the workers continue from the newest of
Ray Train's latest checkpoint and the run folder's; `--resume` goes the same way.

Ray Train's own files (its checkpoints and run state) live in `<run>/ray/`; for a
multi-node cluster the run folder must be on storage every node can reach.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import ray
import ray.train
import torch
from ray.train import Checkpoint

from ..core.checkpoint import CheckpointDir
from ..core.run_folder import RESULT_FILE, read_json
from ..evaluation.retrain import AllHooks, EpochLines, EvalHooks, EvalRun, EvaluationFailed
from .connect import ray_connected
from .monitoring import EvalMetrics
from .trainer import torch_trainer, use_gpus

RAY_FOLDER = "ray"
RAY_RUN_NAME = "train"


class RayReport(EvalHooks):
    """Report every epoch through Ray Train; rank 0 attaches its checkpoint file."""

    def __init__(self, lines: EvalHooks | None = None):
        self.lines = lines

    def on_epoch_end(self, metrics: dict, checkpoint: Path | None) -> None:
        if self.lines is not None:
            self.lines.on_epoch_end(metrics, checkpoint)
        if checkpoint is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy2(checkpoint, Path(tmp) / checkpoint.name)  # a CheckpointDir with one file
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))


def _newest_state(run: EvalRun) -> dict | None:
    """The newer of Ray Train's latest checkpoint and the run folder's (None: start afresh)."""
    candidates = []
    reported = ray.train.get_checkpoint()
    if reported is not None:
        with reported.as_directory() as folder:
            candidates.append(CheckpointDir(Path(folder)).load())
    own = run.saved_state()
    if own is not None:
        candidates.append(own)
    return max(candidates, key=lambda s: int(s["epoch"]), default=None)


def _worker_loop(config: dict) -> None:
    # Ray Train logs every report at INFO through the root logger; the epoch lines say it once
    logging.getLogger().setLevel(logging.WARNING)
    run = EvalRun.open(Path(config["run_dir"]))
    rank = ray.train.get_context().get_world_rank()
    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    lines = EpochLines(run.cfg.epochs, sys.stdout) if config["progress"] and rank == 0 else None
    gauges = EvalMetrics("evaluate", run.run_dir.name, run.name, run.cfg.epochs) if rank == 0 else None
    run.train(_newest_state(run), RayReport(AllHooks(lines, gauges)), device=device)


def fit_with_ray(run: EvalRun, progress: bool = True) -> ray.train.Result:
    """Run (or continue) the training of `run` as a Ray Train job; Ray must be running."""
    cfg = run.cfg
    use_gpu = use_gpus(cfg.device, cfg.workers)
    env = {k: os.environ[k] for k in ("PDARTS_CACHE",) if k in os.environ}
    trainer = torch_trainer(
        _worker_loop,
        {"run_dir": str(run.run_dir.resolve()), "use_gpu": use_gpu, "progress": progress},
        workers=cfg.workers,
        gpus=1 if use_gpu else 0,
        name=RAY_RUN_NAME,
        storage_path=str((run.run_dir / RAY_FOLDER).resolve()),
        max_failures=cfg.max_failures,
        env=env,
    )
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as err:
        reason = str(err).strip().splitlines()
        raise EvaluationFailed(
            f"Ray Train run failed: {reason[0] if reason else type(err).__name__}"
        ) from None


def train_with_ray(run: EvalRun, progress: bool = True) -> dict:
    """The CLI's path: start Ray if needed, train, stop what was started; result.json's content."""
    with ray_connected(cpus=run.cfg.workers):  # one logical CPU per worker, whatever the cores
        outcome = fit_with_ray(run, progress)
    result = read_json(run.run_dir / RESULT_FILE)
    result["ray_checkpoint"] = outcome.checkpoint.path if outcome.checkpoint is not None else None
    return result
