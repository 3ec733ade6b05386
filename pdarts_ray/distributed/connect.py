"""The one place this package joins or starts Ray (`ray_connected`), and where its
dashboard is.

A driver (a sweep, reproduce, an ablation script, `search --workers N`, a data-parallel
retraining) joins, in this order: the address it was given, $RAY_ADDRESS (set under
`ray job submit`), or the cluster `ray start` recorded on this host (as under `ray submit`);
else it starts a local Ray, its dashboard on loopback only, with enough logical CPUs for the
work. It shuts down only what it started or joined: inside a driver already connected to
Ray it does nothing.

Every job this package starts or joins runs with `runtime.job_runtime_env`, which also
names the job's own Ray instance (`RAY_ADDRESS`) for Ray's state API: Ray Train's
placement-group cleaner asks that API about its controller without an address, so the API
would otherwise pick among the Ray instances on the host, and with several it fails (a
traceback every Train run) or asks the wrong one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from collections.abc import Iterator

from .runtime import job_runtime_env

# Environment of a Ray process that starts Ray Train runs: a faster start-up of each run
# (measured 11-13 s -> about 8 s on 2 cores).
RAY_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


@contextlib.contextmanager
def ray_connected(address: str | None = None, cpus: int = 1) -> Iterator[bool]:
    """Ray for the block: joined (`address`, else $RAY_ADDRESS, else the cluster `ray start`
    recorded on this host) or started on this machine with at least `cpus` logical CPUs (a
    scheduling count: one per worker or trial, whatever the cores). Yields whether this call
    connected, and then shuts down on leaving; already connected, it does neither."""
    import ray

    if ray.is_initialized():
        yield False
        return
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    if address or _recorded_cluster() is not None:
        _join(address)
    else:
        _start_local(max(os.cpu_count() or 1, cpus))
    try:
        yield True
    finally:
        ray.shutdown()


def _recorded_cluster() -> str | None:
    """$RAY_ADDRESS, else the cluster `ray start` recorded on this host (None: neither, or "local")."""
    from ray._private.services import canonicalize_bootstrap_address

    return canonicalize_bootstrap_address(None)


def _join(address: str | None) -> None:
    import ray

    env = {}
    if "://" not in (address or os.environ.get("RAY_ADDRESS") or ""):  # not Ray Client, not a URL
        from ray._private.services import canonicalize_bootstrap_address

        gcs = canonicalize_bootstrap_address(address)
        env = {"RAY_ADDRESS": gcs} if gcs else {}
    ray.init(address=address, runtime_env=job_runtime_env(env))


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
