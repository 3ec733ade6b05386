"""Sweeps: many searches as one Ray Tune experiment, stored in the results store.

`run_sweep` saves the definition and the resolved base config in the experiment folder
(`sweep.json`), and fits a Tuner whose trials are `trial.search_trial` (one Ray Train run
each). `resume_sweep` continues an interrupted sweep from that folder alone
(`Tuner.restore`). Trials are named after their sampled values, then their id.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import time
from pathlib import Path

from ..core.config import SearchConfig, to_dict
from ..core.errors import SweepInterrupted, UserError
from ..core.version import VERSION
from ..core.waiting import wait_policy_env
from .connect import announce_dashboard, ray_connected
from .definition import Sweep
from .experiment import (
    SWEEP_FILE,
    claim_experiment,
    exists,
    load_setup,
    locate_experiment,
    save_setup,
    tune_state_missing,
)
from .packing import gpus_for
from .storing import StoreResults, reconcile, summary
from .testing import trial_resources, worker_env

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


# ---------------------------------------------------------------- the experiment


def _trainable(setup: dict):
    from ray import tune

    from .trial import TRIAL_DRIVER_CPU, search_trial

    # the wait policy as this driver sees it: the trials' processes may not (a cluster joined
    # without it), and it is not part of the saved setup
    return tune.with_resources(
        tune.with_parameters(search_trial, setup=setup, policy=wait_policy_env()),
        {"CPU": TRIAL_DRIVER_CPU, **trial_resources()},
    )


def _tracking(setup: dict) -> list:
    if not setup["sweep"].get("mlflow"):
        return []
    from .tracking import SweepToMlflow

    return [SweepToMlflow(setup)]


def search_algorithm(sweep: Sweep):
    """The sweep's searcher, holding its concurrency limit: the one place the limit is given.
    Tune's own `max_concurrent_trials` wraps a Searcher in a limiter too, but beside a
    generator it is ignored, with a warning."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    if sweep.searcher == "optuna" and sweep.space:  # with nothing to sample, a plain generator
        # TPE; its study is saved with the experiment
        return ConcurrencyLimiter(OptunaSearch(seed=sweep.seed), max_concurrent=sweep.max_concurrent_trials)
    return BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.max_concurrent_trials)


def build_tuner(sweep: Sweep, setup: dict):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    base = SearchConfig(**setup["base_config"])
    scheduler = None
    if sweep.scheduler:
        scheduler = ASHAScheduler(
            time_attr="global_epoch",
            max_t=base.num_stages * base.epochs,
            grace_period=sweep.scheduler["grace_period"],
            reduction_factor=sweep.scheduler["reduction_factor"],
        )
    return tune.Tuner(
        _trainable(setup),
        param_space=param_space(sweep),
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode=sweep.mode,
            search_alg=search_algorithm(sweep),
            scheduler=scheduler,
            num_samples=sweep.num_samples,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=setup["name"],
            storage_path=setup["storage"],
            failure_config=tune.FailureConfig(max_failures=sweep.trial_retries),
            callbacks=[StoreResults(setup), *_tracking(setup)],
            verbose=setup.get("verbose", 1),
        ),
    )


