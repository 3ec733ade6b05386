"""One search trial as a Ray Train run inside a Ray Tune trial.

The Tune trial is a function trainable (`search_trial`) that builds a `TorchTrainer` (one
worker, or `workers_per_trial` data-parallel ones) and fits it; the Train run is named after
the trial id, so a trial Tune restarts (its driver process died, or the sweep was resumed)
finds its own checkpoints again. `TuneReportCallback` forwards every report of the worker to
Tune. A search over several workers outside a sweep (parallel_search.py) runs the same
worker (`run_folder_loop`) in the run folder its driver made.

The worker runs the core loop unchanged (`ProgressiveSearch`) with hooks that report:

- every epoch: the `metrics.jsonl` row (`global_epoch`, `skip_connects_now`,
  `peak_memory_bytes` included), with a checkpoint holding the core's resume state;
- the last epoch of a stage also carries `stage_genotype` (JSON text);
- the last epoch of the search also carries the final genotype for every M
  (`genotype_m0` .. `genotype_m8`, JSON text), `genotypes_json` and `result_json`
  (the run folder's files), and `search_done` = 1;
- every epoch also sets the trial's Ray gauges (`monitoring.TrialMetrics`: stage, epoch,
  accuracy, skip-connects, peak memory), tagged with the experiment and the trial's name;
- a diverged search (non-finite loss) reports only `failure`, and the trial ends
  without retries: the same config and seed would diverge again.

Values are scalars or JSON text; epochs that were not validated leave out
`valid_acc`/`valid_loss` instead of reporting null.

A worker that dies is restarted by Train's `FailureConfig`; the new worker continues
from the checkpoint of the last reported epoch (`ray.train.get_checkpoint()`),
which also carries the run's metric and alpha-trajectory lines, so it can continue
on another node with no access to the first worker's files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..core.checkpoint import CheckpointDir, read_jsonl
from ..core.config import SearchConfig, from_dict
from ..core.errors import SearchDiverged
from ..core.hooks import AllHooks
from ..core.parallel import Ranks
from ..core.progress import SearchProgress
from ..core.run_folder import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    GENOTYPES_FILE,
    METRICS_FILE,
    RESULT_FILE,
    TRAJECTORY_FILE,
)
from ..core.search import ProgressiveSearch, SearchHooks, check_out_dir
from .monitoring import trial_metrics
from .testing import fault_after_report
from .trainer import torch_trainer

# The Tune trial only waits on its Train run: a small share of a CPU, so that on two
# cores two trials (each with a 1-CPU Train worker) fit side by side.
TRIAL_DRIVER_CPU = 0.1
RUNS_FOLDER = "runs"
TRAIN_FOLDER = "train"
FINAL_FILES = (RESULT_FILE, GENOTYPES_FILE)


def train_run_name(trial_id: str) -> str:
    return f"train-trial_id={trial_id}"


def _clean(metrics: dict) -> dict:
    """Tune takes scalars: null values (epochs not validated) are left out."""
    return {k: v for k, v in metrics.items() if v is not None}


def final_fields(result: dict, genotypes: dict) -> dict:
    """What the last report adds: the result and the genotypes as JSON text, a few scalars."""
    out = {
        "search_done": 1,
        "genotype": json.dumps(result["genotype"]),
        "result_json": json.dumps(result),
        "genotypes_json": json.dumps(genotypes),
        "skip_connects_before_refinement": result["skip_connects_before_refinement"],
        "search_seconds": float(sum(result["stage_seconds"])),
    }
    for key in ("best_valid_acc", "final_valid_acc"):
        if result.get(key) is not None:
            out[key] = result[key]
    for m, genotype in genotypes["final_by_M"].items():
        out[f"genotype_m{m}"] = json.dumps(genotype)
    for i, peak in enumerate(result["peak_memory_bytes"]):
        out[f"peak_memory_bytes_stage{i + 1}"] = peak
    return out


class TrialReport(SearchHooks):
    """Reports through Ray Train: one report per epoch, each with a checkpoint."""

    def __init__(
        self,
        cfg: SearchConfig,
        run_dir: Path,
        monitor=None,
        leader: bool = True,
        after_report: Callable[[dict], None] | None = None,
    ):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        # every data-parallel rank reports each epoch (Ray Train waits for all); rank 0, the
        # leader, attaches the checkpoint and the run's files, and its metrics are the trial's
        self.leader = leader
        self.monitor = monitor  # monitoring.TrialMetrics: gauges set every epoch
        self.after_report = after_report  # a fault a test injects (testing.fault_after_report)
        self.pending: dict | None = None  # the last epoch of a stage waits for the stage's end
        self.pending_checkpoint: Path | None = None

    def _report(self, metrics: dict, checkpoint: Path | None, with_final_files: bool = False) -> None:
        import ray.train

        if not self.leader:
            ray.train.report(metrics)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                if checkpoint is not None and checkpoint.is_file():
                    shutil.copy2(checkpoint, folder / checkpoint.name)  # a CheckpointDir with one file
                names = (METRICS_FILE, TRAJECTORY_FILE) + (FINAL_FILES if with_final_files else ())
                for name in names:
                    if (self.run_dir / name).is_file():
                        shutil.copy2(self.run_dir / name, folder / name)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        if self.after_report is not None:
            self.after_report(metrics)

    def on_epoch_end(self, metrics: dict, checkpoint: Path) -> None:
        if self.monitor is not None:  # before the report, which waits for the stage's end on its last epoch
            self.monitor.record(metrics)
        if metrics["epoch"] == self.cfg.epochs - 1:
            self.pending, self.pending_checkpoint = _clean(metrics), checkpoint
            return
        self._report(_clean(metrics), checkpoint)

    def on_stage_end(self, summary: dict) -> None:
        self.pending = {**(self.pending or {}), "stage_genotype": json.dumps(summary["genotype"])}
        if summary["stage"] < self.cfg.num_stages:
            self._report(self.pending, self.pending_checkpoint)
            self.pending = None

    def on_search_end(self, result: dict) -> None:
        if not self.leader:
            self._report({**(self.pending or {}), "search_done": 1}, None)
            self.pending = None
            return
        if self.pending is None:  # resumed from the last epoch's checkpoint: its row is the last line
            rows = read_jsonl(self.run_dir / METRICS_FILE)
            self.pending = _clean(rows[-1]) if rows else {}
            self.pending_checkpoint = CheckpointDir(self.run_dir / CHECKPOINT_DIR).latest_path()
        genotypes = json.loads((self.run_dir / GENOTYPES_FILE).read_text())
        self._report(
            {**self.pending, **final_fields(result, genotypes)},
            self.pending_checkpoint,
            with_final_files=True,
        )
        self.pending = None

    def report_failure(self, reason: str) -> None:
        latest = CheckpointDir(self.run_dir / CHECKPOINT_DIR).latest_path() if self.leader else None
        self._report({"failure": reason}, latest)


def _reported_state() -> dict | None:
    """The core's state in Ray Train's latest checkpoint (None before the first report)."""
    import ray.train

    reported = ray.train.get_checkpoint()
    if reported is None:
        return None
    with reported.as_directory() as folder:
        checkpoints = CheckpointDir(Path(folder))
        return checkpoints.load() if checkpoints.latest_path() is not None else None


def _position(state: dict | None) -> tuple:
    return (-1, -1) if state is None else (int(state["stage"]), int(state["epoch"]))


# A search worker's start: from its loop's config, run folder and whether it is rank 0, the
# search's config and the state to continue from (None: from the beginning).
Start = Callable[[SearchConfig, Path, bool], tuple[SearchConfig, dict | None]]


def _trial_start(cfg: SearchConfig, run_dir: Path, leader: bool) -> tuple[SearchConfig, dict | None]:
    """A sweep's trial: Ray Train's latest checkpoint (its metric lines replace the folder's),
    or a fresh start in an emptied folder. Rank 0 alone touches the run folder."""
    import ray.train

    if not leader:
        return cfg, _reported_state()
    reported = ray.train.get_checkpoint()
    if reported is not None:
        with reported.as_directory() as folder:
            folder = Path(folder)
            if CheckpointDir(folder).latest_path() is not None:
                state = CheckpointDir(folder).load()
                if (run_dir / CONFIG_FILE).is_file():
                    saved = json.loads((run_dir / CONFIG_FILE).read_text())
                    cfg = from_dict(SearchConfig, saved, str(run_dir / CONFIG_FILE))
                else:  # continuing on a node that never held this run
                    if run_dir.exists():
                        shutil.rmtree(run_dir)
                    cfg = ProgressiveSearch.create(cfg, run_dir).cfg
                for name in (METRICS_FILE, TRAJECTORY_FILE):
                    if (folder / name).is_file():
                        shutil.copy2(folder / name, run_dir / name)
                return cfg, state
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a start that never reached its first report
    check_out_dir(run_dir)
    return ProgressiveSearch.create(cfg, run_dir).cfg, None


def _run_folder_start(cfg: SearchConfig, run_dir: Path, leader: bool) -> tuple[SearchConfig, dict | None]:
    """A run folder its driver made (`search --workers N`), with its saved config: the newer of
    Ray Train's latest checkpoint and the folder's own (a driver killed after the folder's was
    written)."""
    opened = ProgressiveSearch.open(run_dir)
    own = opened.checkpoints.load() if opened.checkpoints.latest_path() is not None else None
    return opened.cfg, max((_reported_state(), own), key=_position)


def _search_worker(config: dict, start: Start) -> None:
    """A Train worker: one search (or one data-parallel rank of it), reported epoch by epoch."""
    import ray.train

    # Ray Train logs every report at INFO through the root logger
    logging.getLogger().setLevel(logging.WARNING)
    run_dir = Path(config["run_dir"])
    ranks = Ranks(sync_bn=config.get("sync_bn", True))
    given = from_dict(SearchConfig, config["search_config"], "trial config")
    cfg, state = start(given, run_dir, ranks.leader)
    monitor = trial_metrics(config.get("monitor")) if ranks.leader else None
    report = TrialReport(cfg, run_dir, monitor, leader=ranks.leader, after_report=fault_after_report())
    progress = (
        SearchProgress(cfg.cells, cfg.ops_kept, cfg.epochs, cfg.warmup_epochs, sys.stdout, live=False)
        if config.get("progress") and ranks.leader
        else None
    )
    tracker = None
    if config.get("mlflow") and ranks.leader:
        from ..results.tracking import MlflowSearch

        tracker = MlflowSearch(config["mlflow"]["uri"], config["mlflow"]["experiment"], run_dir)
    search = ProgressiveSearch(cfg, run_dir, AllHooks(progress, report, tracker), ranks)
    device = ray.train.torch.get_device() if config.get("use_gpu") else None
    try:
        with tracker or contextlib.nullcontext():
            search.run(checkpoint=state, device=device)
    except SearchDiverged as err:
        report.report_failure(f"SearchDiverged: {err}")


def worker_loop(config: dict) -> None:
    """A Train worker of a sweep's trial (`search_trial`)."""
    _search_worker(config, _trial_start)


def run_folder_loop(config: dict) -> None:
    """A Train worker of one search over several workers (`parallel_search.search_with_ray`)."""
    _search_worker(config, _run_folder_start)


def search_trial(config: dict, *, setup: dict, policy: dict | None = None) -> None:
    """The Tune function trainable: one Ray Train run (one worker, or `workers_per_trial`
    data-parallel ones) for one search. `policy`: the driver's CPU wait policy."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from ..results import has_trial
    from .definition import trial_config

    context = ray.tune.get_context()
    trial_id = context.get_trial_id()
    # Tune saves its experiment state every few seconds, after the trial's row is stored:
    # a driver killed in between restores the trial as unfinished. Its row says it is done.
    if has_trial(setup["storage"], setup["name"], trial_id):
        return
    cfg = trial_config(setup["base_config"], config, setup["cpus_per_trial"])
    gpus = float(setup["gpus_per_trial"])  # per worker
    workers = int(setup.get("workers_per_trial", 1))
    run_dir = run_folder(setup["experiment_path"], trial_id, setup["local_runs"])
    trainer = torch_trainer(
        worker_loop,
        {
            "search_config": cfg,
            "run_dir": run_dir,
            "sync_bn": setup.get("sync_bn", True),
            "use_gpu": gpus > 0 and workers > 1,
            "monitor": {
                "experiment": setup["name"],
                "trial_id": trial_id,
                "trial_name": context.get_trial_name(),
            },
        },
        workers=workers,
        cpus=setup["cpus_per_trial"],  # per worker
        gpus=gpus,
        name=train_run_name(trial_id),
        storage_path=f"{setup['experiment_path']}/{TRAIN_FOLDER}",
        max_failures=setup["max_failures"],
        env=setup["worker_env"],
        policy=policy,
        callbacks=[TuneReportCallback()],
    )
    trainer.fit()


class NamedTrial:
    """Mixed into Tune's actor for `search_trial`: its repr, which Ray records when the
    actor starts and the dashboard lists beside every actor, is the trial's name (by its
    config) rather than the function's name, the same for every trial."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._name = self.trial_name


search_trial.__mixins__ = (NamedTrial,)


def run_folder(experiment_path: str, trial_id: str, local_runs: str | None) -> str:
    """The core's run folder of a trial: in the experiment folder on a local or shared path,
    else (an object-store URI) in a local folder; checkpoints carry what a restart needs."""
    if local_runs is None:
        return str(Path(experiment_path) / RUNS_FOLDER / trial_id)
    return str(Path(local_runs) / trial_id)
