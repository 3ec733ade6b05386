"""Processes SIGKILLed at random moments, no Ray: writers killed while writing checkpoints
and results files leave the previous checkpoint and every completed row readable, and the
work continues; a search killed twice and resumed ends with the genotype of an undisturbed run
(`smoke` preset)."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers.cli import run_cli
from helpers.processes import kill_group

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The core alone, in this process: what every disturbed run must end with."""
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep

    folder = tmp_path_factory.mktemp("reference") / "run"
    result = run_search(parse_sweep({"base": {"preset": "smoke"}}).base_config(), folder)
    return {
        "genotype": result["genotype"],
        "train_loss": [
            json.loads(x)["train_loss"] for x in (folder / "metrics.jsonl").read_text().splitlines()
        ],
    }


def _metric_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


ROWS_PER_PART, TRIAL_TEXT = 4000, 1_000_000
WRITER = r"""
import sys
import torch
from pdarts_ray.core.checkpoint import CheckpointDir
from pdarts_ray.core.errors import UserError
from pdarts_ray.results import trial_row, write_epochs, write_trial

folder, storage, last, rows, text = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
checkpoints = CheckpointDir(folder)
try:
    i = checkpoints.load()["i"] + 1  # a run continues after its last checkpoint
except UserError:
    i = 0
while i <= last:
    # the search's order: rows of step i, then the checkpoint that says step i is done
    write_epochs(storage, "w", "t", [{"stage": i, "epoch": e, "train_loss": float(i)} for e in range(rows)])
    print("epochs", i, flush=True)
    write_trial(storage, "w", trial_row("w", f"t{i:04d}", "failed", {}, failure=str(i) * text))
    print("trial", i, flush=True)
    # 64 MB: most of a step is this write
    checkpoints.save({"i": i, "payload": torch.full((16_000_000,), float(i))})
    print("checkpoint", i, flush=True)
    i += 1
"""


def _check_writes(folder: Path, storage: Path, acked: dict) -> int:
    """Everything the writers acknowledged is there, whole; returns the checkpoint's step."""
    from pdarts_ray.core.checkpoint import CheckpointDir
    from pdarts_ray.results import read_epochs, read_trials

    step = -1
    if CheckpointDir(folder).latest_path() is not None:
        warnings = []
        state = CheckpointDir(folder).load(warn=warnings.append)
        assert not warnings  # the newest checkpoint is always whole: no fallback was needed
        step = state["i"]
        assert bool((state["payload"] == float(step)).all())
    assert step >= acked.get("checkpoint", -1)
    if (storage / "w" / "epochs").is_dir():
        rows = read_epochs(str(storage), "w").select(["stage", "train_loss"]).to_pylist()
        stages = {r["stage"] for r in rows}
        assert set(range(acked.get("epochs", -1) + 1)) <= stages
        assert len(rows) == ROWS_PER_PART * len(stages) and all(r["train_loss"] == r["stage"] for r in rows)
    if (storage / "w" / "trials").is_dir():
        trials = read_trials(str(storage), "w").select(["trial_id", "failure"]).to_pylist()
        ids = [t["trial_id"] for t in trials]
        assert len(ids) == len(set(ids)) and {f"t{i:04d}" for i in range(acked.get("trial", -1) + 1)} <= set(
            ids
        )
        assert all(t["failure"] == str(int(t["trial_id"][1:])) * TRIAL_TEXT for t in trials)
    return step


def _run_writer(folder, storage, last, acked: dict, kill_after=None) -> float:
    """One writer process; with `kill_after`, SIGKILLed that many seconds after its first
    acknowledged step. `acked` gets the last step of each kind acknowledged. Returns the
    seconds from its first acknowledgement to its end."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(folder),
            str(storage),
            str(last),
            str(ROWS_PER_PART),
            str(TRIAL_TEXT),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    timer, first = None, None
    try:
        for n, line in enumerate(iter(proc.stdout.readline, "")):
            if not line.endswith("\n"):
                break  # cut by the kill: not an acknowledgement
            kind, i = line.split()
            acked[kind] = int(i)
            if n == 0:
                first = time.monotonic()
                if kill_after is not None:
                    timer = threading.Timer(kill_after, os.killpg, (proc.pid, signal.SIGKILL))
                    timer.start()
    finally:
        if timer is not None:
            timer.join()
        kill_group(proc)
    elapsed = time.monotonic() - (first or time.monotonic())
    if kill_after is None:
        assert proc.returncode == 0, proc.stderr.read()[-2000:]
    else:
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    return elapsed


def test_writers_killed_mid_write_leave_the_previous_checkpoint_and_rows_intact(tmp_path):
    from pdarts_ray.results import read_trials

    folder, storage = tmp_path / "checkpoints", tmp_path / "store"
    rng = random.Random(7)
    acked = {}
    # one whole step first: the kills land within two steps' time of this machine, as busy
    # as it is now (a fixed second was shorter than one step on a loaded 2-core machine)
    step_seconds = _run_writer(folder, storage, 0, acked)
    seen = _check_writes(folder, storage, acked)
    for _ in range(10):
        _run_writer(folder, storage, 10_000, acked, kill_after=rng.uniform(0.0, 2.0) * step_seconds)
        step = _check_writes(folder, storage, acked)
        assert step >= seen  # never behind what an earlier writer had finished
        seen = step
    assert seen >= 3, "the writers were killed before they got anywhere"
    last = seen + 2
    _run_writer(folder, storage, last, acked)  # the run continues to its end
    assert acked["checkpoint"] == last and _check_writes(folder, storage, acked) == last
    assert read_trials(str(storage), "w").num_rows == last + 1  # each trial row exactly once
    assert len(list((storage / "w" / "trials").glob("*.parquet"))) == last + 1


def test_a_search_killed_twice_resumes_to_the_undisturbed_genotype(tmp_path, reference):
    run = tmp_path / "run"
    rng = random.Random(11)
    for attempt in range(2):
        args = ["--out", str(run), "--preset", "smoke"] if attempt == 0 else ["--resume", str(run)]
        log = tmp_path / f"search-{attempt}.log"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pdarts_ray.cli", "search", *args, "--quiet"],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        try:
            deadline = time.time() + 120
            count = len(_metric_lines(run / "metrics.jsonl")) if (run / "metrics.jsonl").is_file() else 0
            while time.time() < deadline and proc.poll() is None:  # past one more epoch, then a random moment
                if (run / "metrics.jsonl").is_file() and len(
                    (run / "metrics.jsonl").read_text().splitlines()
                ) > count:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, (
                f"the search ended before it could be killed: {log.read_text()[-2000:]}"
            )
            time.sleep(rng.uniform(0.0, 1.0))
        finally:
            kill_group(proc)
        assert not (run / "result.json").exists()
    code, _, err = run_cli("search", "--resume", run, "--quiet", timeout=300)
    assert code == 0, err[-2000:]
    assert json.loads((run / "result.json").read_text())["genotype"] == reference["genotype"]
    lines = _metric_lines(run / "metrics.jsonl")
    assert [r["global_epoch"] for r in lines] == list(range(9))
    assert [r["train_loss"] for r in lines] == pytest.approx(reference["train_loss"], rel=1e-6)
