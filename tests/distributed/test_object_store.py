"""Results, Ray Tune's state and driver claims on S3, for real: a local S3-compatible server
(moto's server mode on 127.0.0.1), reached through the standard AWS environment variables
by boto3, pyarrow and Ray alike.

- trial rows are written exactly once there (a conditional put, If-None-Match), also
  between racing writers;
- a claim on an experiment there is exclusive, renewed and taken over atomically;
- a smoke sweep with `--storage s3://...` (Ray Tune's storage there too), its driver
  SIGKILLed mid-sweep and resumed, stores every trial once; `results list/show` and
  `reproduce --no-run` read it from there.
gs:// is not tested offline.
"""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from helpers.cli import main_stdout, run_cli
from helpers.processes import kill_group

pytestmark = pytest.mark.slow


def _keys(bucket, prefix):
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    # objects, not the folder markers other writers (Ray's pyarrow) may leave
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/"))


def test_trial_rows_are_written_exactly_once_even_by_racing_writers(s3_server):
    from pdarts_ray.results import read_trials, trial_row, write_trial

    root = f"s3://{s3_server['bucket']}/rows"
    results, barrier = {}, threading.Barrier(6)

    def write(i):
        barrier.wait()
        results[i] = write_trial(root, "race", trial_row("race", "t1", "failed", {}, failure=f"writer {i}"))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1
    (row,) = read_trials(root, "race").to_pylist()
    assert row["failure"] == f"writer {winners[0]}"
    assert write_trial(root, "race", trial_row("race", "t1", "failed", {}, failure="late")) is False


def test_a_claim_on_an_experiment_there_is_exclusive_and_taken_over_atomically(s3_server):
    from pdarts_ray.core.errors import UserError
    from pdarts_ray.distributed.experiment import ObjectClaimFiles, claim_experiment

    path = f"s3://{s3_server['bucket']}/claims/exp"
    with claim_experiment(path, "pdarts-ray sweep"):
        assert _keys(s3_server["bucket"], "claims/") == ["claims/.claims/exp.json"]  # beside the experiment
        with pytest.raises(UserError, match="held by pdarts-ray sweep"):
            claim_experiment(path, "pdarts-ray sweep --resume").acquire()
    assert _keys(s3_server["bucket"], "claims/") == []
    files = ObjectClaimFiles(f"{path}-other.json")
    stale = json.dumps({"command": "gone", "host": "elsewhere", "pid": 1, "renewed": 0}).encode()
    version = files.create(stale)
    assert version is not None and files.create(b"second") is None
    won = [files.replace(version, f"taker {i}".encode()) for i in range(3)]
    assert sum(v is not None for v in won) == 1  # the first replaces the stale claim, the others find it gone
    with claim_experiment(path, "pdarts-ray sweep --resume", take_over=True):
        pass


def test_a_sweep_on_s3_killed_and_resumed_stores_every_trial_once(s3_server, tmp_path):
    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_HOLD_ENV, EXIT_MARKER_ENV
    from pdarts_ray.results import read_epochs, read_trials

    bucket = s3_server["bucket"]
    storage = f"s3://{bucket}/store"
    space = tmp_path / "space.yaml"
    space.write_text(
        "base: {preset: smoke}\nsearcher: grid\nmax_concurrent_trials: 2\nspace:\n  seed: {grid: [1, 2]}\n"
    )
    marker = tmp_path / "held"
    env = {**os.environ, EXIT_AFTER_EPOCH_ENV: "4", EXIT_MARKER_ENV: str(marker), EXIT_HOLD_ENV: "120"}
    log = tmp_path / "driver.log"
    cmd = [
        sys.executable,
        "-m",
        "pdarts_ray.cli",
        "sweep",
        "--space",
        str(space),
        "--storage",
        storage,
        "--name",
        "on-s3",
        "--quiet",
    ]
    with open(log, "w") as err:
        driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and driver.poll() is None:
            if marker.exists() and _keys(bucket, "store/on-s3/trials/"):
                break
            time.sleep(0.5)
        assert driver.poll() is None, log.read_text()[-3000:]
        assert marker.exists() and len(_keys(bucket, "store/on-s3/trials/")) == 1
        assert "store/.claims/on-s3.json" in _keys(bucket, "store/.claims/")  # the driver's claim
        time.sleep(5)  # Tune saves its state every few seconds
    finally:
        kill_group(driver, stop_local_ray=True)

    code, out, err = run_cli("sweep", "--resume", "on-s3", "--storage", storage, "--json", timeout=600)
    assert code == 0, err[-3000:]
    assert "took over" in err  # the killed driver's claim: its process is gone
    trials = read_trials(storage, "on-s3").to_pylist()
    assert sorted(t["cfg_seed"] for t in trials) == [1, 2] and all(t["status"] == "finished" for t in trials)
    assert len(_keys(bucket, "store/on-s3/trials/")) == 2
    epochs = read_epochs(storage, "on-s3").to_pylist()
    for t in trials:
        assert sorted((e["stage"], e["epoch"]) for e in epochs if e["trial_id"] == t["trial_id"]) == [
            (s, e) for s in (1, 2, 3) for e in range(3)
        ]
    assert _keys(bucket, "store/.claims/") == [], err[-3000:]  # released

    # the readers, in this process (no Ray): a table and the store's commands read S3 alike
    code, out = main_stdout("results", "list", "--storage", storage, "--json")
    assert code == 0
    (listed,) = [e for e in json.loads(out) if e["name"] == "on-s3"]
    assert (listed["trials"], listed["finished"]) == (2, 2)
    code, out = main_stdout("results", "show", f"{storage}/on-s3", "--format", "json")
    assert code == 0 and len(json.loads(out)) == 2
    argv = ["--preset", "smoke", "--storage", storage, "--no-run", "--out", tmp_path / "out", "--json"]
    code, out = main_stdout("reproduce", "table3", *argv)
    assert code == 0
    assert json.loads(out)["searches_started"] == 0
