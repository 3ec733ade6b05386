"""Sweeps: many searches as one Ray Tune experiment, stored in the results store.

A sweep definition (YAML or JSON; schema in the README) names a base config, a search
space over config keys, the objective, the searcher (Optuna's TPE or a grid), an
optional ASHA scheduler and the resources per trial. `run_sweep` validates every value
of the space against SearchConfig before anything starts, saves the definition and the
resolved base config in the experiment folder, and fits a Tuner whose trials are
`trainer.search_trial` (one Ray Train run each). `resume_sweep` continues an interrupted
sweep from that folder alone (`Tuner.restore`).

M (`skip_connects`) is read off every finished search for every M, so a space over it
is taken out of Tune's space: it names the M values the sweep's tables show.

Rows reach the results store three ways, so that each trial is stored exactly once
even when the driver dies at a bad moment: a Tune callback writes epoch rows as results
arrive and the trial row when a trial ends, and after every fit (and every resume) a
reconciliation pass writes whatever rows are still missing from the experiment's state.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import SEARCH_PRESETS, SearchConfig, apply_overrides, from_dict, read_config_file, resolve, to_dict
from .errors import UserError

SWEEP_FILE = "sweep.json"
SPACE_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
SEARCHERS = ("optuna", "grid")
EPOCH_METRICS = ("stage", "epoch", "global_epoch", "train_loss", "train_acc", "valid_acc", "valid_loss",
                 "skip_dropout", "lr", "epoch_seconds", "skip_connects_now", "peak_memory_bytes")
FINAL_METRICS = ("best_valid_acc", "final_valid_acc", "skip_connects_before_refinement", "search_seconds")
# keys whose larger values need more memory (gpus_per_trial: auto takes the largest of each)
MEMORY_KEYS = ("cells", "ops_kept", "skip_dropout", "batch_size", "channels", "image_size", "synthetic_size")
TRAINING_IMAGES = {"cifar10": 50000, "cifar100": 50000}
CUDA_CONTEXT_BYTES = 600 * 2**20  # per process, outside the memory model's allocator peak
GPU_MEMORY_HEADROOM = 0.9
MAX_TRIALS_PER_GPU = 16
DEF_KEYS = ("name", "base", "space", "objective", "searcher", "seed", "scheduler", "num_samples",
            "max_concurrent_trials", "gpus_per_trial", "cpus_per_trial", "max_failures", "trial_retries",
            "storage")


# ---------------------------------------------------------------- the definition

@dataclass
class Sweep:
    """A validated sweep definition."""

    base: dict  # {"preset": name, "config": {key: value}}
    space: dict = field(default_factory=dict)  # key -> {kind: values}; skip_connects excluded
    m_values: list | None = None  # M values named by a space over skip_connects
    metric: str = "valid_acc"
    mode: str = "max"
    searcher: str = "optuna"
    seed: int = 0
    scheduler: dict | None = None  # {"type": "asha", "grace_period": epochs, "reduction_factor": 3}
    num_samples: int = 1
    max_concurrent_trials: int = 2
    gpus_per_trial: float | str = "auto"
    cpus_per_trial: int = 1
    max_failures: int = 2  # Ray Train: worker failures per trial, each resumed from the last epoch
    trial_retries: int = 1  # Ray Tune: restarts of a trial whose driver died
    storage: str | None = None
    name: str | None = None

    def base_config(self) -> SearchConfig:
        preset = self.base["preset"]
        if preset not in SEARCH_PRESETS:
            raise UserError(f"sweep: base.preset: unknown preset '{preset}' (choose from {', '.join(SEARCH_PRESETS)})")
        values = apply_overrides(SearchConfig, {}, SEARCH_PRESETS[preset], f"preset {preset}")
        values = apply_overrides(SearchConfig, values, self.base.get("config") or {}, "sweep: base.config")
        return SearchConfig(**values).validate()

    def to_dict(self) -> dict:
        return asdict(self)


def _field_type(key: str) -> str:
    return {f.name: f.type for f in fields(SearchConfig)}[key].replace(" ", "")


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{what}: must be a number, got {value!r}")
    return value


def _int(value, what: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{what}: must be an integer, got {value!r}")
    if low is not None and value < low:
        raise UserError(f"{what}: must be at least {low}, got {value}")
    return value


def _check_value(base: dict, key: str, value, what: str) -> None:
    """One value of the space on top of the base config: SearchConfig's own validation,
    reported under the space key."""
    try:
        SearchConfig(**apply_overrides(SearchConfig, base, {key: value}, what)).validate()
    except UserError as err:
        raise UserError(f"{what}: {str(err).removeprefix('config: ')}") from None
    except TypeError as err:
        raise UserError(f"{what}: {err}") from None


def _parse_space(space, base: dict, searcher: str) -> tuple[dict, list | None]:
    if space is None:
        return {}, None
    if not isinstance(space, dict):
        raise UserError("sweep: space: must map config keys to {kind: values}")
    known = {f.name for f in fields(SearchConfig)}
    out, m_values = {}, None
    for key, entry in space.items():
        what = f"sweep: space: {key}"
        if key not in known:
            raise UserError(f"{what}: not a config key")
        if not isinstance(entry, dict) or len(entry) != 1 or next(iter(entry)) not in SPACE_KINDS:
            raise UserError(f"{what}: must be one of {{{': ..., '.join(SPACE_KINDS)}: ...}}")
        kind, values = next(iter(entry.items()))
        if kind in ("choice", "grid"):
            if not isinstance(values, list) or not values:
                raise UserError(f"{what}: {kind}: needs a non-empty list of values")
            for v in values:
                _check_value(base, key, v, what)
            values = [apply_overrides(SearchConfig, {}, {key: v}, what)[key] for v in values]
            if kind == "grid" and searcher == "optuna" and key != "skip_connects":
                raise UserError(f"{what}: grid needs `searcher: grid` (Optuna samples; use choice)")
        else:
            if not isinstance(values, list) or len(values) != 2:
                raise UserError(f"{what}: {kind}: needs [low, high]")
            ann = _field_type(key)
            if kind == "randint":
                if not ann.startswith("int"):
                    raise UserError(f"{what}: randint: {key} is not an integer key")
                low, high = (_int(v, f"{what}: randint") for v in values)
                if high <= low:
                    raise UserError(f"{what}: randint: high (exclusive) must exceed low, got [{low}, {high}]")
                ends = (low, high - 1)
            else:
                if not ann.startswith("float"):
                    raise UserError(f"{what}: {kind}: {key} is not a number key")
                low, high = (float(_number(v, f"{what}: {kind}")) for v in values)
                if high <= low:
                    raise UserError(f"{what}: {kind}: high must exceed low, got [{low}, {high}]")
                if kind == "loguniform" and low <= 0:
                    raise UserError(f"{what}: loguniform: low must be positive, got {low}")
                ends = (low, high)
            for v in ends:
                _check_value(base, key, v, what)
            values = [low, high]
        if key == "skip_connects":
            if kind not in ("choice", "grid"):
                raise UserError(f"{what}: M is read off every search; list its values with grid or choice")
            m_values = sorted(set(values))
            continue
        out[key] = {kind: values}
    _check_combinations(base, out)
    return out, m_values


def _check_combinations(base: dict, space: dict) -> None:
    """Keys that depend on each other (warmup_epochs < epochs, list lengths): every
    combination of the listed values, continuous ranges at both ends."""
    keys = list(space)
    options = []
    for key in keys:
        kind, values = next(iter(space[key].items()))
        options.append(values if kind in ("choice", "grid") else
                       [values[0], values[1] - 1] if kind == "randint" else values)
    if len(keys) < 2 or math.prod(len(o) for o in options) > 4096:
        return
    for combo in itertools.product(*options):
        try:
            SearchConfig(**{**base, **dict(zip(keys, combo))}).validate()
        except UserError as err:
            point = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
            raise UserError(f"sweep: space: the point {point}: {str(err).removeprefix('config: ')}") from None


def parse_sweep(data: dict, source: str = "sweep") -> Sweep:
    """A sweep definition (a loaded YAML/JSON mapping), validated; one-line errors name the key."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: a sweep definition must be a mapping")
    unknown = set(data) - set(DEF_KEYS)
    if unknown:
        raise UserError(f"{source}: unknown key '{sorted(unknown)[0]}' (known: {', '.join(DEF_KEYS)})")
    base = data.get("base", {"preset": "tiny"})
    if isinstance(base, str):
        base = {"preset": base}
    if not isinstance(base, dict) or set(base) - {"preset", "config"}:
        raise UserError("sweep: base: must be {preset: NAME, config: {key: value}}")
    base = {"preset": base.get("preset", "tiny"), "config": dict(base.get("config") or {})}
    sweep = Sweep(base=base)
    base_values = to_dict(sweep.base_config())
    searcher = data.get("searcher", "optuna")
    if searcher not in SEARCHERS:
        raise UserError(f"sweep: searcher: must be one of {', '.join(SEARCHERS)}, got {searcher!r}")
    sweep.searcher = searcher
    sweep.space, sweep.m_values = _parse_space(data.get("space"), base_values, searcher)
    objective = data.get("objective", {})
    if isinstance(objective, str):
        objective = {"metric": objective}
    if not isinstance(objective, dict) or set(objective) - {"metric", "mode"}:
        raise UserError("sweep: objective: must be {metric: NAME, mode: max|min}")
    sweep.metric = objective.get("metric", "valid_acc")
    if sweep.metric not in EPOCH_METRICS + FINAL_METRICS:
        raise UserError(f"sweep: objective: metric: unknown metric {sweep.metric!r} "
                        f"(reported: {', '.join(EPOCH_METRICS + FINAL_METRICS)})")
    sweep.mode = objective.get("mode", "max")
    if sweep.mode not in ("max", "min"):
        raise UserError(f"sweep: objective: mode: must be max or min, got {sweep.mode!r}")
    sweep.seed = _int(data.get("seed", 0), "sweep: seed", 0)
    sweep.num_samples = _int(data.get("num_samples", 1), "sweep: num_samples", 1)
    sweep.max_concurrent_trials = _int(data.get("max_concurrent_trials", 2), "sweep: max_concurrent_trials", 1)
    sweep.cpus_per_trial = _int(data.get("cpus_per_trial", 1), "sweep: cpus_per_trial", 1)
    sweep.max_failures = _int(data.get("max_failures", 2), "sweep: max_failures", 0)
    sweep.trial_retries = _int(data.get("trial_retries", 1), "sweep: trial_retries", 0)
    sweep.gpus_per_trial = parse_gpus(data.get("gpus_per_trial", "auto"), "sweep: gpus_per_trial")
    sweep.scheduler = _parse_scheduler(data.get("scheduler"), sweep, base_values)
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise UserError("sweep: storage: must be a path or URI")
    sweep.storage = storage
    name = data.get("name")
    if name is not None:
        from .results import _check_name

        _check_name(name, "sweep: name")
    sweep.name = name
    return sweep


