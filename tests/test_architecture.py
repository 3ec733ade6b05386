"""The package's shape, read from its code: layers, imports, module sizes, a light CLI.

Layers, bottom up: core (plain PyTorch), evaluation, plots, results, experiments (the
paper's experiments, registered), distributed (the Ray layer), api, cli. A module may import
its own layer and the layers below it; `ray` is imported by the Ray layer only.
"""

import ast
import importlib.util
import subprocess
import sys

import pytest
from helpers.paths import ROOT

spec = importlib.util.spec_from_file_location("package_graph", ROOT / "docs" / "package_graph.py")
graph_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph_module)

MAX_LINES = 500
ORDER = ("top", "core", "evaluation", "plots", "results", "experiments", "distributed", "api", "cli")
# an old module path kept for experiments saved before the package had layers (see its docstring)
OLD_PATHS = {"pdarts_ray.sweep"}


@pytest.fixture(scope="module")
def graph():
    return graph_module.import_graph()


def test_the_graph_sees_imports_inside_functions(graph):
    # cli.search and cli.sweep import the API inside functions, the API the Ray layer
    assert "pdarts_ray.api" in graph["pdarts_ray.cli.search"]
    assert "pdarts_ray.distributed.sweep" in graph["pdarts_ray.api"]


@pytest.mark.parametrize("command", ["search", "evaluate", "sweep", "reproduce"])
def test_the_commands_that_run_work_go_through_the_api(graph, command):
    assert "pdarts_ray.api" in graph[f"pdarts_ray.cli.{command}"]


def test_no_import_cycles(graph):
    assert graph_module.cycles(graph) == []


def test_a_cycle_is_found_where_there_is_one():
    assert graph_module.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_import_only_downwards(graph):
    upward = []
    for src, targets in graph.items():
        if src in OLD_PATHS:
            continue
        for dst in targets:
            a, b = graph_module.layer(src), graph_module.layer(dst)
            if a == "top":  # pdarts_ray/__init__: names resolved lazily, nothing imported at import time
                continue
            if ORDER.index(b) > ORDER.index(a):
                upward.append(f"{src} -> {dst}")
    assert upward == []


def test_only_the_ray_layer_imports_ray():
    found = graph_module.modules()
    importers = sorted(m for m, p in found.items() if "ray" in graph_module.imports_of(m, p, set(found))[1])
    assert importers, "the Ray layer imports ray"
    assert [m for m in importers if graph_module.layer(m) != "distributed"] == []


def _modules_calling(spelt) -> list[str]:
    """The package's modules whose code calls a function the way `spelt(name)` accepts, by its
    syntax tree (so a docstring or comment that names it does not count)."""
    calling = set()
    for module, path in graph_module.modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and spelt(ast.unparse(node.func)):
                calling.add(module)
    return sorted(calling)


def test_ray_is_started_in_one_module_and_trainers_built_in_one():
    # joining or starting Ray (address, runtime environment, dashboard) and a TorchTrainer's
    # settings each have one home that every caller goes through
    assert _modules_calling(lambda f: f == "ray.init") == ["pdarts_ray.distributed.connect"]
    trainers = _modules_calling(lambda f: f.split(".")[-1] == "TorchTrainer")
    assert trainers == ["pdarts_ray.distributed.trainer"]


def test_no_module_is_over_the_line_limit():
    long = {
        m: n for m, p in graph_module.modules().items() if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


@pytest.mark.parametrize(
    "code",
    [
        "import pdarts_ray",
        "from pdarts_ray.cli.main import build_parser; build_parser().format_help()",
    ],
)
def test_the_package_and_the_help_stay_light(code):
    check = (
        f"{code}\nimport sys\n"
        "heavy = [m for m in ('torch', 'ray', 'pyarrow', 'matplotlib') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_help_runs_without_heavy_imports():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pdarts_ray.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0 and "reproduce" in proc.stdout
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "ray", "pyarrow", "matplotlib"}
