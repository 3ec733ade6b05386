"""Monitoring: trial names from the sampled config, the trial's gauges (no Ray); then a
smoke sweep on its own local Ray, watched while it runs through the dashboard's JSON API
(with the cluster's token) and the Prometheus text of the node's metrics export port."""

import gc
import json
import os
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers.metrics import node_metrics_url, prometheus_samples

from pdarts_ray.distributed.definition import parse_sweep
from pdarts_ray.distributed.monitoring import (
    _REFRESHER,
    EVAL_GAUGES,
    GAUGES,
    EvalMetrics,
    TrialMetrics,
    refresh_seconds,
)
from pdarts_ray.distributed.sweep import TRIAL_LABEL_MAX, trial_label, trial_name

# ---------------------------------------------------------------- names (no Ray)


def _trial(config, trial_id="a1b2c_00003"):
    return SimpleNamespace(config=config, trial_id=trial_id)


def test_trial_names_read_by_the_sampled_values():
    # a per-stage list travels through Tune as JSON text; keys in a stable order
    config = {"skip_dropout": "[0.0, 0.3, 0.6]", "seed": 3, "lr": 0.0532671}
    assert trial_label(config) == "lr=0.0533,seed=3,skip_dropout=0.0-0.3-0.6"
    assert trial_name(_trial(config)) == "lr=0.0533,seed=3,skip_dropout=0.0-0.3-0.6_a1b2c_00003"
    assert (
        trial_label({"ops_kept": [8, 5, 3], "fused": True, "lr": 1e-05})
        == "fused=true,lr=1e-05,ops_kept=8-5-3"
    )
    assert trial_name(_trial({})) == "trial_a1b2c_00003"  # nothing sampled


def test_trial_names_are_safe_in_a_path_bounded_and_unique_by_the_id():
    config = {"data_root": "/mnt/data sets/../x", "cells": list(range(40)), "optimizer": "sgd*?"}
    label = trial_label(config)
    assert len(label) <= TRIAL_LABEL_MAX
    assert re.fullmatch(r"[A-Za-z0-9_.,=+-]*", label), label
    a, b = trial_name(_trial(config, "x_00001")), trial_name(_trial(config, "x_00002"))
    assert a != b and a.endswith("_x_00001") and "/" not in a
    assert not a.startswith(".") and ".." not in a.split("/")


def test_build_tuner_names_trials_and_their_folders(tmp_path):
    from pdarts_ray.core.config import to_dict
    from pdarts_ray.distributed.sweep import build_tuner

    sweep = parse_sweep(
        {"base": {"preset": "smoke"}, "searcher": "grid", "space": {"seed": {"grid": [1, 2]}}}
    )
    setup = {
        "name": "n",
        "storage": str(tmp_path),
        "experiment_path": str(tmp_path / "n"),
        "sweep": sweep.to_dict(),
        "base_config": to_dict(sweep.base_config()),
        "gpus_per_trial": 0.0,
        "cpus_per_trial": 1,
        "max_failures": 0,
        "worker_env": {},
        "local_runs": None,
    }
    tune_config = build_tuner(sweep, setup)._local_tuner._tune_config
    assert tune_config.trial_name_creator is trial_name and tune_config.trial_dirname_creator is trial_name


class _Gauge:
    """Stands in for ray.util.metrics.Gauge: records what the worker sets."""

    made = []

    def __init__(self, name, description="", tag_keys=()):
        self.name, self.tag_keys, self.tags, self.values = name, tag_keys, None, []
        _Gauge.made.append(self)

    def set_default_tags(self, tags):
        assert set(tags) == set(self.tag_keys)
        self.tags = tags

    def set(self, value):
        self.values.append(value)


def test_the_gauges_take_every_epoch_and_keep_the_last_validated_accuracy(monkeypatch):
    import ray.util.metrics

    monkeypatch.setattr(ray.util.metrics, "Gauge", _Gauge)
    _Gauge.made = []
    metrics = TrialMetrics("exp", "t_00000", "seed=3_t_00000")
    by_name = {g.name: g for g in _Gauge.made}
    assert set(by_name) == set(GAUGES)
    assert all(
        g.tags == {"experiment": "exp", "trial_id": "t_00000", "trial_name": "seed=3_t_00000"}
        for g in _Gauge.made
    )
    row = {
        "stage": 2,
        "epoch": 1,
        "global_epoch": 4,
        "valid_acc": 61.5,
        "train_loss": 1.2,
        "skip_connects_now": 3,
        "peak_memory_bytes": 12345,
    }
    metrics.record(row)
    metrics.record({**row, "epoch": 2, "global_epoch": 5, "valid_acc": None, "train_loss": float("nan")})
    assert by_name["pdarts_epoch"].values == [1.0, 2.0] and by_name["pdarts_global_epoch"].values == [
        4.0,
        5.0,
    ]
    assert by_name["pdarts_valid_acc"].values == [61.5]  # not validated: left as it was
    assert by_name["pdarts_train_loss"].values == [1.2]  # non-finite: not exported
    assert by_name["pdarts_skip_connects"].values == [3.0, 3.0]
    assert by_name["pdarts_peak_memory_bytes"].values == [12345.0, 12345.0]


