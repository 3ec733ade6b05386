import fcntl
import os
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.clusters import token_head
from helpers.processes import environment, free_port
from helpers.scheduling import RAY_CHAIN, alone_tests_together, chain_of, is_alone, misplaced_ray_tests
from helpers.scheduling import pytest_xdist_make_scheduler as pytest_xdist_make_scheduler

# The suite runs on several workers (pytest-xdist): the tests that start or join Ray in one
# chain on one worker, every other module whole on one worker (helpers/scheduling.py).
# A test's Ray must not find or stop another Ray on the machine (a developer's, a study's):
# each session gives Ray a temp folder of its own (where `ray start` records the cluster a
# driver joins, and Ray keeps its sessions), and a test stops a Ray it started by that folder,
# never with `ray stop`.
if "RAY_TMPDIR" not in os.environ:
    # short, under /tmp: Ray's socket paths must fit in 107 characters
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(
        prefix=f"pdr-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-"
    )


def pytest_configure(config):
    """The suite keeps both cores busy (a worker per core, Ray's processes), so its processes
    wait passively, as `auto` decides on a busy machine. Left alone, a worker loaded torch
    before pdarts_ray could set anything, kept libgomp's spinning default for the whole run
    (docs/performance.md: a search step 10-25x slower beside other work), and its commands
    started with no policy of their own. Set before any test module loads torch; the commands
    the tests start inherit it (test_waiting.py clears it where it tests `auto`)."""
    os.environ.setdefault("PDARTS_WAIT_POLICY", "passive")
    from pdarts_ray.core.waiting import apply_wait_policy

    apply_wait_policy(warn=False)


def pytest_collection_modifyitems(config, items):
    misplaced = misplaced_ray_tests(items)
    if misplaced:
        raise pytest.UsageError(
            f"{misplaced[0]} starts Ray outside the Ray chain: move it to tests/distributed "
            "or add its module to RAY_MODULES (and not OFF_CHAIN_MODULES) in tests/helpers/scheduling.py"
        )
    items[:] = alone_tests_together(items)


def pytest_runtest_logreport(report):
    """A test phase over 100 s, and a failure with the end of its report, get lines of their
    own as they end (in the process that prints the dots), so a run cut short by a time limit
    still shows where its time went and what failed."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    if report.duration > 100:
        print(f"\n{report.duration:.0f} s {report.when} {report.nodeid}", flush=True)
    if report.failed:
        print(f"\nFAILED {report.when} {report.nodeid}\n{report.longreprtext[-2500:]}", flush=True)


# the lowest priority: Ray starts its own workers at niceness 15 (RAY_worker_niceness)
BACKGROUND_NICENESS = 19


def _set_niceness(value: int) -> None:
    """Every thread of this process (a thread's niceness is its own on Linux, and the
    processes and threads it starts inherit it)."""
    for task in Path("/proc/self/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), value)
        except OSError:
            pass


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """The Ray tests are one chain on one worker, the run's critical path, and run 1.5-3x
    slower beside the other worker's tests: every other test (except one measuring the
    machine) runs at a lower CPU priority, taking what the Ray tests leave. Set before the
    test's fixtures, so a Ray head a module fixture starts has the Ray tests' priority."""
    # lowering a niceness again takes root: elsewhere every test keeps the same priority
    if "PYTEST_XDIST_WORKER" in os.environ and os.geteuid() == 0:
        foreground = chain_of(item.nodeid) == RAY_CHAIN or is_alone(item)
        _set_niceness(0 if foreground else BACKGROUND_NICENESS)


NEXT_ITEM = pytest.StashKey()
_held_machine: list = []  # the gate and the lock, kept from one `alone` test to the next


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    item.stash[NEXT_ITEM] = nextitem


@pytest.fixture(autouse=True)
def _machine_share(request, tmp_path_factory):
    """A test marked `alone` (it measures how busy the machine is) runs while no other
    worker runs a test; the others share the machine. A gate taken first lets an `alone`
    test in ahead of tests that arrive after it; a worker whose next test is `alone` too
    keeps both for it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    alone = is_alone(request.node)
    if _held_machine:
        gate, lock = _held_machine
        _held_machine.clear()
    else:
        root = tmp_path_factory.getbasetemp().parent
        gate, lock = open(root / "machine.gate", "a"), open(root / "machine.lock", "a")
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
    try:
        yield
    finally:
        if alone and is_alone(request.node.stash.get(NEXT_ITEM, None)):
            _held_machine[:] = [gate, lock]
        else:
            gate.close()  # closing a file releases its locks
            lock.close()


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated datasets go to a per-session cache, never the user's."""
    if "PDARTS_CACHE" not in os.environ:
        os.environ["PDARTS_CACHE"] = str(tmp_path_factory.mktemp("pdarts-cache"))
    yield


@pytest.fixture
def toy():
    """A toy experiment in the registry for one test (helpers/toy_experiment.py)."""
    from helpers.toy_experiment import register_toy

    from pdarts_ray.experiments.registry import unregister_experiment

    yield register_toy()
    unregister_experiment("toy")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for one test module: 4 logical CPUs (more than the 2 cores, so two 1-CPU
    workers or trials with their small drivers fit side by side), and custom metrics
    exported every second (Ray's default is 10 s)."""
    ray = pytest.importorskip("ray")
    from pdarts_ray.distributed.connect import RAY_ENV

    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    saved = os.environ.get("RAY_metrics_report_interval_ms")
    os.environ["RAY_metrics_report_interval_ms"] = "1000"
    ray.init(address="local", num_cpus=4)  # a Ray of its own, never one found on the machine
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_metrics_report_interval_ms", None)
        else:
            os.environ["RAY_metrics_report_interval_ms"] = saved


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    """A local S3-compatible server (moto's server mode) on 127.0.0.1, with a bucket, found by
    boto3, pyarrow and Ray through the standard AWS environment variables."""
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    server = Path(sys.executable).parent / "moto_server"  # the environment's own, not another on PATH
    server = str(server) if server.exists() else shutil.which("moto_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path_factory.mktemp("moto") / "server.log", "w")
    proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    env = {
        "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{port}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    with environment(env):
        try:
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(env["AWS_ENDPOINT_URL_S3"], timeout=2)
                    break
                except OSError:
                    assert proc.poll() is None and time.time() < deadline, "moto's server did not start"
                    time.sleep(0.2)
            import boto3

            boto3.client("s3").create_bucket(Bucket="pdarts-results")
            yield {"bucket": "pdarts-results", "env": env, "endpoint": env["AWS_ENDPOINT_URL_S3"]}
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


@pytest.fixture(scope="module")
def second_ray():
    """Another Ray instance on this host, as `ray start --head` elsewhere leaves one: token
    authentication, a temp folder of its own (so nothing on the host records it as the one to
    join), and none of the CPU wait policy's variables in its processes. Yields token_head's
    dict with `join_env`, what a driver needs in its environment to join it."""
    gcs, dashboard = free_port(), free_port()
    command = (
        f"env -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY RAY_AUTH_MODE=token ray start --head --port={gcs} "
        f"--dashboard-host=127.0.0.1 --dashboard-port={dashboard} --temp-dir={{temp}} --num-cpus=2 --block"
    )
    with token_head(command, gcs, dashboard) as head:
        yield {**head, "join_env": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head["token"]}}
