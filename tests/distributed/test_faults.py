"""Fault tolerance on a multi-node cluster, `smoke` preset.

The test runs on a multi-node cluster on this machine (`ray.cluster_utils.Cluster`): a head
with a `search_driver` resource that every Tune trial asks for (its Train controller runs
beside it), and three worker nodes, each with one CPU and one `search_worker` resource that
every Train worker asks for. So a trial's driver and its Train worker are always on different
nodes, and removing a worker node takes a Train worker and nothing else.

Under one running trial, its worker node is removed and then its Train worker SIGKILLed at
random moments inside epochs: the trial goes on each time from its last epoch checkpoint on
another worker and ends with the genotype and losses of a plain in-process run.
Elsewhere: a trial that diverges, stored failed beside one that finishes, and a sweep whose
driver is killed and resumed (test_sweep.py); processes killed while writing, and a search
killed and resumed without Ray (tests/cli/test_kills.py).
"""

import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers.clusters import node_cluster
from helpers.processes import ray_processes_of

pytestmark = pytest.mark.slow

WORKER_RESOURCE, DRIVER_RESOURCE = "search_worker", "search_driver"
WORKER_NODES = 3
HOLD_S = "120"  # a held worker waits this long for the test's fault, then exits anyway


@pytest.fixture(scope="module")
def cluster():
    with node_cluster(WORKER_NODES, {WORKER_RESOURCE: 1}, {DRIVER_RESOURCE: 1}) as nodes:
        yield nodes


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


def _train_worker_pids() -> list[int]:
    """Ray Train workers of this session's Ray (Ray names a worker's process after its actor);
    never another Ray's on the machine."""
    pids = []
    for pid in ray_processes_of(os.environ["RAY_TMPDIR"]):
        try:
            if (Path("/proc") / str(pid) / "cmdline").read_bytes().startswith(b"ray::RayTrainWorker"):
                pids.append(pid)
        except OSError:
            pass
    return pids


KILLS = 2
LONGER_SMOKE = {
    "synthetic_size": 512,
    "epochs": 4,
    "warmup_epochs": 1,
}  # 12 epochs of seconds: room to land inside one


def test_a_trial_whose_node_is_removed_and_whose_worker_is_killed_ends_with_the_undisturbed_genotype(
    cluster, tmp_path, monkeypatch
):
    import ray

    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.distributed.sweep import run_sweep
    from pdarts_ray.distributed.testing import EXIT_AFTER_EPOCH_ENV, EXIT_HOLD_ENV, EXIT_MARKER_ENV
    from pdarts_ray.results import read_epochs

    marker = tmp_path / "held"
    monkeypatch.setenv(EXIT_AFTER_EPOCH_ENV, "4")  # stage 2, epoch 0: after a stage change
    monkeypatch.setenv(EXIT_MARKER_ENV, str(marker))
    monkeypatch.setenv(EXIT_HOLD_ENV, HOLD_S)
    sweep = parse_sweep(
        {
            "name": "lost",
            "base": {"preset": "smoke", "config": LONGER_SMOKE},
            "storage": str(tmp_path / "store"),
            "max_failures": 1 + KILLS + 1,
            "trial_retries": 0,
        }
    )
    reference = run_search(sweep.base_config(), tmp_path / "reference")
    reference_by_m = json.loads((tmp_path / "reference" / "genotypes.json").read_text())["final_by_M"]
    reference_losses = _metric_lines(tmp_path / "reference" / "metrics.jsonl")
    experiment = tmp_path / "store" / "lost"
    rng = random.Random(20191027)
    removed, kills, errors, stop = [], [], [], threading.Event()

    def epochs_done() -> int:
        lines = list((experiment / "runs").glob("*/metrics.jsonl")) if (experiment / "runs").is_dir() else []
        return len(_metric_lines(lines[0])) if lines else 0

    def remove_the_node_then_kill_the_worker():
        try:
            deadline = time.time() + 600
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
            for target in sorted(rng.sample(range(6, 11), KILLS)):  # after these many finished epochs
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

    watcher = threading.Thread(target=remove_the_node_then_kill_the_worker, daemon=True)
    watcher.start()
    try:
        run_sweep(sweep, verbose=0)
    finally:
        stop.set()
        watcher.join(timeout=60)
    assert not errors, errors
    assert removed and removed[0] != cluster.head_node.node_id
    assert not next(n for n in ray.nodes() if n["NodeID"] == removed[0])["Alive"]
    assert len(kills) == KILLS, kills
    assert len({k["pid"] for k in kills}) == KILLS  # a new worker process each time
    print("kills:", [(k["after_epochs"], round(k.get("recovered_s", -1), 1)) for k in kills])

    trials, epochs = _read(experiment)
    assert len(trials) == 1 and trials[0]["status"] == "finished", trials
    trial_id = trials[0]["trial_id"]
    all_epochs = [(s, e) for s in (1, 2, 3) for e in range(LONGER_SMOKE["epochs"])]
    assert _epochs_of(epochs, trial_id) == all_epochs
    # Tune saw the epochs before the node's removal once: the new worker went on after global
    # epoch 4, not from the start
    tune_epochs = [
        r["global_epoch"]
        for p in experiment.glob(f"*{trial_id}*/result.json")
        for r in map(json.loads, p.read_text().splitlines())
        if "global_epoch" in r
    ]
    assert sorted(set(tune_epochs)) == list(range(12)) and [e for e in tune_epochs if e <= 4] == list(
        range(5)
    )
    lines = _metric_lines(experiment / "runs" / trial_id / "metrics.jsonl")
    assert [r["global_epoch"] for r in lines] == list(range(12))  # every epoch once
    assert json.loads(trials[0]["genotype"]) == reference["genotype"]
    assert json.loads(trials[0]["genotypes_by_m"]) == reference_by_m
    assert [r["train_loss"] for r in lines] == pytest.approx(
        [r["train_loss"] for r in reference_losses], rel=1e-6
    )
