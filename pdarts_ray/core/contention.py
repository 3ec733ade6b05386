"""`pdarts-ray bench contention`: a search step alone and beside busy cores, per wait policy.

Each measurement is one `bench step` process started with the policy in its environment
(libgomp reads it only when torch loads). Busy cores are plain Python loops this module
starts before the process and stops after it. Alone and beside run as interleaved pairs,
policy after policy, so that the machine's drift falls on every policy alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from .errors import UserError
from .waiting import OPENMP_KEYS, POLICY_ENV, POLICY_NAMES, WAIT_POLICIES

_BUSY_LOOP = "while True: pass"


def start_busy_cores(n: int, nice: int = 0) -> list[subprocess.Popen]:
    """`n` processes that keep a core busy each, at niceness `nice` (19: background work)."""
    return [
        subprocess.Popen([sys.executable, "-c", f"import os; os.nice({nice})\n{_BUSY_LOOP}"])
        for _ in range(n)
    ]


def stop_busy_cores(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def policy_process_env(policy: str) -> dict[str, str]:
    """This environment with the policy's OpenMP settings in place of any set here."""
    env = {k: v for k, v in os.environ.items() if k not in OPENMP_KEYS}
    env[POLICY_ENV] = policy
    return env


def time_step(
    stage: int, step_flags: list[str], policy: str, busy: int, timeout_s: float, nice: int = 0
) -> dict | None:
    """`bench step`'s result in a fresh process beside `busy` busy cores (with the OpenMP
    settings it ran with); None if the process ran past `timeout_s`."""
    from .bench import bench_step_process

    loops = start_busy_cores(busy, nice)
    try:
        return bench_step_process(
            stage,
            step_flags,
            env=policy_process_env(policy),
            timeout_s=timeout_s,
            label=f" (policy {policy})",
        )
    except subprocess.TimeoutExpired:
        return None
    finally:
        stop_busy_cores(loops)


def _median(values: list[float | None]) -> float | None:
    """The median, or None when any run timed out (its true time is unknown, only long)."""
    return None if any(v is None for v in values) else statistics.median(values)


def bench_contention(
    step_flags: list[str],
    stages=(1, 2, 3),
    policies=POLICY_NAMES,
    busy: int = 1,
    pairs: int = 1,
    timeout_s: float = 900.0,
    busy_nice: int = 0,
    progress=None,
) -> list[dict]:
    """One row per (stage, policy): median step alone and beside `busy` busy cores (at
    niceness `busy_nice`), their ratio, and the time alone relative to the first policy's
    (the baseline)."""
    for name in policies:
        if name not in POLICY_NAMES:
            raise UserError(f"--policies: unknown wait policy '{name}' (one of {', '.join(POLICY_NAMES)})")
    rows = []
    for stage in stages:
        times = {name: {"alone": [], "beside": []} for name in policies}
        ran_with = {name: {"alone": [], "beside": []} for name in policies}
        for pair in range(pairs):
            for name in policies:
                # alternate which half of a pair goes first, so neither always follows a busy spell
                order = ("alone", "beside") if pair % 2 == 0 else ("beside", "alone")
                for kind in order:
                    result = time_step(
                        stage, step_flags, name, busy if kind == "beside" else 0, timeout_s, busy_nice
                    )
                    seconds = None if result is None else result["median_step_s"]
                    times[name][kind].append(seconds)
                    ran_with[name][kind].append(None if result is None else result.get("openmp_env"))
                    if progress:
                        shown = "timed out" if seconds is None else f"{seconds:.3f} s"
                        print(
                            f"stage {stage} pair {pair + 1}/{pairs} {name} {kind}: {shown}",
                            file=progress,
                            flush=True,
                        )
        base = _median(times[policies[0]]["alone"])
        for name in policies:
            alone, beside = _median(times[name]["alone"]), _median(times[name]["beside"])
            rows.append(
                {
                    "stage": stage,
                    "policy": name,
                    "env": WAIT_POLICIES.get(name),
                    "ran_with": ran_with[name],
                    "busy_cores": busy,
                    "busy_nice": busy_nice,
                    "pairs": pairs,
                    "alone_s": alone,
                    "beside_s": beside,
                    "alone_runs_s": times[name]["alone"],
                    "beside_runs_s": times[name]["beside"],
                    "slowdown": None if alone is None or beside is None else beside / alone,
                    "alone_vs_baseline": None if alone is None or base is None else alone / base,
                }
            )
    return rows
