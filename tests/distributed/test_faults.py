"""Fault tolerance, all on the `smoke` preset.

Ray tests share one multi-node cluster on this machine (`ray.cluster_utils.Cluster`): a head
with a `search_driver` resource that every Tune trial asks for (its Train controller runs
beside it), and three worker nodes, each with one CPU and one `search_worker` resource that
every Train worker asks for. So a trial's driver and its Train worker are always on different
nodes, and removing a worker node takes a Train worker and nothing else.

- a failing trial (non-finite loss) is stored as failed with its reason while the other runs on;
- a driver SIGKILLed mid-sweep: `pdarts-ray sweep --resume` finishes the sweep, every trial is
  stored once and the finished trial does not run again;
- processes SIGKILLed at random moments while writing checkpoints and results files: the
  previous checkpoint and every completed row stay readable, and the work continues; a search
  killed twice and resumed ends with the genotype of an undisturbed run;
- a worker node removed under a running trial: the trial continues on another node from its
  last epoch checkpoint and ends with the genotype of a plain in-process run.
"""

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

WORKER_RESOURCE, DRIVER_RESOURCE = "search_worker", "search_driver"
WORKER_NODES = 3
HOLD_S = "120"  # a held worker waits this long for the test's fault, then exits anyway
ALL_EPOCHS = [(s, e) for s in (1, 2, 3) for e in range(3)]


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    from pdarts_ray.distributed.connect import RAY_ENV
    from pdarts_ray.distributed.testing import TRIAL_RESOURCES_ENV, WORKER_RESOURCES_ENV

    # the nodes' processes (trial drivers, Train controllers and workers) and sweep drivers
    # started from here inherit these
    env = {
        **RAY_ENV,
        WORKER_RESOURCES_ENV: json.dumps({WORKER_RESOURCE: 1}),
        TRIAL_RESOURCES_ENV: json.dumps({DRIVER_RESOURCE: 1}),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    nodes = None
    try:
        nodes = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 1, "resources": {DRIVER_RESOURCE: 100}}
        )
        for _ in range(WORKER_NODES):
            nodes.add_node(num_cpus=1, resources={WORKER_RESOURCE: 1})
        ray.init(address=nodes.address)
        yield nodes
    finally:
        ray.shutdown()
        if nodes is not None:
            nodes.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The core alone, in this process: what every disturbed run must end with."""
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep

    folder = tmp_path_factory.mktemp("reference") / "run"
    result = run_search(parse_sweep({"base": {"preset": "smoke"}}).base_config(), folder)
    return {
        "genotype": result["genotype"],
        "final_by_M": json.loads((folder / "genotypes.json").read_text())["final_by_M"],
        "train_loss": [
            json.loads(x)["train_loss"] for x in (folder / "metrics.jsonl").read_text().splitlines()
        ],
    }


def _read(path):
    from pdarts_ray.results import read_epochs, read_trials

    return read_trials(str(path)).to_pylist(), read_epochs(str(path)).to_pylist()


def _epochs_of(epochs, trial_id):
    return sorted((e["stage"], e["epoch"]) for e in epochs if e["trial_id"] == trial_id)


def _metric_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _wait_for_marker(marker: Path, deadline: float, alive=lambda: True) -> str:
    """The node id a held worker wrote into its marker."""
    while time.time() < deadline and alive():
        if marker.is_file() and marker.read_text():
            return marker.read_text()
        time.sleep(0.2)
    raise AssertionError("no worker reached the fault point before the deadline")


# ---------------------------------------------------------------- a failing trial


def test_a_diverging_trial_is_stored_failed_with_its_reason_and_the_other_finishes(cluster, tmp_path):
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep

    sweep = parse_sweep(
        {
            "name": "nan",
            "base": {"preset": "smoke"},
            "storage": str(tmp_path),
            "searcher": "grid",
            "max_concurrent_trials": 2,
            "space": {"lr": {"grid": [0.05, 1e30]}},
        }
    )
    run_sweep(sweep, verbose=0)
    trials, epochs = _read(tmp_path / "nan")
    assert len(trials) == 2
    by_lr = {t["cfg_lr"]: t for t in trials}
    good, bad = by_lr[0.05], by_lr[1e30]
    assert bad["status"] == "failed" and bad["genotype"] is None
    assert bad["failure"] == "SearchDiverged: non-finite training loss in stage 1, epoch 0"
    assert _epochs_of(epochs, bad["trial_id"]) == []
    assert good["status"] == "finished" and good["failure"] is None and good["genotype"]
    assert _epochs_of(epochs, good["trial_id"]) == ALL_EPOCHS
    assert bad["finished"] < good["finished"]  # the good trial went on after the failure


# ---------------------------------------------------------------- the driver killed


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_killed_driver_resumes_and_stores_every_trial_once(cluster, tmp_path):
    from ray.tune import ExperimentAnalysis

    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_HOLD_ENV, EXIT_MARKER_ENV

    marker = tmp_path / "held"
    space = tmp_path / "space.yaml"
    space.write_text(
        "base: {preset: smoke}\nsearcher: grid\nmax_concurrent_trials: 2\nspace:\n  seed: {grid: [1, 2]}\n"
    )
    store = tmp_path / "store"
    experiment = store / "cut"
    # one of the two trials holds after global epoch 4; the driver dies once the other has ended
    env = {**os.environ, EXIT_AFTER_EPOCH_ENV: "4", EXIT_MARKER_ENV: str(marker), EXIT_HOLD_ENV: HOLD_S}
    cmd = [
        sys.executable,
        "-m",
        "pdarts_ray.cli",
        "sweep",
        "--space",
        str(space),
        "--storage",
        str(store),
        "--name",
        "cut",
        "--address",
        cluster.address,
        "--quiet",
    ]
    log = tmp_path / "driver.log"  # a file, not a pipe: Ray forwards the workers' output to the driver
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    deadline = time.time() + 300
    try:
        _wait_for_marker(marker, deadline, alive=lambda: proc.poll() is None)
        done = []
        while time.time() < deadline and proc.poll() is None and not done:
            done = (
                sorted((experiment / "trials").glob("*.parquet")) if (experiment / "trials").is_dir() else []
            )
            time.sleep(0.1)
        assert proc.poll() is None, f"the sweep ended before it could be killed: {log.read_text()[-2000:]}"
        assert len(done) == 1, "the other trial did not finish before the deadline"
    finally:
        kill_group(proc)
    finished = done[0].stem
    finished_run = experiment / "runs" / finished
    before = _files(finished_run)
    assert "result.json" in before

    code, out, err = run_cli(
        "sweep", "--resume", "cut", "--storage", store, "--address", cluster.address, "--json", timeout=400
    )
    assert code == 0, err[-3000:]
    trials, epochs = _read(experiment)
    assert sorted(p.stem for p in (experiment / "trials").glob("*.parquet")) == sorted(
        t["trial_id"] for t in trials
    )
    assert len(trials) == 2 and len({t["trial_id"] for t in trials}) == 2
    assert {t["cfg_seed"] for t in trials} == {1, 2} and all(t["status"] == "finished" for t in trials)
    assert len(json.loads(out)["trials"]) == 2
    assert len(ExperimentAnalysis(str(experiment)).trials) == 2  # no trial was added on resume
    assert _files(finished_run) == before, "the finished trial ran again"
    for t in trials:
        assert _epochs_of(epochs, t["trial_id"]) == ALL_EPOCHS
        lines = _metric_lines(experiment / "runs" / t["trial_id"] / "metrics.jsonl")
        assert [r["global_epoch"] for r in lines] == list(range(9))


# ---------------------------------------------------------------- processes killed while writing

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


# ---------------------------------------------------------------- a worker node removed


def test_a_removed_worker_node_moves_the_trial_which_ends_with_the_undisturbed_genotype(
    cluster, tmp_path, monkeypatch, reference
):
    import ray

    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_HOLD_ENV, EXIT_MARKER_ENV
    from pdarts_ray.results import read_epochs

    marker = tmp_path / "held"
    monkeypatch.setenv(EXIT_AFTER_EPOCH_ENV, "4")  # stage 2, epoch 1: mid-stage, after a stage change
    monkeypatch.setenv(EXIT_MARKER_ENV, str(marker))
    monkeypatch.setenv(EXIT_HOLD_ENV, HOLD_S)
    experiment = tmp_path / "store" / "node"
    sweep = parse_sweep(
        {
            "name": "node",
            "base": {"preset": "smoke"},
            "storage": str(tmp_path / "store"),
            "max_failures": 1,
            "trial_retries": 0,
        }
    )
    removed, errors, stop = [], [], threading.Event()

    def remove_the_workers_node():
        try:
            deadline = time.time() + 300
            node_id = _wait_for_marker(marker, deadline, alive=lambda: not stop.is_set())
            # the epoch before the fault has reached the driver: its checkpoint is the trial's latest
            while time.time() < deadline and not stop.is_set():
                if (experiment / "epochs").is_dir() and any(
                    r["global_epoch"] == 4
                    for r in read_epochs(str(experiment)).select(["global_epoch"]).to_pylist()
                ):
                    break
                time.sleep(0.2)
            node = next(n for n in cluster.worker_nodes if n.node_id == node_id)
            cluster.remove_node(node, allow_graceful=False)
            removed.append(node_id)
        except BaseException as err:  # reported by the test below
            errors.append(err)

    watcher = threading.Thread(target=remove_the_workers_node, daemon=True)
    watcher.start()
    try:
        run_sweep(sweep, verbose=0)
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert not errors, errors
    assert removed and removed[0] != cluster.head_node.node_id
    assert not next(n for n in ray.nodes() if n["NodeID"] == removed[0])["Alive"]

    trials, epochs = _read(experiment)
    assert len(trials) == 1 and trials[0]["status"] == "finished"
    trial_id = trials[0]["trial_id"]
    assert _epochs_of(epochs, trial_id) == ALL_EPOCHS
    # Tune saw each epoch once: the new worker went on after global epoch 4, not from the start
    tune_results = [
        json.loads(x)
        for p in experiment.glob(f"*{trial_id}*/result.json")
        for x in p.read_text().splitlines()
    ]
    assert [r["global_epoch"] for r in tune_results if "global_epoch" in r] == list(range(9))
    lines = _metric_lines(experiment / "runs" / trial_id / "metrics.jsonl")
    assert [r["global_epoch"] for r in lines] == list(range(9))
    assert json.loads(trials[0]["genotype"]) == reference["genotype"]
    assert json.loads(trials[0]["genotypes_by_m"]) == reference["final_by_M"]
    assert [r["train_loss"] for r in lines] == pytest.approx(reference["train_loss"], rel=1e-6)


# ---------------------------------------------------------------- a Train worker killed at random moments


def _train_worker_pids() -> list[int]:
    """Ray Train workers of this machine (Ray names a worker's process after its actor)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


KILLS = 3
LONGER_SMOKE = {
    "synthetic_size": 512,
    "epochs": 4,
    "warmup_epochs": 1,
}  # epochs of seconds: room to land inside one


def test_a_train_worker_sigkilled_at_random_moments_inside_epochs_resumes_to_the_undisturbed_genotype(
    cluster, tmp_path
):
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep

    definition = {
        "name": "killed",
        "base": {"preset": "smoke", "config": LONGER_SMOKE},
        "storage": str(tmp_path / "store"),
        "max_failures": KILLS + 1,
        "trial_retries": 0,
    }
    sweep = parse_sweep(definition)
    reference = run_search(sweep.base_config(), tmp_path / "reference")
    experiment = tmp_path / "store" / "killed"
    rng = random.Random(20191027)
    kills, errors, stop = [], [], threading.Event()

    def epochs_done() -> int:
        lines = list((experiment / "runs").glob("*/metrics.jsonl")) if (experiment / "runs").is_dir() else []
        return len(_metric_lines(lines[0])) if lines else 0

    def kill_at_random_moments():
        try:
            deadline = time.time() + 600
            for target in sorted(rng.sample(range(1, 11), KILLS)):  # after these many finished epochs (of 12)
                while epochs_done() < target and time.time() < deadline and not stop.is_set():
                    time.sleep(0.05)
                pids = _train_worker_pids()
                if stop.is_set() or not pids:
                    return
                time.sleep(rng.uniform(0.1, 1.5))  # somewhere inside the next epoch
                done = epochs_done()
                os.kill(pids[0], signal.SIGKILL)
                kills.append({"after_epochs": done, "at": time.time(), "pid": pids[0]})
                while epochs_done() <= done and time.time() < deadline and not stop.is_set():
                    time.sleep(0.05)  # the restarted worker's first finished epoch
                kills[-1]["recovered_s"] = time.time() - kills[-1]["at"]
        except BaseException as err:  # reported by the test below
            errors.append(err)

    watcher = threading.Thread(target=kill_at_random_moments, daemon=True)
    watcher.start()
    try:
        run_sweep(sweep, verbose=0)
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert not errors, errors
    assert len(kills) == KILLS, kills
    print("kills:", [(k["after_epochs"], round(k.get("recovered_s", -1), 1)) for k in kills])
    trials, epochs = _read(experiment)
    assert len(trials) == 1 and trials[0]["status"] == "finished", trials
    assert len({k["pid"] for k in kills}) == KILLS  # a new worker process each time
    lines = _metric_lines(next((experiment / "runs").glob("*/metrics.jsonl")))
    assert [r["global_epoch"] for r in lines] == list(range(12))  # every epoch once
    assert json.loads(trials[0]["genotype"]) == reference["genotype"]