def test_the_trial_gauges_read_columns_of_the_epoch_row():
    from pdarts_ray.core.rows import EPOCH_ROW

    assert {column for column, _ in GAUGES.values()} <= set(EPOCH_ROW.names)


def test_a_retrainings_gauges_take_every_epoch_and_keep_the_last_test_accuracy(monkeypatch):
    import ray.util.metrics

    monkeypatch.setattr(ray.util.metrics, "Gauge", _Gauge)
    _Gauge.made = []
    metrics = EvalMetrics("reproduce-tiny-digits", "e-123", "M=2", epochs=12)
    by_name = {g.name: g for g in _Gauge.made}
    assert set(by_name) == set(EVAL_GAUGES)
    assert all(
        g.tags == {"experiment": "reproduce-tiny-digits", "run": "e-123", "genotype": "M=2"}
        for g in _Gauge.made
    )
    row = {"epoch": 0, "train_loss": 2.3, "train_acc": 0.1, "test_acc": 0.25, "epoch_seconds": 7.5}
    metrics.on_epoch_end(row, None)
    metrics.on_epoch_end({**row, "epoch": 1, "test_acc": None, "train_loss": 1.9}, None)
    assert by_name["pdarts_eval_epoch"].values == [0.0, 1.0]
    assert by_name["pdarts_eval_epochs"].values == [12.0, 12.0]
    assert by_name["pdarts_eval_test_acc"].values == [0.25]  # not tested: left as it was
    assert by_name["pdarts_eval_train_loss"].values == [2.3, 1.9]


def test_a_holder_sets_its_last_values_again_until_it_is_dropped(monkeypatch):
    import ray.util.metrics

    # Ray exports a value once after it is set: one set an epoch would leave gaps between epochs
    monkeypatch.setattr(ray.util.metrics, "Gauge", _Gauge)
    _Gauge.made = []
    metrics = EvalMetrics("evaluate", "run-1", "P-DARTS", epochs=3)
    by_name = {g.name: g for g in _Gauge.made}
    metrics.on_epoch_end({"epoch": 0, "train_loss": 2.3, "test_acc": 0.25, "epoch_seconds": 7.5}, None)
    metrics.on_epoch_end({"epoch": 1, "train_loss": 1.9, "test_acc": None, "epoch_seconds": 7.0}, None)
    _REFRESHER.refresh_all()
    assert by_name["pdarts_eval_epoch"].values == [0.0, 1.0, 1.0]
    assert by_name["pdarts_eval_test_acc"].values == [0.25, 0.25]  # the last tested one
    metrics.record_result({"top1": 0.5})  # finished: the last epoch and the result's accuracy
    assert by_name["pdarts_eval_epoch"].values[-1] == 2.0
    assert by_name["pdarts_eval_test_acc"].values[-1] == 0.5
    held = weakref.ref(metrics)
    assert held() in set(_REFRESHER.holders)
    del metrics
    gc.collect()
    assert held() is None  # the refresher holds none alive: its series then ends
    count = len(by_name["pdarts_eval_epoch"].values)
    _REFRESHER.refresh_all()
    assert len(by_name["pdarts_eval_epoch"].values) == count


@pytest.mark.parametrize("interval_ms, seconds", [(None, 5.0), ("1000", 0.5), ("200", 0.5), ("30000", 15.0)])
def test_gauges_are_refreshed_every_half_report_interval(monkeypatch, interval_ms, seconds):
    if interval_ms is None:
        monkeypatch.delenv("RAY_metrics_report_interval_ms", raising=False)
    else:
        monkeypatch.setenv("RAY_metrics_report_interval_ms", interval_ms)
    assert refresh_seconds() == seconds


# ---------------------------------------------------------------- a sweep, watched


