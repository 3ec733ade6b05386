"""Resources of a sweep's trials: `gpus_per_trial: auto` packs as many trials onto one GPU as
the memory model's predicted peak of the sweep's heaviest config allows.
"""

from __future__ import annotations

from ..core.config import SearchConfig
from ..core.errors import UserError
from .definition import Sweep

MEMORY_KEYS = ("cells", "ops_kept", "skip_dropout", "batch_size", "channels", "image_size", "synthetic_size")
TRAINING_IMAGES = {"cifar10": 50000, "cifar100": 50000}
CUDA_CONTEXT_BYTES = 600 * 2**20  # per process, outside the memory model's allocator peak
GPU_MEMORY_HEADROOM = 0.9
MAX_TRIALS_PER_GPU = 16


# ---------------------------------------------------------------- resources


def worst_case_config(base: dict, space: dict) -> SearchConfig:
    """The base with the largest listed value of every key that drives memory (lists
    element by element): an upper bound for packing trials onto a GPU."""
    values = dict(base)
    for key, entry in space.items():
        if key not in MEMORY_KEYS:
            continue
        kind, options = next(iter(entry.items()))
        if kind == "randint":
            options = [options[1] - 1]
        if options and isinstance(options[0], list):
            if len({len(o) for o in options}) == 1:
                values[key] = [max(column) for column in zip(*options)]
        else:
            values[key] = max(options)
    try:
        return SearchConfig(**values).validate()
    except UserError:
        return SearchConfig(**base).validate()


def predicted_peak_bytes(cfg: SearchConfig, workers: int = 1) -> int:
    """The predicted peak of one worker: its slice of the global batch, and the whole dataset
    (every worker holds it on its device)."""
    from ..core.memory_model import predict_stage

    images = TRAINING_IMAGES.get(cfg.dataset, cfg.synthetic_size if cfg.dataset == "synthetic" else 0)
    batch = -(-cfg.batch_size // workers)
    return max(
        predict_stage(
            cfg, s + 1, "cuda", dataset_images=int(images * cfg.train_portion + images), batch=batch
        )["bytes"]
        for s in range(cfg.num_stages)
    )


def resolve_gpus_per_trial(
    value: float | str,
    device: str,
    cluster_gpus: float,
    predicted_bytes: int | None = None,
    gpu_memory_bytes: int | None = None,
) -> float:
    """A number is kept. `auto`: 0 without GPUs (or with `device: cpu`); with GPUs, the share
    of one GPU that the memory model's predicted peak (plus a CUDA context) fits in, as 1/k;
    1 when the GPU's memory is unknown."""
    if value != "auto":
        return float(value)
    if device == "cpu" or cluster_gpus <= 0:
        return 0.0
    if not predicted_bytes or not gpu_memory_bytes:
        return 1.0
    per_trial = predicted_bytes + CUDA_CONTEXT_BYTES
    k = int(gpu_memory_bytes * GPU_MEMORY_HEADROOM // per_trial)
    return 1.0 / max(1, min(k, MAX_TRIALS_PER_GPU))


def _cluster_gpu_memory() -> int | None:
    """Memory of one of the cluster's GPUs: this machine's, or one GPU task's answer."""
    import ray
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)

    @ray.remote(num_gpus=1)
    def total_memory():
        import torch

        return int(torch.cuda.get_device_properties(0).total_memory) if torch.cuda.is_available() else None

    ref = total_memory.remote()
    ready, _ = ray.wait([ref], timeout=120)
    if not ready:
        ray.cancel(ref, force=True)
        return None
    return ray.get(ref)


def gpus_for(sweep: Sweep, base: dict) -> float:
    import ray

    cluster_gpus = ray.cluster_resources().get("GPU", 0)
    if sweep.gpus_per_trial != "auto" or base["device"] == "cpu" or cluster_gpus <= 0:
        return resolve_gpus_per_trial(sweep.gpus_per_trial, base["device"], cluster_gpus)
    return resolve_gpus_per_trial(
        "auto",
        base["device"],
        cluster_gpus,
        predicted_peak_bytes(worst_case_config(base, sweep.space), sweep.workers_per_trial),
        _cluster_gpu_memory(),
    )
