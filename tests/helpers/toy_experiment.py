"""A toy experiment (the `toy` fixture of tests/conftest.py registers it for one test): one
search of the preset and a table of its best validation accuracy."""

from pdarts_ray.experiments import get_experiment, register_experiment
from pdarts_ray.experiments.registry import grid


def toy_table(setup):
    """The best validation accuracy of one search of the preset."""
    from pdarts_ray.results.tables.common import Rendered, TableSpec, fmt, notes, search_need

    need = search_need(setup)

    def build(store):
        row = store.search(need)
        value = fmt(row["best_valid_acc"] if row else None, 3)
        figure = {"groups": ["best valid"], "series": {"ours": [row and row["best_valid_acc"]]}, "ylabel": ""}
        return Rendered("toy", "A toy", notes(setup, []), ["search", "best valid"], [["1", value]], figure)

    return TableSpec("toy", "a toy", "pdarts-ray reproduce toy", "none", [need], lambda store: [], build)


def register_toy():
    """Registers the toy experiment (unregister_experiment("toy") removes it) and returns it."""

    @register_experiment
    def toy():
        return {
            "doc": "A toy experiment.\n\n    pdarts-ray reproduce toy --preset smoke\n",
            "table": toy_table,
            "sweeps": lambda setup: {"": grid("toy", setup, {"seed": {"grid": [setup.seed]}})},
            "presets": ("smoke",),
        }

    return get_experiment("toy")
