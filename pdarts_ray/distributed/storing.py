"""A sweep's rows in the results store, each trial stored exactly once.

Rows arrive three ways, so that each trial is stored once even when the driver dies at a
bad moment: a Tune callback (`StoreResults`) writes epoch rows as results arrive and the
trial row when a trial ends, and after every fit (and every resume) a reconciliation pass
writes whatever rows are still missing from the experiment's state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ray.tune import Callback

from ..results.files import filesystem
from .definition import trial_config
from .experiment import load_setup

# ---------------------------------------------------------------- results


def _trial_outcome(last: dict, errored: bool, error_text: str | None) -> tuple[str, str | None]:
    if errored:
        lines = [ln.strip() for ln in (error_text or "").strip().splitlines() if ln.strip()]
        return "failed", (lines[-1] if lines else "the trial failed")[:500]
    if last.get("failure"):
        return "failed", str(last["failure"])
    if last.get("search_done"):
        return "finished", None
    return "failed", (
        f"stopped early by the scheduler (ASHA) after global epoch {last['global_epoch']}"
        if "global_epoch" in last
        else "ended without a result"
    )


def store_trial(
    storage: str,
    name: str,
    setup: dict,
    trial_id: str,
    sampled: dict,
    last: dict,
    errored: bool,
    error_text: str | None = None,
) -> bool:
    """Write a trial's row (once): finished with its result and genotypes, or failed with a reason."""
    from ..results import has_trial, trial_row, write_trial

    if has_trial(storage, name, trial_id):
        return False
    status, failure = _trial_outcome(last or {}, errored, error_text)
    config = trial_config(setup["base_config"], sampled, setup["cpus_per_trial"])
    result = json.loads(last["result_json"]) if status == "finished" else None
    genotypes = json.loads(last["genotypes_json"]) if status == "finished" else None
    finished = last.get("timestamp") if last else None
    started = finished - last["time_total_s"] if finished and "time_total_s" in last else None
    row = trial_row(
        name,
        trial_id,
        status,
        config,
        result,
        genotypes,
        failure=failure,
        started=started,
        finished=finished or time.time(),
        workers=setup.get("workers_per_trial", 1),
    )
    return write_trial(storage, name, row)


def _sampled(config: dict, sweep_space: dict) -> dict:
    return {k: v for k, v in (config or {}).items() if k in sweep_space}


class StoreResults(Callback):
    """On the driver: epoch rows as they arrive, the trial row when a trial ends."""

    def __init__(self, setup: dict):
        self.storage, self.name = setup["storage"], setup["name"]
        self.trial_setup = {
            k: setup[k] for k in ("base_config", "cpus_per_trial", "workers_per_trial") if k in setup
        }
        self.space = setup["sweep"]["space"]

    def on_trial_result(self, iteration, trials, trial, result, **info):
        from ..results import write_epochs

        if "global_epoch" in result and "epoch" in result:
            write_epochs(self.storage, self.name, trial.trial_id, [result])

    def on_trial_complete(self, iteration, trials, trial, **info):
        store_trial(
            self.storage,
            self.name,
            self.trial_setup,
            trial.trial_id,
            _sampled(trial.config, self.space),
            trial.last_result,
            errored=False,
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        store_trial(
            self.storage,
            self.name,
            self.trial_setup,
            trial.trial_id,
            _sampled(trial.config, self.space),
            trial.last_result,
            errored=True,
            error_text=_error_text(trial),
        )


def _error_text(trial) -> str | None:
    try:
        return trial.get_error()
    except Exception:  # an unreadable error file still leaves the trial failed
        return None


def _checkpoint_metrics(last: dict, storage: str) -> list[dict]:
    """The metric lines carried by a trial's last reported checkpoint. Ray reports its path
    without the storage's scheme: it is read through the storage's own filesystem."""
    import pyarrow as pa
    from ray.train import Checkpoint

    from ..core.checkpoint import read_jsonl
    from ..core.run_folder import METRICS_FILE

    path = (last or {}).get("checkpoint_path")
    if not path:
        return []
    try:
        fs = filesystem(storage)[0] if "://" in storage else None
        with Checkpoint(path, filesystem=fs).as_directory() as folder:
            return read_jsonl(Path(folder) / METRICS_FILE)
    except (OSError, FileNotFoundError, pa.ArrowException):
        return []


def reconcile(storage: str, name: str, path: str, setup: dict) -> dict:
    """Write the rows still missing for every trial that ended: its trial row and the
    epochs its last checkpoint holds that the store lacks. Returns counts."""
    from ray.tune import ExperimentAnalysis

    from ..results import read_epochs, write_epochs

    analysis = ExperimentAnalysis(path)
    stored = (
        {
            (r["trial_id"], r["stage"], r["epoch"])
            for r in read_epochs(path).select(["trial_id", "stage", "epoch"]).to_pylist()
        }
        if _has_epochs(path)
        else set()
    )
    space = setup["sweep"]["space"]
    counts = {"trials": 0, "epochs": 0}
    for trial in analysis.trials:
        if trial.status not in ("TERMINATED", "ERROR"):
            continue
        last = trial.last_result or {}
        missing = [
            r
            for r in _checkpoint_metrics(last, storage)
            if (trial.trial_id, r["stage"], r["epoch"]) not in stored
        ]
        if missing:
            write_epochs(storage, name, trial.trial_id, missing)
            counts["epochs"] += len(missing)
        errored = trial.status == "ERROR"
        if store_trial(
            storage,
            name,
            setup,
            trial.trial_id,
            _sampled(trial.config, space),
            last,
            errored,
            _error_text(trial) if errored else None,
        ):
            counts["trials"] += 1
    return counts


def _has_epochs(path: str) -> bool:
    import pyarrow.fs as pafs

    from ..results import EPOCHS_DIR

    fs, base = filesystem(path)
    return fs.get_file_info(f"{base}/{EPOCHS_DIR}").type == pafs.FileType.Directory


def summary(storage: str, name: str) -> dict:
    from ..results import experiment_path, read_trials

    path = experiment_path(storage, name)
    rows = read_trials(path, skip_unreadable=True).to_pylist()  # a damaged row is named, the others shown
    return {"name": name, "path": path, "trials": rows, "m_values": load_setup(path)["sweep"].get("m_values")}
