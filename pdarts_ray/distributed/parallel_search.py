"""One search spread over several workers as one Ray Train run (`pdarts-ray search --workers N`).

The driver makes and claims the run folder, then fits a `TorchTrainer` of N workers (gloo on
CPU, NCCL on GPUs, one GPU each where the cluster has enough) that each run the core's search
as one rank of a data-parallel group (core/parallel.py says what they share). Rank 0 writes
the run folder as a plain search does and attaches every epoch's checkpoint to its Ray Train
report; a worker that dies is replaced by `FailureConfig`, and the group continues from the
newer of Ray Train's latest checkpoint and the run folder's. Ray Train's own files live in
`<run>/ray/`; for workers on several nodes the run folder must be on storage they all reach.
Until the first checkpoint records the workers, `<run>/ray/workers.json` does, so a driver
killed before then leaves a folder that `search --resume` starts again on the same workers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.checkpoint import CheckpointDir, write_json_atomic
from ..core.config import SearchConfig, to_dict
from ..core.errors import SearchDiverged, UserError
from ..core.run_folder import CHECKPOINT_DIR, METRICS_FILE, RESULT_FILE, TRAJECTORY_FILE
from .connect import ray_connected
from .testing import worker_env
from .trainer import torch_trainer, use_gpus

RAY_FOLDER = "ray"
RAY_RUN_NAME = "search"
WORKERS_FILE = "workers.json"  # in RAY_FOLDER: {"workers": N, "sync_bn": bool}, how the search started


def search_with_ray(
    cfg: SearchConfig,
    run_dir: Path,
    workers: int,
    sync_bn: bool = True,
    max_failures: int = 2,
    progress: bool = True,
    tracking: dict | None = None,
) -> dict:
    """Run (or continue) the search in `run_dir` (made by ProgressiveSearch.create) as N Ray
    Train workers; result.json's content. `tracking`: {uri, experiment} of an MLflow run that
    rank 0 logs the search to. The caller has checked `workers` against the config (and a
    resumed search's against its checkpoint)."""
    import ray.train

    from .trial import run_folder_loop

    _note_start(Path(run_dir), workers, sync_bn)
    with ray_connected(cpus=workers):  # one logical CPU per worker, whatever the cores
        use_gpu = use_gpus(cfg.device, workers)
        trainer = torch_trainer(
            run_folder_loop,
            {
                "search_config": to_dict(cfg),
                "run_dir": str(Path(run_dir).resolve()),
                "sync_bn": sync_bn,
                "use_gpu": use_gpu,
                "progress": progress,
                "mlflow": tracking,
            },
            workers=workers,
            gpus=1 if use_gpu else 0,
            name=RAY_RUN_NAME,
            storage_path=str((Path(run_dir) / RAY_FOLDER).resolve()),
            max_failures=max_failures,
            env=worker_env(),
        )
        try:
            outcome = trainer.fit()
        except ray.train.TrainingFailedError as err:
            reason = str(err).strip().splitlines()
            raise UserError(
                f"the search's Ray Train run failed: {reason[0] if reason else type(err).__name__}"
            ) from None
    failure = (outcome.metrics or {}).get("failure")
    if failure:
        raise SearchDiverged(str(failure).removeprefix("SearchDiverged: "))
    return json.loads((Path(run_dir) / RESULT_FILE).read_text())


def _note_start(run_dir: Path, workers: int, sync_bn: bool) -> None:
    """Before its first checkpoint a search starts from scratch, on the workers noted here
    before Ray starts; a line of an epoch whose checkpoint was never written is dropped, as a
    resume from a checkpoint drops those after it."""
    if CheckpointDir(run_dir / CHECKPOINT_DIR).latest_path() is not None:
        return
    for name in (METRICS_FILE, TRAJECTORY_FILE):
        (run_dir / name).unlink(missing_ok=True)
    (run_dir / RAY_FOLDER).mkdir(exist_ok=True)
    write_json_atomic(
        run_dir / RAY_FOLDER / WORKERS_FILE, {"workers": workers, "sync_bn": sync_bn and workers > 1}
    )


def started_workers(run_dir: Path) -> dict | None:
    """`{"workers": N, "sync_bn": bool}` of a search `search_with_ray` started in `run_dir` that
    has no checkpoint yet (its driver was killed before the first); None for any other folder."""
    path = Path(run_dir) / RAY_FOLDER / WORKERS_FILE
    if not path.is_file() or CheckpointDir(Path(run_dir) / CHECKPOINT_DIR).latest_path() is not None:
        return None
    try:
        started = json.loads(path.read_text())
    except (OSError, ValueError):
        started = None
    if not (
        isinstance(started, dict)
        and isinstance(started.get("workers"), int)
        and started["workers"] >= 1
        and isinstance(started.get("sync_bn"), bool)
    ):
        raise UserError(f'{path}: expected {{"workers": N, "sync_bn": true or false}}')
    return started


def pinned_threads(cfg: SearchConfig, workers: int) -> SearchConfig:
    """Local workers share the machine's cores: `threads: 0` becomes cores / workers."""
    if cfg.threads or workers == 1:
        return cfg
    from ..core.config import replace

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return replace(cfg, threads=max(1, cores // workers))
