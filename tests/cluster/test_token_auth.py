"""The cluster configs' Ray requires the cluster's token: a head started by the very command
of cluster/local.yaml (on loopback, in a home holding the token where the config mounts it)
refuses clients without the token, on the dashboard's Jobs API and on the GCS, and accepts
them with it."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def head_command(name: str) -> str:
    """The config's `ray start --head` line, with ports of this test's own and no autoscaler."""
    config = yaml.safe_load((ROOT / "cluster" / name).read_text())
    (command,) = [c for c in config["head_start_ray_commands"] if "ray start" in c]
    return command


@pytest.fixture(scope="module")
def head():
    token = "pdarts-test-" + os.urandom(16).hex()
    home = Path(tempfile.mkdtemp(prefix="pdh-"))
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)  # where the config mounts the cluster's token
    gcs, dashboard = free_port(), free_port()
    command = (head_command("local.yaml").replace("--port=6379", f"--port={gcs}")
               .replace("--autoscaling-config=~/ray_bootstrap_config.yaml", "")
               .replace("ulimit -n 65536; ", "")
               + f" --dashboard-port={dashboard} --temp-dir={home}/t --num-cpus=1 --block")
    ray_bin = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PATH=f"{ray_bin}:{env['PATH']}")
    proc = subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.time() + 90
        url = f"http://127.0.0.1:{dashboard}/api/version"
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
            assert time.time() < deadline, "the head did not come up"
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError:
                break  # answering (with 401): up
            except OSError:
                time.sleep(0.5)
                continue
            break
        yield {"token": token, "gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}",
               "env": env, "command": command}
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        stop_processes_of(home)
        shutil.rmtree(home, ignore_errors=True)


def stop_processes_of(home: Path) -> None:
    """Ray's processes of this head only (their command lines name its temp folder)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(home).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), 9)
        except OSError:
            pass


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
    if client == "wrong token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN="pdarts-test-" + "0" * 32)
    elif client == "the token":
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=head["token"])
    proc = subprocess.run([sys.executable, "-c", CONNECT.format(gcs=head["gcs"])], env=env, capture_output=True,
                          text=True, timeout=120)
    if client == "the token":
        assert proc.returncode == 0 and "answer 42" in proc.stdout, proc.stderr[-2000:]
    else:
        assert proc.returncode != 0 and "answer" not in proc.stdout
