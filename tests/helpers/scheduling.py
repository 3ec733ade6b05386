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
"""

from pathlib import Path

RAY_FOLDERS = ("distributed", "cluster")
RAY_MODULES = (
    "test_tour.py",
    "test_wheel.py",  # the docs example in the wheel runs a sweep
)
# modules in the Ray folders that never start or join a Ray (offline checks, a mocked
# `ray.init`): they run beside the chain, not on its path
OFF_CHAIN_MODULES = (
    "test_aws_iam.py",
    "test_cluster_configs.py",
    "test_kuberay.py",
    "test_runtime_env.py",
)
# a test using one of these starts Ray in its worker: it must lie in the chain
RAY_FIXTURES = ("local_ray", "second_ray")
RAY_CHAIN = "ray"


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def is_alone(item) -> bool:
    """Whether a test (None: no test) is marked `alone`: it runs while no other test does."""
    return item is not None and item.get_closest_marker("alone") is not None


def chain_of(nodeid: str) -> str:
    """The chain a test runs in: RAY_CHAIN, or its module's path."""
    module = module_of(nodeid)
    path = Path(module)
    if path.name in OFF_CHAIN_MODULES:
        return module
    if path.parent.name in RAY_FOLDERS or path.name in RAY_MODULES:
        return RAY_CHAIN
    return module


def alone_tests_together(items) -> list:
    """The items with each module's `alone` tests moved up to its first one, in their order:
    a worker then keeps the machine from one to the next (conftest's `_machine_share`)
    instead of waiting, before each, for the other worker's test to end (minutes for a Ray
    test)."""
    by_module: dict[str, list] = {}
    for item in items:
        if is_alone(item):
            by_module.setdefault(module_of(item.nodeid), []).append(item)
    ordered, placed = [], set()
    for item in items:
        module = module_of(item.nodeid)
        if not is_alone(item):
            ordered.append(item)
        elif module not in placed:
            placed.add(module)
            ordered.extend(by_module[module])
    return ordered


def misplaced_ray_tests(items) -> list[str]:
    """Tests that start Ray (by a fixture) outside the Ray chain."""
    return [
        item.nodeid
        for item in items
        if chain_of(item.nodeid) != RAY_CHAIN and any(name in item.fixturenames for name in RAY_FIXTURES)
    ]


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadScopeScheduling

    class ChainScheduling(LoadScopeScheduling):
        """xdist's module-by-module scheduling (largest unit first, a unit whole on one
        worker) over the chains of chain_of."""

        def _split_scope(self, nodeid: str) -> str:
            return chain_of(nodeid)

    return ChainScheduling(config, log)
