"""The suite's scheduling (helpers/scheduling.py), run by pytest-xdist on a small tree of
tests: the Ray folders' tests form one chain on one worker, in their order, and every other
module runs whole on one worker."""

import subprocess
import sys
from types import SimpleNamespace

from helpers.paths import ROOT
from helpers.scheduling import RAY_CHAIN, alone_tests_together, chain_of, misplaced_ray_tests

RECORDING_TEST = """
import os

def _record(name):
    with open(os.environ["RECORD"], "a") as out:
        out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {__name__}.{name}\\n")

""" + "".join(f"def test_{i}():\n    _record('test_{i}')\n\n" for i in range(3))

TREE = {
    "distributed/test_a.py": RECORDING_TEST,
    "distributed/test_b.py": RECORDING_TEST,
    "cluster/test_c.py": RECORDING_TEST,
    "cluster/test_kuberay.py": RECORDING_TEST,  # in a Ray folder, but off the chain
    "test_tour.py": RECORDING_TEST,
    "core/test_d.py": RECORDING_TEST,
    "core/test_e.py": RECORDING_TEST,
    "test_f.py": RECORDING_TEST,
}


def test_the_ray_chain_runs_on_one_worker_and_other_modules_whole(tmp_path):
    tree = tmp_path / "tree"
    for name, text in TREE.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    (tree / "pytest.ini").write_text("[pytest]\n")
    record = tmp_path / "record.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n2", "-p", "helpers.scheduling", "-p", "no:cacheprovider"],
        cwd=tree,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "tests"), "RECORD": str(record)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = [line.split() for line in record.read_text().splitlines()]
    assert len(ran) == 3 * len(TREE)
    workers_of = {}
    for worker, test in ran:
        module = test.split(".")[0]
        chain = RAY_CHAIN if module in ("test_a", "test_b", "test_c", "test_tour") else module
        workers_of.setdefault(chain, []).append((worker, test))
    assert all(len({w for w, _ in runs}) == 1 for runs in workers_of.values()), workers_of
    # the chain runs its modules one after another, each in its own order
    chain = [t.split(".") for _, t in workers_of[RAY_CHAIN]]
    assert [name for _, name in chain] == ["test_0", "test_1", "test_2"] * 4
    assert len({module for module, _ in chain}) == 4
    assert len({w for w, _ in ran}) == 2  # the other modules ran beside the chain


def test_chains_from_test_ids():
    assert chain_of("tests/distributed/test_jobs.py::test_x[no token]") == RAY_CHAIN
    assert chain_of("tests/cluster/test_token_auth.py::test_y") == RAY_CHAIN
    assert chain_of("tests/test_wheel.py::test_z") == RAY_CHAIN
    assert chain_of("tests/core/test_cells.py::TestCell::test_w") == "tests/core/test_cells.py"
    assert chain_of("tests/cluster/test_kuberay.py::test_v") == "tests/cluster/test_kuberay.py"


def test_a_test_starting_ray_outside_the_chain_is_named():
    items = [
        SimpleNamespace(nodeid="tests/core/test_x.py::test_ray", fixturenames=["tmp_path", "local_ray"]),
        SimpleNamespace(nodeid="tests/core/test_x.py::test_plain", fixturenames=["tmp_path"]),
        SimpleNamespace(nodeid="tests/distributed/test_y.py::test_ray", fixturenames=["local_ray"]),
    ]
    assert misplaced_ray_tests(items) == ["tests/core/test_x.py::test_ray"]


def test_a_modules_alone_tests_run_one_after_another_from_its_first():
    def item(nodeid, alone=False):
        return SimpleNamespace(nodeid=nodeid, get_closest_marker=lambda name: name if alone else None)

    items = [
        item("tests/core/test_x.py::a"),
        item("tests/core/test_x.py::b", alone=True),
        item("tests/core/test_x.py::c"),
        item("tests/core/test_x.py::d", alone=True),
        item("tests/core/test_y.py::e"),
        item("tests/core/test_y.py::f", alone=True),
        item("tests/core/test_x.py::g", alone=True),
    ]
    assert [i.nodeid.split("::")[1] for i in alone_tests_together(items)] == list("abdgcef")
