"""Joining or starting Ray for a driver (a sweep, reproduce, an ablation script), and where
its dashboard is.

Every job this package starts or joins runs with `runtime.job_runtime_env`, which also
names the job's own Ray instance (`RAY_ADDRESS`) for Ray's state API: Ray Train's
placement-group cleaner asks that API about its controller without an address, so the API
would otherwise pick among the Ray instances on the host, and with several it fails (a
traceback every Train run) or asks the wrong one.
"""

from __future__ import annotations

import math
import os
import socket
import sys

from .definition import Sweep
from .runtime import job_runtime_env

# Environment of a Ray process that starts Ray Train runs: a faster start-up of each run
# (measured 11-13 s -> about 8 s on 2 cores).
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def join_ray(address: str | None, **kwargs) -> None:
    """Join `address` (None: $RAY_ADDRESS, else the cluster `ray start` recorded on this host)."""
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    env = {}
    if "://" not in (address or os.environ.get("RAY_ADDRESS") or ""):  # not Ray Client, not a URL
        gcs = canonicalize_bootstrap_address(address)
        env = {"RAY_ADDRESS": gcs} if gcs else {}
    ray.init(address=address, runtime_env=job_runtime_env(env), **kwargs)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_local(num_cpus: int) -> None:
    import ray
    from ray._private.ray_constants import GCS_PORT_ENVIRONMENT_VARIABLE

    # the GCS's port is chosen here (Ray reads it from the environment when it starts a head)
    # so that the job's processes can be told which instance is theirs
    chosen = GCS_PORT_ENVIRONMENT_VARIABLE not in os.environ
    port = os.environ.setdefault(GCS_PORT_ENVIRONMENT_VARIABLE, str(_free_port()))
    try:
        # the dashboard stays on: Train V2 leaks finished trials' placement groups without it;
        # loopback only, as its Jobs API runs any code it is sent
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            runtime_env=job_runtime_env({"RAY_ADDRESS": f"127.0.0.1:{port}"}),
        )
    finally:
        if chosen:
            os.environ.pop(GCS_PORT_ENVIRONMENT_VARIABLE, None)


def connect_ray(address: str | None, sweep: Sweep) -> bool:
    """Join `address`, $RAY_ADDRESS or a running cluster (under `ray submit`); else start a
    local Ray whose logical CPUs let `max_concurrent_trials` trials run side by side.
    True if this call started or joined Ray (and should shut it down)."""
    import ray

    from .trial import TRIAL_DRIVER_CPU

    if ray.is_initialized():
        return False
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if address:
        join_ray(address)
        return True
    from ray._private.services import canonicalize_bootstrap_address

    if canonicalize_bootstrap_address(None) is not None:
        join_ray(None)
        return True
    per_trial = sweep.cpus_per_trial * sweep.workers_per_trial + TRIAL_DRIVER_CPU
    _start_local(max(os.cpu_count() or 1, math.ceil(sweep.max_concurrent_trials * per_trial)))
    return True


def dashboard_url() -> str | None:
    """The connected cluster's dashboard address, None where it runs without one."""
    try:
        from ray._private.worker import get_dashboard_url

        url = get_dashboard_url()
    except Exception:  # a Ray without the private helper: no address to show
        return None
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def announce_dashboard() -> None:
    """One line on stderr (stdout may carry JSON): where to watch the sweep."""
    url = dashboard_url()
    if not url:
        return
    try:
        from ray._private.authentication.authentication_utils import is_token_auth_enabled

        token = is_token_auth_enabled()
    except ImportError:
        token = False
    how = "; sign in with the token `ray get-auth-token` prints" if token else ""
    print(f"Ray dashboard: {url} (trials' metrics: ray_pdarts_*{how})", file=sys.stderr, flush=True)


def start_ray(workers: int) -> bool:
    """Connect to $RAY_ADDRESS or start a local Ray; False if Ray was already running."""
    import ray

    if ray.is_initialized():
        return False
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if os.environ.get("RAY_ADDRESS") not in (None, "", "local"):
        join_ray(None, log_to_driver=True)
    else:
        _start_local(max(os.cpu_count() or 1, workers))  # logical CPUs: one per worker, whatever the cores
    return True


def use_gpus(device: str, workers: int) -> bool:
    """Whether Ray Train workers of a run with this device setting get a GPU each."""
    import ray

    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    return ray.cluster_resources().get("GPU", 0) >= workers  # auto: GPUs if the cluster has enough
