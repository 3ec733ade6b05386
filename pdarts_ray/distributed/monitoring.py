"""Custom Ray metrics of running searches and retrainings, set every epoch.

Ray exports them with its own metrics (Prometheus text on every node's metrics export
port; the dashboard's Metrics view and Grafana read them there), named `ray_<name>`.
A search trial's gauges carry the tags `experiment`, `trial_id` and `trial_name`, so one
query follows one trial across its stages, or compares the trials of a sweep; a
retraining's (`pdarts_eval_*`) carry `experiment`, `run` and `genotype`.

Ray exports a gauge's value once after it is set, and drops a series two report intervals
after its last export: an epoch longer than that would leave gaps in every panel. So each
holder of gauges re-sets its last values every half report interval, from a background
thread, for as long as it lives; a run's series ends two report intervals after its holder
is gone (its run ended, or its process).
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref

# metric name -> (column of the epoch row, core/rows.py; description)
GAUGES = {
    "pdarts_stage": ("stage", "P-DARTS search stage (1..3) the trial is in"),
    "pdarts_epoch": ("epoch", "Epoch within the current stage (from 0)"),
    "pdarts_global_epoch": ("global_epoch", "Epoch counted across the stages (from 0)"),
    "pdarts_valid_acc": ("valid_acc", "Validation accuracy of the supernet at the last validated epoch"),
    "pdarts_train_loss": ("train_loss", "Training loss of the last epoch"),
    "pdarts_skip_connects": (
        "skip_connects_now",
        "Skip-connections in the normal cell the alphas would derive now",
    ),
    "pdarts_peak_memory_bytes": ("peak_memory_bytes", "Peak allocator memory of the last epoch, bytes"),
}

# a retraining's gauges, set every epoch by the process (or Ray Train rank 0) that trains it
EVAL_GAUGES = {
    "pdarts_eval_epoch": ("epoch", "Epoch of the retraining (from 0)"),
    "pdarts_eval_epochs": ("epochs", "Epochs the retraining runs in all"),
    "pdarts_eval_train_loss": ("train_loss", "Training loss of the last epoch"),
    "pdarts_eval_test_acc": ("test_acc", "Test top-1 accuracy (fraction) at the last tested epoch"),
    "pdarts_eval_epoch_seconds": ("epoch_seconds", "Seconds the last epoch took"),
}


def refresh_seconds() -> float:
    """Half of Ray's metrics report interval (`RAY_metrics_report_interval_ms`, at least 1 s)."""
    interval_ms = int(os.environ.get("RAY_metrics_report_interval_ms", "10000"))
    return max(interval_ms, 1000) / 2000


class Gauges:
    """Ray gauges fed from one metrics row per epoch, with their tags set once."""

    def __init__(self, gauges: dict, tags: dict):
        from ray.util.metrics import Gauge

        self.gauges = {}
        self.last: dict[str, float] = {}
        self.lock = threading.Lock()
        for name, (key, description) in gauges.items():
            gauge = Gauge(name, description=description, tag_keys=tuple(tags))
            gauge.set_default_tags(tags)
            self.gauges[key] = gauge
        _REFRESHER.hold(self)

    def record(self, metrics: dict) -> None:
        with self.lock:
            for key, gauge in self.gauges.items():
                value = metrics.get(key)
                # not-validated epochs carry no accuracy: the gauge keeps the last validated one
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.last[key] = float(value)
                    gauge.set(float(value))

    def refresh(self) -> None:
        """Set every gauge to its last value again, so that Ray exports it again."""
        with self.lock:
            for key, value in self.last.items():
                self.gauges[key].set(value)


class _Refresher:
    """One daemon thread per process that refreshes every live `Gauges`, started by the first."""

    def __init__(self):
        self.holders: weakref.WeakSet[Gauges] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def hold(self, holder: Gauges) -> None:
        with self.lock:
            self.holders.add(holder)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="pdarts-gauges", daemon=True)
                self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(refresh_seconds())
            self.refresh_all()  # its locals go with its frame: a dropped holder is not kept alive here

    def refresh_all(self) -> None:
        with self.lock:
            holders = list(self.holders)
        for holder in holders:
            holder.refresh()


_REFRESHER = _Refresher()


class TrialMetrics(Gauges):
    """The gauges of one search trial."""

    def __init__(self, experiment: str, trial_id: str, trial_name: str):
        super().__init__(GAUGES, {"experiment": experiment, "trial_id": trial_id, "trial_name": trial_name})


def trial_metrics(tags: dict | None) -> TrialMetrics | None:
    """The worker's gauges, or None where the trial was started without tags."""
    if not tags:
        return None
    return TrialMetrics(tags["experiment"], tags["trial_id"], tags["trial_name"])


class EvalMetrics(Gauges):
    """The gauges of one retraining: `run` is its run folder's name, `genotype` the genotype's."""

    def __init__(self, experiment: str, run: str, genotype: str, epochs: int):
        super().__init__(EVAL_GAUGES, {"experiment": experiment, "run": run, "genotype": genotype})
        self.epochs = epochs

    def on_epoch_end(self, metrics: dict, checkpoint) -> None:  # an evaluation.retrain.EvalHooks
        self.record({**metrics, "epochs": self.epochs})

    def record_result(self, result: dict) -> None:
        """The finished retraining's last epoch and test accuracy, from its result."""
        self.record({"epoch": self.epochs - 1, "epochs": self.epochs, "test_acc": result["top1"]})
