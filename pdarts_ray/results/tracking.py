"""Searches logged to MLflow (`pdarts-ray search --mlflow URI`; sweeps log through Ray's
callback in distributed/tracking.py, with the same names).

One MLflow run per search: the resolved config as params, every epoch's metrics at step
`global_epoch` (epochs counted across stages), the final scalars, and `genotype.json` (the
final cells) and `genotypes.json` (every stage's and every M's) as artifacts. The run's id
is kept in the run folder, so a resumed search logs into the same MLflow run. MLflow is
an optional extra (`pip install 'pdarts-ray[mlflow]'`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..core.errors import UserError
from ..core.hooks import SearchHooks
from ..core.rows import EPOCH_ROW
from ..core.run_folder import GENOTYPE_FILE, GENOTYPES_FILE, RunFolder

TRACKING_FILE = "mlflow.json"
# an epoch's metrics are logged at step `global_epoch`, which also tells its epoch
EPOCH_KEYS = tuple(name for name in EPOCH_ROW.names if name not in ("epoch", "global_epoch"))


def mlflow_client(tracking_uri: str):
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise UserError("--mlflow: MLflow is not installed (pip install 'pdarts-ray[mlflow]')") from None
    return MlflowClient(tracking_uri=tracking_uri)


def check_tracking_uri(uri, what: str = "--mlflow") -> str:
    """A tracking URI: a server (`http(s)://...`, `databricks`), a local database
    (`sqlite:////abs/path/mlflow.db`) or a file store (`file:///abs/path`, or an absolute
    folder). Local places must be absolute: a relative one would be another place for every
    process of a sweep."""
    if not isinstance(uri, str) or not uri.strip():
        raise UserError(f"{what}: must be a tracking URI, got {uri!r}")
    if uri.startswith("sqlite:///"):
        if not uri.startswith("sqlite:////"):
            raise UserError(
                f"{what}: an SQLite file must be an absolute path (sqlite:////abs/path.db), got {uri!r}"
            )
    elif "://" not in uri and uri != "databricks" and not Path(uri).is_absolute():
        raise UserError(f"{what}: a folder must be an absolute path, got {uri!r}")
    return uri


def experiment_id(client, name: str) -> str:
    """The MLflow experiment `name`, made if new. With an SQLite database its artifacts go
    to `mlartifacts/` beside the database file (MLflow's default is the process's folder)."""
    found = client.get_experiment_by_name(name)
    if found:
        return found.experiment_id
    location = None
    uri = client.tracking_uri
    if uri.startswith("sqlite:////"):
        location = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def search_params(config: dict) -> dict[str, str]:
    """MLflow params are strings: lists as JSON (`[5, 11, 17]`), the rest as text."""
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in config.items()}


def final_metrics(result: dict) -> dict[str, float]:
    out = {
        k: float(result[k])
        for k in ("best_valid_acc", "final_valid_acc", "skip_connects_before_refinement")
        if result.get(k) is not None
    }
    if result.get("stage_seconds"):
        out["search_seconds"] = float(sum(result["stage_seconds"]))
    return out


def _entities():
    from mlflow.entities import Metric, Param

    return Metric, Param


class MlflowSearch(SearchHooks):
    """Hooks that log one search to MLflow; use as a context manager around the search, so
    that a search that stops with an error ends its run as FAILED. The run starts with the
    search's first stage (the run folder and its config exist by then)."""

    def __init__(self, tracking_uri: str, experiment: str, run_dir: Path):
        self.client = mlflow_client(check_tracking_uri(tracking_uri))
        self.experiment, self.run_dir = experiment, Path(run_dir)
        self.folder = RunFolder(run_dir)
        self.run_id: str | None = None
        self.finished = False

    def _start(self) -> str:
        saved = self.run_dir / TRACKING_FILE
        if saved.is_file():  # a resumed search continues its run
            run_id = json.loads(saved.read_text())["run_id"]
            self.client.update_run(run_id, status="RUNNING")
            self._log_missed_epochs(run_id)
            return run_id
        run = self.client.create_run(
            experiment_id(self.client, self.experiment),
            run_name=self.run_dir.name,
            tags={"pdarts_ray.run_dir": str(self.run_dir.resolve())},
        )
        config = self.folder.read_config()
        _, Param = _entities()
        self.client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in search_params(config).items()])
        saved.write_text(json.dumps({"tracking_uri": self.client.tracking_uri, "run_id": run.info.run_id}))
        return run.info.run_id

    def _log_missed_epochs(self, run_id: str) -> None:
        """Epochs the run folder holds but MLflow lacks: those whose process stopped between
        the epoch's checkpoint and its metrics reaching MLflow."""
        logged = {m.step for m in self.client.get_metric_history(run_id, "train_loss")}
        for row in self.folder.read_metrics():
            if row["global_epoch"] not in logged:
                self._log_epoch(run_id, row)

    def _log_epoch(self, run_id: str, metrics: dict) -> None:
        Metric, _ = _entities()
        step, now = int(metrics["global_epoch"]), int(time.time() * 1000)
        rows = [
            Metric(key, float(metrics[key]), now, step) for key in EPOCH_KEYS if metrics.get(key) is not None
        ]
        self.client.log_batch(run_id, metrics=rows)

    def on_stage_start(self, *args) -> None:
        if self.run_id is None:
            self.run_id = self._start()

    def on_epoch_end(self, metrics: dict, checkpoint) -> None:
        self._log_epoch(self.run_id, metrics)

    def on_search_end(self, result: dict) -> None:
        if not result:  # not the run's leader
            return
        if self.run_id is None:  # resumed after its last stage: nothing left but the end
            self.run_id = self._start()
        for key, value in final_metrics(result).items():
            self.client.log_metric(self.run_id, key, value)
        self.client.log_dict(self.run_id, result["genotype"], GENOTYPE_FILE)
        if self.folder.has(GENOTYPES_FILE):
            self.client.log_dict(self.run_id, self.folder.read_genotypes(), GENOTYPES_FILE)
        self.client.set_terminated(self.run_id, "FINISHED")
        self.finished = True

    def __enter__(self) -> MlflowSearch:
        return self

    def __exit__(self, kind, err, tb) -> None:
        if self.run_id is not None and not self.finished:
            self.client.set_terminated(self.run_id, "KILLED" if kind is KeyboardInterrupt else "FAILED")