def _parse_scheduler(value, sweep: Sweep, base: dict) -> dict | None:
    if value is None or value is False:
        return None
    if value == "asha":
        value = {"type": "asha"}
    if not isinstance(value, dict) or value.get("type") != "asha" or set(value) - {"type", "grace_period",
                                                                                     "reduction_factor"}:
        raise UserError("sweep: scheduler: must be {type: asha, grace_period: N, reduction_factor: R}")
    epochs = base["epochs"]
    if "epochs" in sweep.space:
        raise UserError("sweep: scheduler: ASHA counts global epochs; epochs cannot vary within the sweep")
    grace = _int(value.get("grace_period", epochs), "sweep: scheduler: grace_period")
    if grace < epochs:
        raise UserError(f"sweep: scheduler: grace_period: at least one stage ({epochs} epochs), got {grace}")
    factor = _number(value.get("reduction_factor", 3), "sweep: scheduler: reduction_factor")
    if factor <= 1:
        raise UserError(f"sweep: scheduler: reduction_factor: must exceed 1, got {factor}")
    if sweep.metric not in EPOCH_METRICS:
        raise UserError(f"sweep: scheduler: ASHA compares trials epoch by epoch; the objective "
                        f"{sweep.metric!r} is only reported at the end")
    return {"type": "asha", "grace_period": grace, "reduction_factor": factor}


