"""The cluster configs' Ray requires the cluster's token: a head started by the very command
of cluster/local.yaml (on loopback, in a home holding the token where the config mounts it)
refuses clients without the token, on the dashboard's Jobs API and on the GCS, and accepts
them with it."""

import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml
from helpers.clusters import token_head
from helpers.paths import ROOT
from helpers.processes import free_port

pytestmark = pytest.mark.slow


def head_command(name: str) -> str:
    """The config's `ray start --head` line, with ports of this test's own and no autoscaler."""
    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    (command,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    return command


@pytest.fixture(scope="module")
def head():
    gcs, dashboard = free_port(), free_port()
    command = (
        head_command("local.yaml")
        .replace("--port=6379", f"--port={gcs}")
        .replace("--autoscaling-config=~/ray_bootstrap_config.yaml", "")
        .replace("ulimit -n 65536; ", "")
        + f" --dashboard-port={dashboard} --temp-dir={{temp}} --num-cpus=1 --block"
    )
    with token_head(command, gcs, dashboard) as head:
        yield {**head, "command": command}


def test_the_config_starts_ray_with_token_authentication(head):
    assert head["command"].startswith("RAY_AUTH_MODE=token ray start --head")


def _get(url, token=None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_jobs_api_refuses_a_client_without_the_token(head):
    jobs = f"{head['dashboard']}/api/jobs/"
    assert _get(jobs) == 401
    assert _get(jobs, "not-the-token") in (401, 403)
    assert _get(jobs, head["token"]) == 200


CONNECT = """
import ray
ray.init(address="{gcs}", log_to_driver=False)
print("answer", ray.get(ray.remote(lambda: 6 * 7).remote()))
"""


@pytest.mark.parametrize("client", ["no token", "wrong token", "the token"])
def test_a_driver_needs_the_token_to_join_the_gcs(head, client, tmp_path):
    env = {k: v for k, v in head["env"].items()}
    env["HOME"] = str(tmp_path)  # no ~/.ray/auth_token of its own
    env["RAY_NUM_REDIS_GET_RETRIES"] = "3"  # a refused driver retries once a second, 20 times by default
    if client == "wrong token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="pdarts-test-" + "0" * 32)
    elif client == "the token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=head["token"])
    proc = subprocess.run(
        [sys.executable, "-c", CONNECT.format(gcs=head["gcs"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if client == "the token":
        assert proc.returncode == 0 and "answer 42" in proc.stdout, proc.stderr[-2000:]
    else:
        assert proc.returncode != 0 and "answer" not in proc.stdout
        assert "InvalidAuthToken" in proc.stderr, proc.stderr[-2000:]  # refused for its token
