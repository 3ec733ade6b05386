"""The environment every Ray process of this package starts with: the CPU wait policy
(core/waiting.py), which libgomp reads once, when torch loads, so it must be there when
the process starts. A job gets it through its runtime environment (`ray.init`), and every
Ray Train run through its own `worker_runtime_env` as well, not left to Ray's inheritance.
"""

from __future__ import annotations

import json
import os

from ..core.waiting import wait_policy_env


def job_runtime_env(env: dict[str, str] | None = None) -> dict | None:
    """A job's runtime environment: the wait policy and `env`, less the variables a job
    submitted with its own runtime environment sets (Ray refuses to merge one twice)."""
    submitted = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    taken = (submitted.get("runtime_env") or {}).get("env_vars") or {}
    env_vars = {k: v for k, v in {**wait_policy_env(), **(env or {})}.items() if k not in taken}
    return {"env_vars": env_vars} if env_vars else None


def worker_runtime_env(env: dict[str, str], policy: dict[str, str] | None = None) -> dict:
    """The runtime environment of a Ray Train run's workers (or of Ray tasks): the wait
    policy (`policy`, as the driver computed it, else this process's) and `env`."""
    return {"env_vars": {**(wait_policy_env() if policy is None else policy), **env}}
