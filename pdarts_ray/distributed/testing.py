"""Test-only switches of the Ray layer, read from the environment, in one place.

Production code never sets them. Tests set them in the driver's environment; the
worker-side ones travel to Ray Train workers through the runtime environment
(`worker_env`), since a worker's environment is its node's, not the driver's. Each is read
once, where a run or a worker starts, never on the way of a report.

- Fault injection (`fault_after_report`, read when a search worker starts): the worker exits
  hard right after reporting global epoch `PDARTS_TEST_EXIT_AFTER_EPOCH`, once per marker
  file `PDARTS_TEST_EXIT_MARKER` (created first, holding the worker's node id, so the
  restarted worker carries on); with `PDARTS_TEST_EXIT_HOLD_S` it first waits that many
  seconds (a test removes its node or kills the driver meanwhile).
- Placement: extra resources (JSON) of each Train worker (`PDARTS_TEST_WORKER_RESOURCES`,
  read from the cluster's environment) and of each Tune trial (`PDARTS_TEST_TRIAL_RESOURCES`,
  read from the driver's): a test cluster keeps them on separate nodes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

EXIT_AFTER_EPOCH_ENV = "PDARTS_TEST_EXIT_AFTER_EPOCH"
EXIT_MARKER_ENV = "PDARTS_TEST_EXIT_MARKER"
EXIT_HOLD_ENV = "PDARTS_TEST_EXIT_HOLD_S"
WORKER_RESOURCES_ENV = "PDARTS_TEST_WORKER_RESOURCES"
TRIAL_RESOURCES_ENV = "PDARTS_TEST_TRIAL_RESOURCES"
# the driver's settings that Train workers need (the data cache is not test-only, but
# travels the same way)
WORKER_ENV_KEYS = ("PDARTS_CACHE", EXIT_AFTER_EPOCH_ENV, EXIT_MARKER_ENV, EXIT_HOLD_ENV)


def worker_env() -> dict:
    """The driver's values of WORKER_ENV_KEYS, for a Train run's runtime environment."""
    return {k: os.environ[k] for k in WORKER_ENV_KEYS if k in os.environ}


def worker_resources() -> dict:
    return json.loads(os.environ.get(WORKER_RESOURCES_ENV, "{}"))


def trial_resources() -> dict:
    return json.loads(os.environ.get(TRIAL_RESOURCES_ENV, "{}"))


def fault_after_report() -> Callable[[dict], None] | None:
    """What a search worker calls after each report: None unless a test asked for a fault."""
    after, marker = os.environ.get(EXIT_AFTER_EPOCH_ENV), os.environ.get(EXIT_MARKER_ENV)
    if after is None or marker is None:
        return None
    epoch, hold = int(after), float(os.environ.get(EXIT_HOLD_ENV, "0"))

    def exit_after(metrics: dict) -> None:
        if metrics.get("global_epoch") == epoch:
            _exit_once(marker, hold)

    return exit_after


def _exit_once(marker: str, hold: float) -> None:
    """Exit hard (after the hold), unless a worker has already done so for this marker."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    import ray

    os.write(fd, ray.get_runtime_context().get_node_id().encode())
    os.close(fd)
    time.sleep(hold)
    os._exit(17)
