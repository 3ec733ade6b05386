"""The registry of the paper's experiments (pdarts_ray/experiments/): every registered
experiment is whole (its context and commands, sweeps that parse, presets that resolve, a
table that builds on an empty store); the registry renders every table of
benchmarks/results/store exactly as the code before it did; and a new experiment is one
registered function (run through `reproduce` and `sweep --experiment` on Ray in
tests/distributed/test_new_experiment.py)."""

import json

import pytest
from helpers.cli import main_stdout as cli
from helpers.paths import ROOT

from pdarts_ray.core.errors import UserError
from pdarts_ray.distributed.definition import parse_sweep
from pdarts_ray.experiments import get_experiment, list_experiments
from pdarts_ray.results.tables.common import StoreView

STORE = ROOT / "benchmarks" / "results" / "store"
RENDERED = json.loads((ROOT / "tests" / "fixtures" / "reproduce-store-tables.json").read_text())
PAPER_TABLES = ["table3", "depth", "approx", "dropout", "skip", "refine", "table1"]


def test_the_paper_tables_are_registered_in_the_order_reproduce_lists_them():
    assert list_experiments(with_table=True) == [*PAPER_TABLES, "skip-study"]
    assert set(list_experiments()) - set(PAPER_TABLES) == {"opspace", "skip-study"}


def test_every_module_in_the_folder_is_an_experiment_that_registers():
    """A new experiment is one module: nothing lists the modules by hand."""
    modules = {p.stem for p in (ROOT / "pdarts_ray" / "experiments").glob("*.py")}
    assert modules - {"__init__", "registry", "outcomes"} == {n.replace("-", "_") for n in list_experiments()}


def test_an_unknown_experiment_names_the_known_ones():
    with pytest.raises(
        UserError, match=r"unknown experiment 'dropuot' \(choose from table3, depth, .*opspace, skip-study\)"
    ):
        get_experiment("dropuot")


@pytest.mark.parametrize("name", list_experiments())
def test_every_experiment_says_what_it_is_and_how_to_run_it(name):
    found = get_experiment(name)
    assert found.summary and found.doc.startswith(found.summary.split(":")[0])
    assert any(c.startswith(f"pdarts-ray sweep --experiment {name} ") for c in found.commands)
    if found.table is not None:
        assert any(c.startswith(f"pdarts-ray reproduce {name} ") for c in found.commands)


@pytest.mark.parametrize(
    "name, preset",
    [
        (name, preset)
        for name in list_experiments()
        for preset in get_experiment(name).presets
        + (("paper-c100",) if "paper" in get_experiment(name).presets else ())
    ],
)
def test_every_preset_resolves_and_its_sweeps_parse(name, preset, tmp_path):
    found = get_experiment(name)
    setup = found.setup(preset)
    search = {"paper": "paper-c10", "paper-c100": "paper-c100", "study": "skip-study"}.get(preset, preset)
    assert setup.search_preset == search
    definitions = found.sweep_definitions(setup, "exp")
    for part, definition in definitions.items():
        sweep = parse_sweep({**definition, "storage": str(tmp_path)}, f"{name} {part}")
        assert sweep.base["preset"] == setup.search_preset
        assert sweep.name == ("exp" if len(definitions) == 1 else f"exp-{part}")
    if found.table is not None:
        rendered = found.table_spec(setup).build(StoreView(str(tmp_path), setup.experiment))
        assert rendered.name == name and rendered.rows


def test_the_scripts_in_ablations_run_the_experiments_they_name():
    scripts = sorted((ROOT / "ablations").glob("*.py"))
    for script in scripts:
        name = script.read_text().split('"--experiment", "')[1].split('"')[0]
        assert f"ray submit cluster/gpu.yaml ablations/{script.name}" in get_experiment(name).doc
    assert len(scripts) == 5


# The rendering of every table and preset from benchmarks/results/store, as `reproduce --no-run
# --json` printed it (tests/fixtures/reproduce-store-tables.json): taken by the code before the
# registry; taken again when effects got their paired tests and tables their test split's note,
# with every row, column and earlier note as before. Those that count parameters of the paper's
# network for many cells take seconds.
SLOW_RENDERINGS = {
    "skip --preset tiny",
    "skip --preset small",
    "table1 --preset small",
    "table1 --preset tiny",
}


def as_printed(case: str, result) -> dict:
    """A ReproduceResult as `reproduce --json` prints it, but for its seconds and files."""
    words = case.split()
    preset = words[words.index("--preset") + 1]
    dataset = words[words.index("--dataset") + 1] if "--dataset" in words else "cifar10"
    keys = ("experiment", "searches_started", "evaluations_started", "columns", "rows", "notes", "effects")
    return {
        "table": result.table,
        "preset": preset,
        "dataset": dataset,
        **{k: getattr(result, k) for k in (*keys, "missing")},
    }


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_RENDERINGS else c for c in sorted(RENDERED)],
)
def test_the_store_renders_every_table_as_before(case):
    import pdarts_ray

    table, _, preset, *dataset = case.split()
    dataset = dataset[1] if dataset else None
    result = pdarts_ray.reproduce(table, preset, dataset=dataset, storage=str(STORE), run=False)
    assert as_printed(case, result) == RENDERED[case]


def test_the_command_prints_the_same_table(tmp_path):
    case = "dropout --preset tiny"
    argv = ["reproduce", *case.split(), "--no-run", "--storage", STORE, "--json", "--out", tmp_path]
    code, stdout = cli(*argv)
    assert code == 0
    data = json.loads(stdout)
    assert data.pop("files") == [
        str(tmp_path / f) for f in ("dropout.md", "dropout.csv", "dropout.png", "dropout.svg")
    ]
    del data["seconds"]
    assert data == RENDERED[case]


# ---------------------------------------------------------------- a new experiment
# (run through reproduce and a sweep on Ray: tests/distributed/test_new_experiment.py)


def test_a_registered_experiment_is_read_by_the_cli_and_the_api(toy, tmp_path):
    import pdarts_ray

    assert "toy" in pdarts_ray.paper_experiments() and toy.commands == [
        "pdarts-ray reproduce toy --preset smoke"
    ]
    argv = ["--preset", "smoke", "--no-run", "--storage", tmp_path, "--json", "--out", tmp_path / "out"]
    code, stdout = cli("reproduce", "toy", *argv)
    assert code == 0 and json.loads(stdout)["rows"] == [["1", "-"]]
    with pytest.raises(UserError, match="experiment toy runs at smoke, got 'tiny'"):
        toy.setup("tiny")


def test_the_command_prints_the_effects_with_their_tests(tmp_path):
    from pdarts_ray.results.tables.effects import record_cells

    case = "dropout --preset small"
    code, stdout = cli("reproduce", *case.split(), "--no-run", "--storage", STORE, "--out", tmp_path)
    assert code == 0
    effects = stdout[stdout.index("Effects") :]
    for record in RENDERED[case]["effects"]:
        _, _, ours, interval, seeds, p, _, verdict = record_cells(record)
        assert all(cell in effects for cell in (ours, interval, p, verdict)), (record, effects)
