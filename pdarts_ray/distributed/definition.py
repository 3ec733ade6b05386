"""A sweep definition: a base config, a search space over config keys, the objective, the
searcher (Optuna's TPE or a grid), an optional ASHA scheduler and the resources per trial.

`parse_sweep` validates every value of the space against SearchConfig before anything
starts, with one-line errors naming the key. M (`skip_connects`) is read off every finished
search for every M, so a space over it is taken out of Tune's space: it names the M values
the sweep's tables show. Imports no Ray: the CLI checks a definition before Ray starts.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..core.config import SEARCH_PRESETS, SearchConfig, apply_overrides, from_dict, read_config_file, to_dict
from ..core.errors import UserError
from ..core.rows import EPOCH_ROW

SPACE_KINDS = ("choice", "grid", "uniform", "loguniform", "randint")
SEARCHERS = ("optuna", "grid")


EPOCH_METRICS = EPOCH_ROW.names  # every trial reports each epoch's row
FINAL_METRICS = ("best_valid_acc", "final_valid_acc", "skip_connects_before_refinement", "search_seconds")
DEF_KEYS = (
    "name",
    "base",
    "space",
    "objective",
    "searcher",
    "seed",
    "scheduler",
    "num_samples",
    "max_concurrent_trials",
    "gpus_per_trial",
    "cpus_per_trial",
    "workers_per_trial",
    "sync_bn",
    "max_failures",
    "trial_retries",
    "storage",
    "mlflow",
)


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
    gpus_per_trial: float | str = "auto"  # per worker
    cpus_per_trial: int = 1  # per worker
    workers_per_trial: int = (
        1  # data-parallel workers of each trial's search (a run option: not in its config)
    )
    sync_bn: bool = True  # with several workers: BatchNorm over the global batch
    max_failures: int = 2  # Ray Train: worker failures per trial, each resumed from the last epoch
    trial_retries: int = 1  # Ray Tune: restarts of a trial whose driver died
    storage: str | None = None
    name: str | None = None
    mlflow: str | None = None  # an MLflow tracking URI every trial is logged to (distributed/tracking.py)

    def base_config(self, preset_values: dict | None = None) -> SearchConfig:
        """The base: the definition's keys over its preset (or over `preset_values`, one of the
        preset's earlier versions)."""
        preset = self.base["preset"]
        if preset not in SEARCH_PRESETS:
            raise UserError(
                f"sweep: base.preset: unknown preset '{preset}' (choose from {', '.join(SEARCH_PRESETS)})"
            )
        values = apply_overrides(
            SearchConfig, {}, preset_values or SEARCH_PRESETS[preset], f"preset {preset}"
        )
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
        options.append(
            values
            if kind in ("choice", "grid")
            else [values[0], values[1] - 1]
            if kind == "randint"
            else values
        )
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
        raise UserError(
            f"sweep: objective: metric: unknown metric {sweep.metric!r} "
            f"(reported: {', '.join(EPOCH_METRICS + FINAL_METRICS)})"
        )
    sweep.mode = objective.get("mode", "max")
    if sweep.mode not in ("max", "min"):
        raise UserError(f"sweep: objective: mode: must be max or min, got {sweep.mode!r}")
    sweep.seed = _int(data.get("seed", 0), "sweep: seed", 0)
    sweep.num_samples = _int(data.get("num_samples", 1), "sweep: num_samples", 1)
    sweep.max_concurrent_trials = _int(
        data.get("max_concurrent_trials", 2), "sweep: max_concurrent_trials", 1
    )
    sweep.cpus_per_trial = _int(data.get("cpus_per_trial", 1), "sweep: cpus_per_trial", 1)
    sweep.workers_per_trial = _int(data.get("workers_per_trial", 1), "sweep: workers_per_trial", 1)
    sweep.sync_bn = data.get("sync_bn", True)
    if not isinstance(sweep.sync_bn, bool):
        raise UserError(f"sweep: sync_bn: must be true or false, got {sweep.sync_bn!r}")
    _check_batches(base_values, sweep.space, sweep.workers_per_trial)
    sweep.max_failures = _int(data.get("max_failures", 2), "sweep: max_failures", 0)
    sweep.trial_retries = _int(data.get("trial_retries", 1), "sweep: trial_retries", 0)
    sweep.gpus_per_trial = parse_gpus(data.get("gpus_per_trial", "auto"), "sweep: gpus_per_trial")
    sweep.scheduler = _parse_scheduler(data.get("scheduler"), sweep, base_values)
    storage = data.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise UserError("sweep: storage: must be a path or URI")
    sweep.storage = storage
    if data.get("mlflow") is not None:
        from ..results.tracking import check_tracking_uri

        sweep.mlflow = check_tracking_uri(data["mlflow"], "sweep: mlflow")
    name = data.get("name")
    if name is not None:
        from ..results.files import check_name

        check_name(name, "sweep: name")
    sweep.name = name
    return sweep


