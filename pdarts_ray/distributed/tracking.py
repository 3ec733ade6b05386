"""A sweep logged to MLflow (`mlflow: URI` in its definition, or `sweep --mlflow URI`):
Ray Tune's MLflowLoggerCallback, run by the sweep's driver, with what makes its runs
read like a single search's (results/tracking.py):

- one MLflow run per trial in the experiment named after the sweep, its params the trial's
  whole search config (not only the keys the sweep samples);
- every epoch's report at step `global_epoch`, so that a trial continued after a failure or
  a resumed sweep logs each epoch at the same step again rather than further along;
- the final cells as `genotype.json` and every M's as `genotypes_by_M.json` (artifacts);
- a resumed sweep finds each trial's run by its trial id and continues it.
"""

from __future__ import annotations

import json
import math
import time

from mlflow.entities import Metric, Param
from ray.air.integrations.mlflow import MLflowLoggerCallback

from ..results.tracking import check_tracking_uri, experiment_id, mlflow_client, search_params
from .definition import trial_config

TRIAL_TAG = "pdarts_ray.trial_id"
# what a trial reports that is text or bookkeeping, not a metric to plot
NOT_METRICS = ("genotype", "result_json", "genotypes_json", "stage_genotype", "failure", "search_done")


class SweepToMlflow(MLflowLoggerCallback):
    def __init__(self, setup: dict):
        uri = check_tracking_uri(setup["sweep"]["mlflow"], "sweep: mlflow")
        super().__init__(
            tracking_uri=uri, experiment_name=setup["name"], tags={"pdarts_ray.experiment": setup["name"]}
        )
        self.setup_of_sweep = setup
        self._client = None

    @property
    def client(self):
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    def __getstate__(self) -> dict:  # Tune saves its callbacks with the experiment; a client is not state
        return dict(self.__dict__, _client=None)

    def setup(self, *args, **kwargs) -> None:
        experiment_id(self.client, self.experiment_name)  # ours first: where its artifacts go
        super().setup(*args, **kwargs)

    def log_trial_start(self, trial) -> None:
        if trial not in self._trial_runs:
            self._trial_runs[trial] = self._run_of(trial)
        run_id = self._trial_runs[trial]
        config = trial_config(
            self.setup_of_sweep["base_config"], trial.config, self.setup_of_sweep["cpus_per_trial"]
        )
        logged = self.client.get_run(run_id).data.params
        params = [Param(k, v) for k, v in search_params(config).items() if k not in logged]  # written once
        if params:
            self.client.log_batch(run_id, params=params)

    def _run_of(self, trial) -> str:
        experiment = experiment_id(self.client, self.experiment_name)
        found = self.client.search_runs([experiment], f"tags.`{TRIAL_TAG}` = '{trial.trial_id}'")
        if found:
            self.client.update_run(found[0].info.run_id, status="RUNNING")
            return found[0].info.run_id
        run = self.client.create_run(
            experiment,
            run_name=str(trial),
            tags={**self.tags, "trial_name": str(trial), TRIAL_TAG: trial.trial_id},
        )
        return run.info.run_id

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        step = int(result.get("global_epoch", iteration))
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if k not in NOT_METRICS
            and isinstance(v, (int, float))
            and not isinstance(v, bool)
            and math.isfinite(v)
        ]
        self.client.log_batch(self._trial_runs[trial], metrics=metrics)

    def log_trial_end(self, trial, failed: bool = False) -> None:
        last = trial.last_result or {}
        run_id = self._trial_runs[trial]
        if last.get("genotype"):
            self.client.log_dict(run_id, json.loads(last["genotype"]), "genotype.json")
            by_m = {
                k.removeprefix("genotype_m"): json.loads(v)
                for k, v in last.items()
                if k.startswith("genotype_m")
            }
            self.client.log_dict(run_id, by_m, "genotypes_by_M.json")
        if last.get("failure"):
            self.client.set_tag(run_id, "pdarts_ray.failure", str(last["failure"])[:5000])
        self.client.set_terminated(run_id, "FAILED" if failed or last.get("failure") else "FINISHED")
