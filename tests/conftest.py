import contextlib
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Generated datasets go to a per-session cache, never the user's."""
    if "PDARTS_CACHE" not in os.environ:
        os.environ["PDARTS_CACHE"] = str(tmp_path_factory.mktemp("pdarts-cache"))
    yield


def pinned_ray() -> str:
    """`ray[...]==X` as pyproject.toml pins it."""
    import re
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (ray_dep,) = [d for d in deps if re.match(r"ray\b", d)]
    assert "==" in ray_dep, "Ray must be pinned exactly"
    return ray_dep.replace(" ", "")


def run_cli(*args, cwd=None, env=None, timeout=600):
    """The installed CLI in a fresh process: (returncode, stdout, stderr)."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "pdarts_ray.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


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
    ray.init(num_cpus=4)
    try:
        yield ray
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("RAY_metrics_report_interval_ms", None)
        else:
            os.environ["RAY_metrics_report_interval_ms"] = saved


def prometheus_samples(text: str) -> list[tuple[str, dict, float]]:
    """(name, labels, value) of every labelled sample in Prometheus text."""
    import re

    sample = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
    label = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    out = []
    for line in text.splitlines():
        m = sample.match(line)
        if m:
            out.append((m.group(1), dict(label.findall(m.group(2))), float(m.group(3))))
    return out


def node_metrics_url(ray) -> str:
    """Where the (first) Ray node serves its Prometheus text."""
    node = ray.nodes()[0]
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def exported_until(url: str, prefix: str, done, timeout: float = 60) -> dict:
    """Poll the node's samples whose name starts with `prefix` (by (name, run) label) until
    `done(samples)`, or the timeout; Ray exports them periodically, so the last values of a
    run that just ended arrive a moment later."""
    import time
    import urllib.request

    deadline, samples = time.time() + timeout, {}
    while time.time() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        samples = {
            (name, labels.get("run")): (labels, value)
            for name, labels, value in prometheus_samples(text)
            if name.startswith(prefix)
        }
        if done(samples):
            break
        time.sleep(1)
    return samples


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
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
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
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def kill_group(proc, stop_local_ray: bool = False) -> None:
    """SIGKILL a process started with start_new_session=True and all its children; with
    `stop_local_ray`, also the local Ray it started (its raylet outlives a killed driver)."""
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if stop_local_ray:
        subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ray"), "stop", "--force"], capture_output=True
        )


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def token_head(command: str, gcs: int, dashboard: int):
    """A Ray head started by `command` (a `ray start --head ... --temp-dir={temp} --block`
    line) in a home of its own whose ~/.ray/auth_token holds a fresh token, until its
    dashboard answers; yields {token, gcs, dashboard, env, home}. Its processes (found by the
    temp folder, under that home) are stopped at the end."""
    import shutil
    import subprocess
    import tempfile
    import time
    import urllib.error
    import urllib.request

    token = "pdarts-test-" + os.urandom(16).hex()
    home = Path(tempfile.mkdtemp(prefix="pdh-"))
    (home / ".ray").mkdir()
    (home / ".ray" / "auth_token").write_text(token)
    command = command.replace("{temp}", str(home / "t"))  # short: Ray's socket paths must fit
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
        _stop_processes_of(home)
        shutil.rmtree(home, ignore_errors=True)


def _stop_processes_of(home: Path) -> None:
    """Ray's processes of one head only (their command lines name its temp folder)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(home).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), 9)
        except OSError:
            pass


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


def _ray_processes_under(root: int) -> dict[int, str]:
    """pid -> title (`ray::RayTrainWorker.run`, ...) of the Ray worker processes below `root`."""
    parents = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit():
                parents[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            pass
    below, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in below} - below
        below, grew = below | found, bool(found)
    titles = {}
    for pid in below - {root}:
        try:
            title = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.startswith("ray::"):
            titles[pid] = title
    return titles


@contextlib.contextmanager
def ray_process_env(root: int, keys: tuple[str, ...]):
    """While the block runs, the values of `keys` in the environment each Ray worker process
    below `root` (a pid: a driver that started Ray, or a raylet) started with, as
    {kind: [{key: value}, ...]}, a kind being the process's class (`RayTrainWorker`, or
    `ImplicitFunc` for a Tune trial). Polled every 0.2 s: processes living less are missed."""
    import threading

    seen: dict[int, tuple[str, dict]] = {}
    stop = threading.Event()

    def poll():
        while not stop.wait(0.2):
            for pid, title in _ray_processes_under(root).items():
                kind = title[len("ray::") :].split()[0].split(".")[0]
                if pid in seen:  # a worker started idle takes its task's or actor's title later
                    seen[pid] = (kind if seen[pid][0] == "IDLE" else seen[pid][0], seen[pid][1])
                    continue
                try:
                    raw = (Path("/proc") / str(pid) / "environ").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                env = dict(line.split("=", 1) for line in raw.split("\0") if "=" in line)
                seen[pid] = (kind, {k: env[k] for k in keys if k in env})

    found: dict[str, list[dict]] = {}
    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield found
    finally:
        stop.set()
        watcher.join()
        for kind, env in seen.values():
            found.setdefault(kind, []).append(env)


def raylet_of(home: Path, timeout: float = 60) -> int:
    """The raylet of the head token_head started in `home` (it may start after the dashboard)."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if proc.name.isdigit() and str(home).encode() in cmdline and b"/raylet/raylet" in cmdline:
                return int(proc.name)
        time.sleep(0.5)
    raise AssertionError(f"no raylet under {home}")
