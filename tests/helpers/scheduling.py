"""Which worker runs which tests (pytest-xdist): every test that starts or joins Ray in one
chain on one worker, every other module whole on one worker.

Two Rays side by side on 2 cores slow each other down by more than they gain (the whole run
took 59 min with the Ray tests in two groups), and a Ray process looking for its cluster
(`address="auto"`, or a driver reading the address `ray start` recorded) can find another
test's. A module whole on one worker builds its module fixtures once and keeps its tests'
order. The chain is chosen from the test's path alone, in the scheduler that xdist asks for
(its `pytest_xdist_make_scheduler` hook): `--dist loadgroup` does the same through an
`xdist_group` marker that xdist writes into the test's id, which pytest 9.2 no longer reads,
so every test became a group of its own and the Ray tests ran on both workers at once.

The units are handed out in the order of `run_order`: the Ray chain first (the longest), then
the other modules, costliest first by their tests' `slow` marks, so that the run ends on
short modules spread over both workers instead of one long module running alone (a 5-minute
fixture, started last, was the whole run's last 5 minutes).
"""

import os
from pathlib import Path

import pytest

RAY_FOLDERS = ("distributed", "cluster")
RAY_MODULES = (
    "test_tour.py",
    "test_wheel.py",  # the docs example in the wheel runs a sweep
)
# a test using one of these starts Ray in its worker: it must lie in the chain
RAY_FIXTURES = ("local_ray", "second_ray")
RAY_CHAIN = "ray"


def chain_of(nodeid: str) -> str:
    """The chain a test runs in: RAY_CHAIN, or its module's path."""
    module = nodeid.split("::", 1)[0]
    path = Path(module)
    if path.parent.name in RAY_FOLDERS or path.name in RAY_MODULES:
        return RAY_CHAIN
    return module


def misplaced_ray_tests(items) -> list[str]:
    """Tests that start Ray (by a fixture) outside the Ray chain."""
    return [
        item.nodeid
        for item in items
        if chain_of(item.nodeid) != RAY_CHAIN and any(name in item.fixturenames for name in RAY_FIXTURES)
    ]


def seconds_of(item) -> float:
    """About how long a test takes in a whole run: its `slow(seconds=N)`, 10 s for another slow
    test (the marker's threshold), 1 s for the rest."""
    slow = item.get_closest_marker("slow")
    if slow is None:
        return 1
    return slow.kwargs.get("seconds", 10)


def run_order(items) -> list:
    """The items, module by module: the Ray chain, then the other modules, costliest first
    (seconds_of), each module's tests in their own order."""
    modules: dict[str, list] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)

    def cost(module: str) -> tuple:
        if chain_of(module) == RAY_CHAIN:
            return (0, 0)  # the chain keeps its modules' order
        return (1, -sum(seconds_of(item) for item in modules[module]))

    return [item for module in sorted(modules, key=cost) for item in modules[module]]


def pytest_collection_modifyitems(config, items):
    misplaced = misplaced_ray_tests(items)
    if misplaced:
        raise pytest.UsageError(
            f"{misplaced[0]} starts Ray outside the Ray chain: move it to tests/distributed "
            "or add its module to RAY_MODULES in tests/helpers/scheduling.py"
        )
    if "PYTEST_XDIST_WORKER" in os.environ:  # only xdist's workers hand their order on
        items[:] = run_order(items)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # the units in the order the workers collected them

    class ChainScheduling(LoadScopeScheduling):
        """xdist's module-by-module scheduling (largest unit first, a unit whole on one
        worker) over the chains of chain_of."""

        def _split_scope(self, nodeid: str) -> str:
            return chain_of(nodeid)

    return ChainScheduling(config, log)
