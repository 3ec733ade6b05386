"""`pdarts-ray reproduce`'s retrainings as Ray tasks on a real local Ray. `reproduce table3
--preset smoke` end to end (beside another Ray instance): tests/distributed/test_quiet_runs.py;
every table from a hand-made store: tests/results/test_reproduce_tables.py."""

import dataclasses
import json
import time

import pytest
from helpers.metrics import exported_until, node_metrics_url

from pdarts_ray.core.config import resolve, to_dict
from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig
from pdarts_ray.evaluation.genotypes import DARTS_V2, PDARTS
from pdarts_ray.results.tables.common import eval_key, resolve_setup

FAMILY = "reproduce-smoke-synthetic"
EVAL = to_dict(resolve(EvalConfig, EVAL_PRESETS, "eval-smoke"))
PD, DV2 = PDARTS.to_dict(), DARTS_V2.to_dict()


@pytest.mark.slow
def test_retrainings_as_ray_tasks(tmp_path, monkeypatch):
    import ray

    from pdarts_ray.distributed.reproduce import run_evaluations
    from pdarts_ray.results.tables.common import EvalNeed, StoreView

    # threads 0 (every core): each task runs on the one CPU it holds, not on all of the node's
    smoke = resolve_setup("smoke")
    setup = dataclasses.replace(smoke, eval_config={**smoke.eval_config, "threads": 0})
    # each retraining's gauges, tagged with its run folder and genotype, hold its last epoch
    # until the retrainings are all done, the first's long after its task returned
    runs = {eval_key(PD, EVAL): "P-DARTS", eval_key(DV2, EVAL): "DARTS_V2"}
    lines, samples = [], {}

    def log(line):
        lines.append(line)
        finished = sum(line.startswith("retrained ") for line in lines)
        if finished == 1 and line.startswith("retrained "):
            time.sleep(3)  # past Ray's life for a series that nothing sets again (two report intervals)
        elif finished == 2 and line.startswith("retrained "):
            samples.update(
                exported_until(
                    node_metrics_url(ray),
                    "ray_pdarts_eval_",
                    lambda samples: all(
                        samples.get(("ray_pdarts_eval_epoch", run), (None, None))[1] == EVAL["epochs"] - 1
                        for run in runs
                    ),
                )
            )

    monkeypatch.setenv("RAY_metrics_report_interval_ms", "1000")
    ray.init(address="local", num_cpus=2)  # its own Ray, whatever else runs on this machine
    try:
        failures = run_evaluations(
            [EvalNeed(PD, "P-DARTS"), EvalNeed(DV2, "DARTS_V2")], setup, str(tmp_path), True, log
        )
    finally:
        ray.shutdown()
    for run, genotype in runs.items():
        labels, epoch = samples[("ray_pdarts_eval_epoch", run)]
        assert labels["experiment"] == FAMILY and labels["genotype"] == genotype
        assert epoch == EVAL["epochs"] - 1
        assert samples[("ray_pdarts_eval_epochs", run)][1] == EVAL["epochs"]
        assert 0 <= samples[("ray_pdarts_eval_test_acc", run)][1] <= 1
    assert failures == []
    store = StoreView(str(tmp_path), FAMILY)
    assert {store.evaluation(g, EVAL)["genotype_name"] for g in (PD, DV2)} == {"P-DARTS", "DARTS_V2"}
    result = json.loads((tmp_path / FAMILY / "eval-runs" / eval_key(PD, EVAL) / "result.json").read_text())
    assert result["threads"] == 1
    assert any(line.startswith("retrained DARTS_V2: error") for line in lines)