def _token() -> str:
    """The cluster's token as a client finds it: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, else
    ~/.ray/auth_token (where a local ray.init writes a new one)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return Path(path).read_text().strip()


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


class Watcher(threading.Thread):
    """Polls the dashboard and the node's metrics while the sweep runs in the main thread."""

    def __init__(self, deadline: float):
        super().__init__(daemon=True)
        self.deadline, self.stop = deadline, threading.Event()
        self.dashboard = self.metrics_url = None
        self.unauthorized = None  # status of a request without the token
        self.actors = {}  # actor_id -> (class_name, repr_name, pid), as last listed
        self.alive_together = False  # a trial's Tune actor and its Train worker alive at once
        self.samples = {}  # (metric, trial_id) -> (labels, value), as last exported
        self.errors = []

    def run(self):
        import ray

        while not self.stop.is_set() and time.time() < self.deadline:
            try:
                if ray.is_initialized():
                    self._poll()
            except Exception as err:  # Ray still starting, or shutting down: try again
                self.errors.append(repr(err))
            self.stop.wait(1.0)

    def _poll(self):
        import ray

        from pdarts_ray.distributed.connect import dashboard_url

        if self.dashboard is None:
            self.dashboard = dashboard_url()
            self.metrics_url = node_metrics_url(ray)
        if self.unauthorized is None:
            self.unauthorized, _ = _get(f"{self.dashboard}/api/v0/actors")
        status, body = _get(f"{self.dashboard}/api/v0/actors?limit=1000&detail=true", _token())
        if status == 200:
            listed = json.loads(body)["data"]["result"]["result"]
            for actor in listed:
                self.actors[actor["actor_id"]] = (
                    _short(actor["class_name"]),
                    actor.get("repr_name"),
                    actor.get("pid"),
                )
            alive = {_short(a["class_name"]) for a in listed if a["state"] == "ALIVE"}
            self.alive_together |= {"ImplicitFunc", "RayTrainWorker"} <= alive
        status, text = _get(self.metrics_url)
        if status == 200:
            for name, labels, value in prometheus_samples(text):
                if "pdarts_" in name and "trial_id" in labels:
                    self.samples[(name, labels["trial_id"])] = (labels, value)


def _short(class_name):
    # the dashboard gives a class defined in a function either bare ("ImplicitFunc") or with
    # its qualified name ("wrap_function.<locals>.ImplicitFunc"), depending on which Ray
    # table answered first
    return class_name.rsplit(".", 1)[-1]


@pytest.mark.slow
def test_a_running_sweep_is_listed_by_the_dashboard_and_exports_its_metrics(tmp_path, monkeypatch, capfd):
    import ray
    from ray.tune import ExperimentAnalysis

    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.results import read_trials

    assert not ray.is_initialized(), "this test starts its own local Ray"
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    # a sweep joins a Ray already running on the machine (another test's cluster): its own
    # temp folder hides them; short, as Ray's sockets live in it
    ray_tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # the default of a local ray.init: token auth
    monkeypatch.setenv("RAY_metrics_report_interval_ms", "1000")  # Ray's default 10 s outlasts a smoke epoch
    # more epochs than the preset's 3: the trial outlives the first metrics export
    sweep = parse_sweep(
        {
            "base": {"preset": "smoke", "config": {"epochs": 5}},
            "name": "watched",
            "storage": str(tmp_path),
            "searcher": "grid",
            "max_concurrent_trials": 1,
            "space": {"seed": {"grid": [3]}},
        }
    )
    watcher = Watcher(deadline=time.time() + 300)
    watcher.start()
    try:
        run_sweep(sweep, verbose=1)
    finally:
        watcher.stop.set()
        watcher.join(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    err = capfd.readouterr().err

    (trial,) = read_trials(str(tmp_path / "watched")).to_pylist()
    assert trial["status"] == "finished"
    trial_id = trial["trial_id"]
    name = f"seed=3_{trial_id}"
    assert (tmp_path / "watched" / name / "result.json").is_file()  # Tune's trial folder, by config
    pid = ExperimentAnalysis(str(tmp_path / "watched")).trials[0].last_result["pid"]

    assert re.search(r"Ray dashboard: http://127\.0\.0\.1:\d+ ", err), err[-2000:]
    assert watcher.dashboard and watcher.dashboard.startswith("http://127.0.0.1:"), watcher.errors[-3:]
    assert watcher.unauthorized == 401
    # the trial's Tune actor, listed under the trial's name (the process that reported the
    # trial's results), and its Train worker
    assert ("ImplicitFunc", name, pid) in set(watcher.actors.values()), watcher.actors
    assert watcher.alive_together, watcher.actors

    for metric in GAUGES:
        exported = watcher.samples.get((f"ray_{metric}", trial_id))
        assert exported is not None, (metric, sorted(watcher.samples), watcher.errors[-3:])
        labels, _ = exported
        assert labels["experiment"] == "watched" and labels["trial_name"] == name
    assert 1 <= watcher.samples[("ray_pdarts_stage", trial_id)][1] <= 3
    assert 0 <= watcher.samples[("ray_pdarts_epoch", trial_id)][1] <= 4
    assert 0 <= watcher.samples[("ray_pdarts_valid_acc", trial_id)][1] <= 100
    assert watcher.samples[("ray_pdarts_peak_memory_bytes", trial_id)][1] > 0
