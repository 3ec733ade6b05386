"""The one builder of a Ray Train `TorchTrainer`, for a sweep's trial (trial.py), a search
over several workers (parallel_search.py) and a data-parallel retraining (retrain.py).

Every run gets the same settings around its own loop: gloo on CPU, NCCL on GPUs; the last
two checkpoints kept; Ray Train's own logging at WARNING (not a line per report: the
project prints its epochs once); and its workers' environment given explicitly (the CPU
wait policy and the driver's settings, `runtime.worker_runtime_env`), not left to Ray's
inheritance. Each worker may ask for extra resources a test sets (`testing.worker_resources`).
"""

from __future__ import annotations

from collections.abc import Callable

from .runtime import worker_runtime_env
from .testing import worker_resources


def use_gpus(device: str, workers: int) -> bool:
    """Whether Ray Train workers of a run with this device setting get a GPU each."""
    import ray

    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    return ray.cluster_resources().get("GPU", 0) >= workers  # auto: GPUs if the cluster has enough


def torch_trainer(
    loop: Callable[[dict], None],
    loop_config: dict,
    *,
    workers: int,
    name: str,
    storage_path: str,
    max_failures: int,
    env: dict[str, str],
    cpus: float = 1,
    gpus: float = 0,
    policy: dict[str, str] | None = None,
    callbacks: list | None = None,
):
    """A TorchTrainer of `workers` workers running `loop(loop_config)`, each with `cpus` CPUs
    and `gpus` GPUs (0: on CPU, over gloo); its run named `name` under `storage_path`,
    restarted up to `max_failures` times. `env` and `policy` make the workers' environment."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    return TorchTrainer(
        loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=workers,
            use_gpu=gpus > 0,
            resources_per_worker={"CPU": cpus, **({"GPU": gpus} if gpus else {}), **worker_resources()},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level="WARNING"),
            worker_runtime_env=worker_runtime_env(env, policy),
        ),
    )