def _check_batches(base: dict, space: dict, workers: int) -> None:
    """Every trial's global batch must divide among its workers."""
    if workers == 1:
        return
    kind, values = (
        next(iter(space["batch_size"].items())) if "batch_size" in space else ("grid", [base["batch_size"]])
    )
    values = list(range(values[0], values[1])) if kind == "randint" else values
    bad = [b for b in values if b % workers]
    if bad:
        raise UserError(f"sweep: batch_size: {bad[0]} does not divide among workers_per_trial ({workers})")


def parse_saved_sweep(saved, source: str) -> Sweep:
    """A sweep saved in an experiment's `sweep.json` (its fields), validated as strictly as a
    new definition: any field a definition may produce is accepted, nothing else."""
    fields_ = {f.name for f in fields(Sweep)}
    if not isinstance(saved, dict):
        raise UserError(f"{source}: sweep: must be a mapping")
    unknown = set(saved) - fields_
    if unknown:
        raise UserError(f"{source}: sweep: unknown field '{sorted(unknown)[0]}'")
    missing = {"base"} - set(saved)
    if missing:
        raise UserError(f"{source}: sweep: missing field 'base'")
    # space and objective are saved in another form, rebuilt below
    definition = {
        k: saved[k] for k in DEF_KEYS if k not in ("space", "objective") and saved.get(k) is not None
    }
    space = saved.get("space") or {}
    if not isinstance(space, dict):
        raise UserError(f"{source}: sweep: space: must be a mapping")
    if saved.get("m_values") is not None:
        kind = "grid" if saved.get("searcher", "optuna") == "grid" else "choice"
        space = {**space, "skip_connects": {kind: saved["m_values"]}}
    if space:
        definition["space"] = space
    definition["objective"] = {"metric": saved.get("metric", "valid_acc"), "mode": saved.get("mode", "max")}
    try:
        return parse_sweep(definition, f"{source}: sweep")
    except UserError as err:
        raise UserError(f"{source}: {str(err).removeprefix('sweep: ')}") from None


def _parse_scheduler(value, sweep: Sweep, base: dict) -> dict | None:
    if value is None or value is False:
        return None
    if value == "asha":
        value = {"type": "asha"}
    if (
        not isinstance(value, dict)
        or value.get("type") != "asha"
        or set(value) - {"type", "grace_period", "reduction_factor"}
    ):
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
        raise UserError(
            f"sweep: scheduler: ASHA compares trials epoch by epoch; the objective "
            f"{sweep.metric!r} is only reported at the end"
        )
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
        raise UserError(
            f"{what}: a search uses one GPU: give a share in 0..1 (0.25: four trials per GPU), got {value}"
        )
    return float(value)


def load_sweep(path: str | Path) -> Sweep:
    return parse_sweep(read_config_file(path), str(path))


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


def apply_flags(
    definition: dict,
    preset=None,
    num_samples=None,
    concurrent=None,
    gpus_per_trial=None,
    storage=None,
    name=None,
    workers_per_trial=None,
    mlflow=None,
) -> dict:
    """Command-line flags over a sweep definition's mapping (shared with the ablation scripts)."""
    out = dict(definition)
    if preset:
        base = out.get("base", {})
        out["base"] = {**({"preset": base} if isinstance(base, str) else base), "preset": preset}
    for key, value in (
        ("num_samples", num_samples),
        ("max_concurrent_trials", concurrent),
        ("gpus_per_trial", gpus_per_trial),
        ("storage", storage),
        ("name", name),
        ("workers_per_trial", workers_per_trial),
        ("mlflow", mlflow),
    ):
        if value is not None:
            out[key] = value
    return out