def parse_gpus(value, what: str = "--gpus-per-trial") -> float | str:
    """`auto`, 0, or a share of one GPU in (0, 1] (several trials on one GPU)."""
    if value == "auto":
        return "auto"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise UserError(f"{what}: must be a number or auto, got {value!r}") from None
    value = _number(value, what)
    if not 0 <= value <= 1:
        raise UserError(f"{what}: a search uses one GPU: give a share in 0..1 (0.25: four trials per GPU), got {value}")
    return float(value)


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_config_file(path), str(path))


# ---------------------------------------------------------------- Tune's view of the space

def _encode(value):
    """Optuna's categories are scalars: a per-stage list travels as its JSON text."""
    return json.dumps(value) if isinstance(value, list) else value


def param_space(sweep: Sweep) -> dict:
    from ray import tune

    out = {}
    for key, entry in sweep.space.items():
        kind, values = next(iter(entry.items()))
        if kind == "grid":
            out[key] = tune.grid_search([_encode(v) for v in values])
        elif kind == "choice":
            out[key] = tune.choice([_encode(v) for v in values])
        elif kind == "uniform":
            out[key] = tune.uniform(*values)
        elif kind == "loguniform":
            out[key] = tune.loguniform(*values)
        else:
            out[key] = tune.randint(*values)
    return out


