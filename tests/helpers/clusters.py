"""The Ray version pyproject.toml pins, and Ray heads of their own that a test starts."""

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

from .paths import ROOT
from .processes import environment, free_port, stop_ray_of


def pinned_ray() -> str:
    """`ray[...]==X` as pyproject.toml pins it."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_dep,) = [d for d in deps if re.match(r"ray\b", d)]
    assert "==" in ray_dep, "Ray must be pinned exactly"
    return ray_dep.replace(" ", "")


@contextlib.contextmanager
def token_head(command: str, gcs: int, dashboard: int):
    """A Ray head started by `command` (a `ray start --head ... --temp-dir={temp} --block`
    line) in a home of its own whose ~/.ray/auth_token holds a fresh token, until its
    dashboard answers; yields {token, gcs, dashboard, env, home}. Its dashboard agent listens
    on a free port: Ray's default (52365) is one per host, and an agent that finds it taken
    stays up without its HTTP service, so the head refuses every job ("No available agent").
    Its processes (found by the temp folder, under that home) are stopped at the end."""
    token = "pdarts-test-" + os.urandom(16).hex()
    home = Path(tempfile.mkdtemp(prefix="pdh-"))
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)
    command = command.replace("{temp}", str(home / "t"))  # short: Ray's socket paths must fit
    if "--dashboard-agent-listen-port" not in command:
        command = command.replace(" --block", f" --dashboard-agent-listen-port={free_port()} --block")
    ray_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PATH=f"{ray_bin}:{env['PATH']}")
    proc = subprocess.Popen(
        ["bash", "-c", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the head did not come up"
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{dashboard}/api/version", timeout=2)
            except urllib.error.HTTPError:
                break  # answering (with 401): up
            except OSError:
                time.sleep(0.5)
                continue
            break
        yield {
            "token": token,
            "gcs": f"127.0.0.1:{gcs}",
            "dashboard": f"http://127.0.0.1:{dashboard}",
            "env": env,
            "home": home,
        }
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        stop_ray_of(home)
        shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def node_cluster(worker_nodes: int, worker_resources: dict, trial_resources: dict, head_cpus: int = 1):
    """A Ray of several nodes on this machine (`ray.cluster_utils.Cluster`), joined by this
    process: a head with `head_cpus` CPUs and the resources of `trial_resources` (100 of each),
    and `worker_nodes` nodes of one CPU and `worker_resources` each. Every Train worker asks
    for `worker_resources` and every Tune trial for `trial_resources` (the environment the
    nodes' processes and the drivers started from here inherit), so a trial and its Train
    controller run on the head and each worker on a node of its own. Yields the Cluster."""
    import json

    import ray
    from ray.cluster_utils import Cluster

    from pdarts_ray.distributed.connect import RAY_ENV
    from pdarts_ray.distributed.testing import TRIAL_RESOURCES_ENV, WORKER_RESOURCES_ENV

    env = {
        **RAY_ENV,
        WORKER_RESOURCES_ENV: json.dumps(worker_resources),
        TRIAL_RESOURCES_ENV: json.dumps(trial_resources),
    }
    nodes = None
    with environment(env):
        try:
            nodes = Cluster(
                initialize_head=True,
                head_node_args={"num_cpus": head_cpus, "resources": {k: 100 for k in trial_resources}},
            )
            for _ in range(worker_nodes):
                nodes.add_node(num_cpus=1, resources=worker_resources)
            ray.init(address=nodes.address)
            yield nodes
        finally:
            ray.shutdown()
            if nodes is not None:
                nodes.shutdown()
