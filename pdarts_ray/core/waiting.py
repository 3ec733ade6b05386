"""How idle CPU threads wait, and a look at how busy the machine is.

PyTorch's CPU kernels run on GNU OpenMP, whose idle threads spin for a while before they
sleep (300,000 spins by default). On a quiet machine that saves a wake-up per kernel; on
a busy one, a thread whose core is taken spins while its partner waits, and a search step
runs 10-25x slower. Passive waiting costs a wake-up per kernel but holds up beside other
work, so the default (`auto`) spins on a quiet machine and waits passively on a busy one,
looked at once as the process starts. How threads wait never changes what they compute:
every result stays bit for bit the same at one thread count.

libgomp reads its settings once, when torch loads, so they must be in the environment
before that: the CLI sets them first thing, Ray's processes get them through their
runtime environment, and a script that imports torch itself sets them first
(`pdarts_ray.core.waiting.apply_wait_policy()` before `import torch`). This module
imports nothing heavy for that reason.
"""

from __future__ import annotations

import os
import sys
import time

# name -> the environment it sets; the measured trade-off is in docs/performance.md
WAIT_POLICIES: dict[str, dict[str, str]] = {
    "spin": {"GOMP_SPINCOUNT": "300000"},  # libgomp's own default, made explicit
    "spin-30000": {"GOMP_SPINCOUNT": "30000"},
    "spin-10000": {"GOMP_SPINCOUNT": "10000"},
    "spin-3000": {"GOMP_SPINCOUNT": "3000"},
    "spin-1000": {"GOMP_SPINCOUNT": "1000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
}
AUTO = "auto"  # spin on a quiet machine, passive on a busy one, decided when the process starts
POLICY_NAMES = (AUTO, *WAIT_POLICIES)
DEFAULT_WAIT_POLICY = AUTO
POLICY_ENV = "PDARTS_WAIT_POLICY"  # a user's choice of policy name, for every process it starts
OPENMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
BUSY_THRESHOLD = 0.5  # cores kept busy by other work from which `auto` waits passively


def policy_name() -> str:
    name = os.environ.get(POLICY_ENV, DEFAULT_WAIT_POLICY)
    if name not in POLICY_NAMES:
        from .errors import UserError

        raise UserError(f"{POLICY_ENV}={name}: unknown wait policy (one of {', '.join(POLICY_NAMES)})")
    return name


def resolve_policy(name: str) -> str:
    """A fixed policy's name for `name`: `auto` looks at the machine once (a fraction of a
    second) and waits passively if other work at normal priority keeps at least half a core
    busy."""
    if name != AUTO:
        return name
    busy = busy_cores(0.15)
    return "passive" if busy is not None and busy >= BUSY_THRESHOLD else "spin"


def wait_policy_env(name: str | None = None) -> dict[str, str]:
    """The OpenMP settings a process should start with: the user's own where set (either
    key set by hand means the user chose how threads wait; a process this package started
    has them from its parent), else the policy's."""
    name = name or policy_name()  # a bad name is an error even where it would not be used
    if any(k in os.environ for k in OPENMP_KEYS):
        return {k: os.environ[k] for k in OPENMP_KEYS if k in os.environ}
    return dict(WAIT_POLICIES[resolve_policy(name)])


def apply_wait_policy(name: str | None = None, warn: bool = True) -> dict[str, str]:
    """Put the policy into this process's environment, for it and the processes it starts.
    Once torch is loaded it is too late for this one (libgomp has read its settings): said
    unless `warn` is off (the CLI's `main()` called again from a Python process)."""
    env = wait_policy_env(name)
    if warn and "torch" in sys.modules and any(os.environ.get(k) != v for k, v in env.items()):
        print(
            "warning: torch was imported before the wait policy was set; OpenMP keeps its defaults "
            "(set it before `import torch`, see docs/python.md)",
            file=sys.stderr,
        )
    os.environ.update(env)
    return env


def _cpu_ticks(cpus: set[int]) -> tuple[int, int] | None:
    """(busy, total) jiffies of the given CPUs since boot, from /proc/stat."""
    try:
        lines = open("/proc/stat").read().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        head, *fields = line.split()
        if not head.startswith("cpu") or head == "cpu" or int(head[3:]) not in cpus:
            continue
        ticks = [int(f) for f in fields[:8]]
        total += sum(ticks)
        # all but idle, iowait and niced work: a thread that spins holds its core against
        # background (niced) work, measured as slowing a step by less than a quarter
        busy += sum(ticks) - ticks[1] - ticks[3] - ticks[4]
    return busy, total


def busy_cores(window_s: float = 0.3) -> float | None:
    """How many of this process's cores other processes at normal priority keep busy, over
    a short window (this process's own CPU time and niced work left out). None where /proc
    is not there to ask."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return None
    start, own_start = _cpu_ticks(cpus), os.times()
    if start is None:
        return None
    time.sleep(window_s)
    end, own_end = _cpu_ticks(cpus), os.times()
    busy, total = end[0] - start[0], end[1] - start[1]
    if total <= 0:
        return None
    tick = os.sysconf("SC_CLK_TCK")
    own = ((own_end.user - own_start.user) + (own_end.system - own_start.system)) * tick
    return max(0.0, (busy - own) / total * len(cpus))


def warn_if_busy(threads: int, flag: str, what: str = "this run") -> str | None:
    """One line on stderr when other work leaves fewer free cores than `threads`, naming
    the flag that lowers them. Returns the line (None when the machine has room)."""
    if threads <= 1:
        return None
    busy = busy_cores()
    if busy is None:
        return None
    cores = len(os.sched_getaffinity(0))
    free = cores - busy
    if free >= threads - 0.5:
        return None
    line = (
        f"warning: other work keeps about {busy:.1f} of {cores} cores busy, fewer free than the {threads} "
        f"threads of {what}; it may run several times slower (try {flag}, which changes the rounding)"
    )
    print(line, file=sys.stderr, flush=True)
    return line