def trial_config(base: dict, sampled: dict, cpus_per_trial: int) -> dict:
    """The full config of one trial: the base with the sampled values (decoded), and CPU
    threads pinned to the trial's CPUs where the base leaves them to the machine."""
    values = dict(base)
    for key, value in sampled.items():
        if _field_type(key).startswith("list[") and isinstance(value, str):
            value = json.loads(value)
        values[key] = value
    if values.get("threads", 0) == 0:
        values["threads"] = cpus_per_trial
    return to_dict(from_dict(SearchConfig, values, "trial config"))


TRIAL_LABEL_MAX = 60
_UNSAFE = re.compile(r"[^A-Za-z0-9_.,=+-]")


def _label_value(value) -> str:
    if isinstance(value, str) and value.startswith("["):
        value = json.loads(value)  # a per-stage list, as Tune holds it
    if isinstance(value, (list, tuple)):
        return "-".join(_label_value(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(float(f"{value:.3g}"))  # 3 significant digits, 0.0 rather than 0
    return str(value)


def trial_label(sampled: dict) -> str:
    """The sampled values as a short text, `skip_dropout=0.0-0.3-0.6,seed=3`: safe in a
    file name, at most TRIAL_LABEL_MAX characters (cut, not unique on its own)."""
    label = ",".join(f"{key}={_label_value(sampled[key])}" for key in sorted(sampled))
    return _UNSAFE.sub("", label)[:TRIAL_LABEL_MAX]


def trial_name(trial) -> str:
    """Tune's trial name and folder: the trial id (unique) after the sampled values, so the
    dashboard, Tune's tables and the experiment folder read by config."""
    label = trial_label(trial.config or {})
    return f"{label}_{trial.trial_id}" if label else f"trial_{trial.trial_id}"


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


def predicted_peak_bytes(cfg: SearchConfig) -> int:
    from .memory_model import predict_stage

    images = TRAINING_IMAGES.get(cfg.dataset, cfg.synthetic_size if cfg.dataset == "synthetic" else 0)
    return max(predict_stage(cfg, s + 1, "cuda", dataset_images=int(images * cfg.train_portion + images))["bytes"]
               for s in range(cfg.num_stages))


def resolve_gpus_per_trial(value: float | str, device: str, cluster_gpus: float, predicted_bytes: int | None = None,
                           gpu_memory_bytes: int | None = None) -> float:
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
    return resolve_gpus_per_trial("auto", base["device"], cluster_gpus,
                                  predicted_peak_bytes(worst_case_config(base, sweep.space)),
                                  _cluster_gpu_memory())


def connect_ray(address: str | None, sweep: Sweep) -> bool:
    """Join `address`, $RAY_ADDRESS or a running cluster (under `ray submit`); else start a
    local Ray whose logical CPUs let `max_concurrent_trials` trials run side by side.
    True if this call started or joined Ray (and should shut it down)."""
    import ray

    from .runtime import RAY_ENV
    from .trainer import TRIAL_DRIVER_CPU

    if ray.is_initialized():
        return False
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if address:
        ray.init(address=address)
        return True
    from ray._private.services import canonicalize_bootstrap_address

    if canonicalize_bootstrap_address(None) is not None:
        ray.init()
        return True
    per_trial = sweep.cpus_per_trial + TRIAL_DRIVER_CPU
    # the dashboard stays on: Train V2 leaks finished trials' placement groups without it;
    # loopback only, as its Jobs API runs any code it is sent
    ray.init(num_cpus=max(os.cpu_count() or 1, math.ceil(sweep.max_concurrent_trials * per_trial)),
             include_dashboard=True, dashboard_host="127.0.0.1")
    return True


def dashboard_url() -> str | None:
    """The connected cluster's dashboard address, None where it runs without one."""
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:  # a Ray without the private helper: no address to show
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def announce_dashboard() -> None:
    """One line on stderr (stdout may carry JSON): where to watch the sweep."""
    url = dashboard_url()
    if not url:
        return
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        token = is_token_auth_enabled()
    except ImportError:
        token = False
    how = "; sign in with the token `ray get-auth-token` prints" if token else ""
    print(f"Ray dashboard: {url} (trials' metrics: ray_pdarts_*{how})", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the experiment

def _fs(path: str):
    import pyarrow.fs as pafs

    if "://" in path:
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def save_setup(path: str, setup: dict) -> None:
    fs, base = _fs(path)
    fs.create_dir(base, recursive=True)
    tmp = f"{base}/.{SWEEP_FILE}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write((json.dumps(setup, indent=1) + "\n").encode())
    fs.move(tmp, f"{base}/{SWEEP_FILE}")


def load_setup(path: str) -> dict:
    fs, base = _fs(path)
    try:
        with fs.open_input_stream(f"{base}/{SWEEP_FILE}") as f:
            return json.loads(f.readall().decode())
    except (FileNotFoundError, OSError):
        raise UserError(f"{path}: not a sweep experiment (no {SWEEP_FILE})") from None


def _exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = _fs(path)
    return fs.get_file_info(base).type != pafs.FileType.NotFound


def _trainable(setup: dict):
    from ray import tune

    from .trainer import TRIAL_DRIVER_CPU, TRIAL_RESOURCES_ENV, search_trial

    return tune.with_resources(tune.with_parameters(search_trial, setup=setup),
                               {"CPU": TRIAL_DRIVER_CPU, **json.loads(os.environ.get(TRIAL_RESOURCES_ENV, "{}"))})


def _worker_env() -> dict:
    from .trainer import WORKER_ENV_KEYS

    return {k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}


def build_tuner(sweep: Sweep, setup: dict):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    base = SearchConfig(**setup["base_config"])
    if sweep.searcher == "optuna" and sweep.space:  # with nothing to sample, a plain generator
        search_alg = OptunaSearch(seed=sweep.seed)  # TPE; its study is saved with the experiment
    else:
        # Tune's max_concurrent_trials applies to Searchers only: the generator limits itself
        search_alg = BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.max_concurrent_trials)
    scheduler = None
    if sweep.scheduler:
        scheduler = ASHAScheduler(time_attr="global_epoch", max_t=base.num_stages * base.epochs, grace_period=sweep.scheduler["grace_period"],
                                  reduction_factor=sweep.scheduler["reduction_factor"])
    return tune.Tuner(
        _trainable(setup),
        param_space=param_space(sweep),
        tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, search_alg=search_alg, scheduler=scheduler, num_samples=sweep.num_samples,
                                    max_concurrent_trials=sweep.max_concurrent_trials,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(name=setup["name"], storage_path=setup["storage"],
                                  failure_config=tune.FailureConfig(max_failures=sweep.trial_retries),
                                  callbacks=[StoreResults(setup)], verbose=setup.get("verbose", 1)),
    )


def _prepare_driver() -> None:
    # Epochs that were not validated, and a diverged trial's report, carry no objective:
    # Tune's strict check would fail them. The objective's name is checked when parsing.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def run_sweep(sweep: Sweep, address: str | None = None, verbose: int = 1) -> dict:
    """Run a sweep to its end and store every trial; returns the experiment's summary."""
    from .results import experiment_path, storage_root

    storage = storage_root(sweep.storage)
    sweep.storage = storage
    name = sweep.name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep.name = name
    path = experiment_path(storage, name)
    if _exists(path):
        raise UserError(f"{path}: experiment exists (continue it with --resume {name}, or choose another --name)")
    base = sweep.base_config()
    _prepare_driver()
    started = connect_ray(address, sweep)
    try:
        gpus = gpus_for(sweep, to_dict(base))
        setup = {"name": name, "storage": storage, "experiment_path": path, "sweep": sweep.to_dict(),
                 "base_config": to_dict(base), "gpus_per_trial": gpus, "cpus_per_trial": sweep.cpus_per_trial,
                 "max_failures": sweep.max_failures, "worker_env": _worker_env(),
                 "local_runs": _local_runs(storage, name), "verbose": verbose}
        save_setup(path, setup)
        if verbose:
            announce_dashboard()
        build_tuner(sweep, setup).fit()
        reconcile(storage, name, path, setup)
    finally:
        if started:
            import ray

            ray.shutdown()
    return summary(storage, name)


def _local_runs(storage: str, name: str) -> str | None:
    if "://" not in storage:
        return None
    import tempfile

    return str(Path(tempfile.gettempdir()) / "pdarts-ray-runs" / name)


def locate_experiment(name_or_path: str, storage: str | None = None) -> str:
    from .results import locate

    path = locate(name_or_path, storage)
    if not _exists(path):
        raise UserError(f"{path}: no such experiment")
    return path


def resume_sweep(name_or_path: str, storage: str | None = None, address: str | None = None,
                 verbose: int = 1) -> dict:
    """Continue an interrupted sweep: finished trials stay as they are, unfinished ones
    continue from their last epoch checkpoints, missing rows are written."""
    from ray import tune

    path = locate_experiment(name_or_path, storage)
    setup = load_setup(path)
    setup["verbose"] = verbose
    sweep = Sweep(**setup["sweep"])
    if _experiment_state_missing(path):
        raise UserError(f"{path}: the sweep stopped before Ray Tune saved its state; start it again under a new name")
    _prepare_driver()
    started = connect_ray(address, sweep)
    try:
        if verbose:
            announce_dashboard()
        tuner = tune.Tuner.restore(path, trainable=_trainable(setup), resume_unfinished=True, resume_errored=False,
                                   restart_errored=False)
        tuner.fit()
        reconcile(setup["storage"], setup["name"], path, setup)
    finally:
        if started:
            import ray

            ray.shutdown()
    return summary(setup["storage"], setup["name"])


def _experiment_state_missing(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = _fs(path)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return not any(i.base_name.startswith("experiment_state") for i in infos)


# ---------------------------------------------------------------- results

def _trial_outcome(last: dict, errored: bool, error_text: str | None) -> tuple[str, str | None]:
    if errored:
        lines = [ln.strip() for ln in (error_text or "").strip().splitlines() if ln.strip()]
        return "failed", (lines[-1] if lines else "the trial failed")[:500]
    if last.get("failure"):
        return "failed", str(last["failure"])
    if last.get("search_done"):
        return "finished", None
    return "failed", (f"stopped early by the scheduler (ASHA) after global epoch {last['global_epoch']}"
                      if "global_epoch" in last else "ended without a result")


def store_trial(storage: str, name: str, setup: dict, trial_id: str, sampled: dict, last: dict,
                errored: bool, error_text: str | None = None) -> bool:
    """Write a trial's row (once): finished with its result and genotypes, or failed with a reason."""
    from .results import has_trial, trial_row, write_trial

    if has_trial(storage, name, trial_id):
        return False
    status, failure = _trial_outcome(last or {}, errored, error_text)
    config = trial_config(setup["base_config"], sampled, setup["cpus_per_trial"])
    result = json.loads(last["result_json"]) if status == "finished" else None
    genotypes = json.loads(last["genotypes_json"]) if status == "finished" else None
    finished = last.get("timestamp") if last else None
    started = finished - last["time_total_s"] if finished and "time_total_s" in last else None
    row = trial_row(name, trial_id, status, config, result, genotypes, failure=failure, started=started,
                    finished=finished or time.time())
    return write_trial(storage, name, row)


def _sampled(config: dict, sweep_space: dict) -> dict:
    return {k: v for k, v in (config or {}).items() if k in sweep_space}


try:
    from ray.tune import Callback as _TuneCallback
except ImportError:  # the core and the CLI's other commands work without Ray
    _TuneCallback = object


class StoreResults(_TuneCallback):
    """On the driver: epoch rows as they arrive, the trial row when a trial ends."""

    def __init__(self, setup: dict):
        self.storage, self.name = setup["storage"], setup["name"]
        self.trial_setup = {k: setup[k] for k in ("base_config", "cpus_per_trial")}
        self.space = setup["sweep"]["space"]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from .results import write_epochs

        if "global_epoch" in result and "epoch" in result:
            write_epochs(self.storage, self.name, trial.trial_id, [result])

    def on_trial_complete(self, iteration, trials, trial, **info):
        store_trial(self.storage, self.name, self.trial_setup, trial.trial_id, _sampled(trial.config, self.space),
                    trial.last_result, errored=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        store_trial(self.storage, self.name, self.trial_setup, trial.trial_id, _sampled(trial.config, self.space),
                    trial.last_result, errored=True, error_text=_error_text(trial))


def _error_text(trial) -> str | None:
    try:
        return trial.get_error()
    except Exception:  # an unreadable error file still leaves the trial failed
        return None


def _checkpoint_metrics(last: dict) -> list[dict]:
    """The metric lines carried by a trial's last reported checkpoint."""
    from ray.train import Checkpoint

    from .checkpoint import read_jsonl
    from .search import METRICS_FILE

    path = (last or {}).get("checkpoint_path")
    if not path:
        return []
    try:
        with Checkpoint(path).as_directory() as folder:
            return read_jsonl(Path(folder) / METRICS_FILE)
    except (OSError, FileNotFoundError):
        return []


def reconcile(storage: str, name: str, path: str, setup: dict) -> dict:
    """Write the rows still missing for every trial that ended: its trial row and the
    epochs its last checkpoint holds that the store lacks. Returns counts."""
    from ray.tune import ExperimentAnalysis

    from .results import read_epochs, write_epochs

    analysis = ExperimentAnalysis(path)
    stored = {(r["trial_id"], r["stage"], r["epoch"]) for r in
              read_epochs(path).select(["trial_id", "stage", "epoch"]).to_pylist()} if _has_epochs(path) else set()
    space = setup["sweep"]["space"]
    counts = {"trials": 0, "epochs": 0}
    for trial in analysis.trials:
        if trial.status not in ("TERMINATED", "ERROR"):
            continue
        last = trial.last_result or {}
        missing = [r for r in _checkpoint_metrics(last) if (trial.trial_id, r["stage"], r["epoch"]) not in stored]
        if missing:
            write_epochs(storage, name, trial.trial_id, missing)
            counts["epochs"] += len(missing)
        errored = trial.status == "ERROR"
        if store_trial(storage, name, setup, trial.trial_id, _sampled(trial.config, space), last, errored,
                       _error_text(trial) if errored else None):
            counts["trials"] += 1
    return counts


def _has_epochs(path: str) -> bool:
    import pyarrow.fs as pafs

    from .results import EPOCHS_DIR

    fs, base = _fs(path)
    return fs.get_file_info(f"{base}/{EPOCHS_DIR}").type == pafs.FileType.Directory


def summary(storage: str, name: str) -> dict:
    from .results import experiment_path, read_trials

    path = experiment_path(storage, name)
    try:
        rows = read_trials(path).to_pylist()
    except UserError:
        rows = []
    return {"name": name, "path": path, "trials": rows, "m_values": load_setup(path)["sweep"].get("m_values")}