def restore_tuner(path: str, setup: dict):
    """Tune's state of an interrupted sweep. Sweeps saved before the searcher alone held the
    limit gave Tune a copy too, which it ignores beside a generator (with a warning): dropped."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tuner = tune.Tuner.restore(
        path, trainable=_trainable(setup), resume_unfinished=True, resume_errored=False, restart_errored=False
    )
    config = getattr(getattr(tuner, "_local_tuner", None), "_tune_config", None)  # None under Ray Client
    if config is not None and isinstance(config.search_alg, BasicVariantGenerator):
        config.max_concurrent_trials = None
    return tuner


def sweep_cpus(sweep: Sweep) -> int:
    """The logical CPUs a local Ray needs so that `max_concurrent_trials` trials run side by side."""
    from .trial import TRIAL_DRIVER_CPU

    per_trial = sweep.cpus_per_trial * sweep.workers_per_trial + TRIAL_DRIVER_CPU
    return math.ceil(sweep.max_concurrent_trials * per_trial)


def _prepare_driver() -> None:
    # Epochs that were not validated, and a diverged trial's report, carry no objective:
    # Tune's strict check would fail them. The objective's name is checked when parsing.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")


def run_sweep(sweep: Sweep, address: str | None = None, verbose: int = 1) -> dict:
    """Run a sweep to its end and store every trial; returns the experiment's summary. The
    experiment is claimed first: a second driver with the same name stops with one line."""
    from ..results import experiment_path, storage_root

    storage = storage_root(sweep.storage)
    sweep.storage = storage
    name = sweep.name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep.name = name
    path = experiment_path(storage, name)
    if exists(path):
        raise UserError(
            f"{path}: experiment exists (continue it with --resume {name}, or choose another --name)"
        )
    base = sweep.base_config()
    with claim_experiment(path, "pdarts-ray sweep"):
        if exists(f"{path}/{SWEEP_FILE}"):  # a driver with the same name got here first and has ended
            raise UserError(
                f"{path}: experiment exists (continue it with --resume {name}, or choose another --name)"
            )
        return _run(sweep, setup_of(sweep, name, storage, path, base, verbose), address, verbose)


def setup_of(sweep: Sweep, name: str, storage: str, path: str, base, verbose: int) -> dict:
    """What `sweep.json` holds, all a resume needs (the GPU share is filled in once Ray runs)."""
    return {
        "name": name,
        "storage": storage,
        "experiment_path": path,
        "sweep": sweep.to_dict(),
        "base_config": to_dict(base),
        "gpus_per_trial": 0.0,
        "cpus_per_trial": sweep.cpus_per_trial,
        "workers_per_trial": sweep.workers_per_trial,
        "sync_bn": sweep.sync_bn,
        "max_failures": sweep.max_failures,
        "worker_env": worker_env(),
        "local_runs": _local_runs(storage, name),
        "verbose": verbose,
        "version": VERSION,
    }


def _run(sweep: Sweep, setup: dict, address: str | None, verbose: int) -> dict:
    path, storage, name = setup["experiment_path"], setup["storage"], setup["name"]
    _prepare_driver()
    with ray_connected(address, sweep_cpus(sweep)):
        setup["gpus_per_trial"] = gpus_for(sweep, setup["base_config"])
        save_setup(path, setup)
        if verbose:
            announce_dashboard()
        trials = _fit(build_tuner(sweep, setup))
        reconcile(storage, name, path, setup)
        _end_if_interrupted(trials, setup)
    return summary(storage, name)


def _fit(tuner) -> int:
    """Fit the tuner; the number of trials Ray Tune holds. (On Ctrl-C Tune saves its state and
    returns without raising, its stopped trials marked terminated like finished ones.)"""
    return len(tuner.fit())


def _end_if_interrupted(trials: int, setup: dict) -> None:
    """Every trial that ended, finished or failed, has its row by now (reconciled): fewer rows
    than trials means Tune was stopped with trials still to run, which continue on resume."""
    from ..results import read_trials

    if read_trials(setup["storage"], setup["name"]).num_rows < trials:
        command = ["pdarts-ray", "sweep", "--resume", setup["name"], "--storage", setup["storage"]]
        raise SweepInterrupted(setup["name"], f"continue with: {shlex.join(command)}")


def _local_runs(storage: str, name: str) -> str | None:
    if "://" not in storage:
        return None
    import tempfile

    return str(Path(tempfile.gettempdir()) / "pdarts-ray-runs" / name)


def resume_sweep(
    name_or_path: str,
    storage: str | None = None,
    address: str | None = None,
    verbose: int = 1,
    take_over: bool = False,
) -> dict:
    """Continue an interrupted sweep: finished trials stay as they are, unfinished ones
    continue from their last epoch checkpoints, missing rows are written. The experiment is
    claimed first: a resume while another driver runs it stops with one line."""
    path = locate_experiment(name_or_path, storage)
    setup = load_setup(path)
    setup["verbose"] = verbose
    sweep = Sweep(**setup["sweep"])  # validated by load_setup
    if tune_state_missing(path):
        raise UserError(
            f"{path}: the sweep stopped before Ray Tune saved its state; start it again under a new name"
        )
    with claim_experiment(path, "pdarts-ray sweep --resume", take_over):
        return _resume(sweep, setup, path, address, verbose)


def _resume(sweep: Sweep, setup: dict, path: str, address: str | None, verbose: int) -> dict:
    _prepare_driver()
    with ray_connected(address, sweep_cpus(sweep)):
        if verbose:
            announce_dashboard()
        trials = _fit(restore_tuner(path, setup))
        reconcile(setup["storage"], setup["name"], path, setup)
        _end_if_interrupted(trials, setup)
    return summary(setup["storage"], setup["name"])
