"""Custom Ray metrics of a running search, set by the Train worker every epoch.

Ray exports them with its own metrics (Prometheus text on every node's metrics export
port; the dashboard's Metrics view and Grafana read them there), named `ray_<name>`.
Every gauge carries the tags `experiment`, `trial_id` and `trial_name`, so one query
follows one trial across its stages, or compares the trials of a sweep.
"""
from __future__ import annotations

import math

# metric name -> (field of the epoch's metrics row, description)
GAUGES = {
    "pdarts_stage": ("stage", "P-DARTS search stage (1..3) the trial is in"),
    "pdarts_epoch": ("epoch", "Epoch within the current stage (from 0)"),
    "pdarts_global_epoch": ("global_epoch", "Epoch counted across the stages (from 0)"),
    "pdarts_valid_acc": ("valid_acc", "Validation accuracy of the supernet at the last validated epoch"),
    "pdarts_train_loss": ("train_loss", "Training loss of the last epoch"),
    "pdarts_skip_connects": ("skip_connects_now", "Skip-connections in the normal cell the alphas would derive now"),
    "pdarts_peak_memory_bytes": ("peak_memory_bytes", "Peak allocator memory of the last epoch, bytes"),
}
TAG_KEYS = ("experiment", "trial_id", "trial_name")


class TrialMetrics:
    """The gauges of one trial, with its tags set once."""

    def __init__(self, experiment: str, trial_id: str, trial_name: str):
        from ray.util.metrics import Gauge

        tags = {"experiment": experiment, "trial_id": trial_id, "trial_name": trial_name}
        self.gauges = {}
        for name, (key, description) in GAUGES.items():
            gauge = Gauge(name, description=description, tag_keys=TAG_KEYS)
            gauge.set_default_tags(tags)
            self.gauges[key] = gauge

    def record(self, metrics: dict) -> None:
        for key, gauge in self.gauges.items():
            value = metrics.get(key)
            # not-validated epochs carry no accuracy: the gauge keeps the last validated one
            if isinstance(value, (int, float)) and math.isfinite(value):
                gauge.set(float(value))


def trial_metrics(tags: dict | None) -> TrialMetrics | None:
    """The worker's gauges, or None where the trial was started without tags."""
    if not tags:
        return None
    return TrialMetrics(tags["experiment"], tags["trial_id"], tags["trial_name"])
