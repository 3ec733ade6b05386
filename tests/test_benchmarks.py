"""benchmarks/gpu_side_by_side.sh --dry-run: every phase of the GPU session on CPU at toy
sizes, each writing its JSON, so that the one device session finds a script that runs;
benchmarks/parallel_step.py: what N ranks send per search step."""

import json
import os
import subprocess
import sys

import pytest
from helpers.paths import ROOT

pytestmark = pytest.mark.slow
PHASES = ("steps", "profile", "retrain", "epochs", "concurrent")


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-dry-run")
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_side_by_side.sh"), "none", str(out), "--dry-run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1500,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def phase(out, name):
    return json.loads((out / f"{name}.json").read_text())


def test_every_phase_writes_its_json(dry_run):
    out, proc = dry_run
    for name in PHASES:
        result = phase(out, name)
        assert result["ok"] and result["dry_run"] and result["official_skipped"], result
        assert f"{name}: ok" in proc.stderr
    assert "torch" in (out / "machine.txt").read_text()


def test_the_phases_measure_what_the_issue_asks(dry_run):
    out, _ = dry_run
    steps = phase(out, "steps")
    assert [r["stage"] for r in steps["rows"]] == [1, 2, 3]
    every_variant = ("eager_float32", "batched_float32", "bf16")
    for row in steps["rows"]:  # the dry run times every variant at stage 1, the eager one at each
        for variant in every_variant if row["stage"] == 1 else ("eager_float32",):
            assert row[variant]["median_step_s"] > 0 and row[variant]["flops"]["full_step"] > 0
    assert steps["projected_hours_eager_float32"] > 0
    profile = phase(out, "profile")
    assert all(r["convolutions_per_step"] > 0 for r in profile["rows"])
    retrain = phase(out, "retrain")
    assert retrain["ours"]["flops"]["train_step"] > 0 and "official" not in retrain
    epochs = phase(out, "epochs")
    assert len(epochs["stages"]) == 3 and epochs["full_search_hours"] > 0
    assert [r["concurrent"] for r in phase(out, "concurrent")["rows"]] == [1, 2]


def test_a_bad_phase_or_checkout_is_one_line():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_phases.py"), "/tmp/x", "--phases", "steps,warp"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "unknown phase warp" in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_phases.py"), "/tmp/x", "--official", str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "not a checkout of the official code" in proc.stderr


def _parallel_step(*flags):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "parallel_step.py"),
            "--preset",
            "smoke",
            "--stages",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = json.loads(proc.stdout)["rows"]
    return row


def test_the_parallel_step_counts_what_the_ranks_send():
    plain = _parallel_step("--no-sync-bn")["ranks"]
    # without synchronised BatchNorm a step sends the alphas' and the weights' gradients, once each
    assert plain["allreduce_calls"] == 2 and plain["allreduce_bytes"] == plain["gradient_bytes"] > 0
    synced = _parallel_step()
    assert (
        synced["ranks"]["allreduce_calls"] > 2
        and synced["ranks"]["allreduce_bytes"] > plain["gradient_bytes"]
    )
    assert {"lean", "reference"} <= set(synced["one_process"]) and synced["ratio_to_one_process"] > 0
