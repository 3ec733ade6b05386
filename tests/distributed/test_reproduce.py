"""`pdarts-ray reproduce` on a real local Ray: `reproduce table3 --preset smoke` end to end (a
second run starts nothing, a lost row is continued), and retrainings as Ray tasks. Every
table from a hand-made store: tests/results/test_reproduce_tables.py."""

import dataclasses
import json

import pytest
from helpers.cli import run_cli
from helpers.metrics import exported_until, node_metrics_url

from pdarts_ray.core.config import resolve, to_dict
from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig
from pdarts_ray.evaluation.genotypes import DARTS_V2, PDARTS
from pdarts_ray.results.tables.common import eval_key, resolve_setup

FAMILY = "reproduce-smoke-synthetic"
EVAL = to_dict(resolve(EvalConfig, EVAL_PRESETS, "eval-smoke"))
PD, DV2 = PDARTS.to_dict(), DARTS_V2.to_dict()


@pytest.mark.slow
def test_table3_smoke_end_to_end_then_nothing_to_start(tmp_path):
    store, out = tmp_path / "store", tmp_path / "out"
    args = ["reproduce", "table3", "--preset", "smoke", "--runs", "2", "--storage", store, "--out", out]
    env = {"RAY_ADDRESS": "local"}  # a new local Ray, whatever else runs on this machine
    code, stdout, err = run_cli(*args, "--json", env=env)
    assert code == 0, err
    data = json.loads(stdout)
    assert data["searches_started"] == 2 and data["missing"] == []
    assert [row[:3] for row in data["rows"]] == [["1", "2", "9.8"], ["2", "3", "9.8"]]
    assert all(float(c) > 0 for row in data["rows"] for c in row[3::2])
    sweeps = sorted(p.name for p in store.iterdir())
    assert len(sweeps) == 1 and sweeps[0].startswith("reproduce-smoke-synthetic.s-")
    for name in ("table3.md", "table3.csv", "table3.png"):
        assert (out / name).stat().st_size > 0
    code, stdout, err = run_cli(*args, env=env)
    assert code == 0, err
    assert "started 0 searches and 0 retrainings" in stdout and "Table 3" in stdout and "9.8" in stdout
    assert sorted(p.name for p in store.iterdir()) == sweeps

    # a driver killed after a trial ended but before its row was written: the batch is
    # continued (Tune's state restored, the row written), not searched again under a new name
    rows = sorted((store / sweeps[0] / "trials").glob("*.parquet"))
    assert len(rows) == 2
    rows[1].unlink()
    code, stdout, err = run_cli(*args, env=env)
    assert code == 0, err
    assert f"continuing: {sweeps[0]} (1 search)" in err
    assert stdout.lstrip().startswith("Table 3")  # Ray Tune's console went to stderr
    assert "started 1 searches and 0 retrainings" in stdout
    assert sorted(p.name for p in store.iterdir()) == sweeps
    assert len(list((store / sweeps[0] / "trials").glob("*.parquet"))) == 2


@pytest.mark.slow
def test_retrainings_as_ray_tasks(tmp_path, monkeypatch):
    import ray

    from pdarts_ray.distributed.reproduce import run_evaluations
    from pdarts_ray.results.tables.common import EvalNeed, StoreView

    # threads 0 (every core): each task runs on the one CPU it holds, not on all of the node's
    smoke = resolve_setup("smoke")
    setup = dataclasses.replace(smoke, eval_config={**smoke.eval_config, "threads": 0})
    lines = []
    monkeypatch.setenv("RAY_metrics_report_interval_ms", "1000")
    ray.init(address="local", num_cpus=2)  # its own Ray, whatever else runs on this machine
    try:
        failures = run_evaluations(
            [EvalNeed(PD, "P-DARTS"), EvalNeed(DV2, "DARTS_V2")], setup, str(tmp_path), True, lines.append
        )
        # each retraining's gauges, tagged with its run folder and genotype, hold its last epoch
        runs = {eval_key(PD, EVAL): "P-DARTS", eval_key(DV2, EVAL): "DARTS_V2"}
        samples = exported_until(
            node_metrics_url(ray),
            "ray_pdarts_eval_",
            lambda samples: all(
                samples.get(("ray_pdarts_eval_epoch", run), (None, None))[1] == EVAL["epochs"] - 1
                for run in runs
            ),
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
