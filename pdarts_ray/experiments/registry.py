"""The registry of experiments: `@register_experiment` on a function that describes one,
`get_experiment(name)`, `list_experiments()`.

An experiment is one of the paper's experiments as this package runs it: the module that
registers it holds the paper's context and the exact commands (its docstring), the table it
reproduces (a table spec of `results/tables/`, or none), the sweeps that explore it, and the
presets it runs at. Everything reads it from here: `pdarts-ray reproduce NAME`,
`pdarts-ray sweep --experiment NAME`, the Python API and the scripts in `ablations/`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..core.errors import UserError
from ..results.tables.common import DATASETS, PAPER_PRESETS, Setup, TableSpec, resolve_setup

# a search preset given where a reproduce preset is expected: `--preset paper-c10` as the
# scripts in ablations/ have always taken it
SEARCH_PRESET_VARIANTS = {"paper-c10": ("paper", "cifar10"), "paper-c100": ("paper", "cifar100")}


@dataclass(frozen=True)
class Experiment:
    """One registered experiment (see the module docstring)."""

    name: str
    doc: str  # the paper's context and the exact commands
    sweeps: Callable[[Setup], dict[str, dict]]  # sweep definitions by part name ("" for a single one)
    table: Callable[[Setup], TableSpec] | None = None
    presets: tuple[str, ...] = PAPER_PRESETS

    @property
    def summary(self) -> str:
        """The docstring's first paragraph on one line, without its final period."""
        return " ".join(self.doc.split("\n\n")[0].split()).rstrip(".")

    @property
    def commands(self) -> list[str]:
        """The docstring's command lines."""
        return [
            line.strip()
            for line in self.doc.splitlines()
            if line.strip().startswith(("pdarts-ray ", "python ", "ray "))
        ]

    def setup(
        self,
        preset: str = "tiny",
        dataset: str | None = None,
        runs: int | None = None,
        repeats: int | None = None,
    ) -> Setup:
        """The resolved search and evaluation configs of a preset (smoke, tiny, small, paper;
        or a search preset: paper-c10 and paper-c100 name the paper's)."""
        if preset in SEARCH_PRESET_VARIANTS:
            preset, named = SEARCH_PRESET_VARIANTS[preset]
            if dataset not in (None, named):
                raise UserError(f"--dataset: {dataset} contradicts the search preset's {named}")
            dataset = named if named != DATASETS[0] else dataset
        if preset not in self.presets:
            named = [p for p, (variant, _) in SEARCH_PRESET_VARIANTS.items() if variant in self.presets]
            runs_at = ", ".join([*self.presets, *named])
            raise UserError(f"--preset: experiment {self.name} runs at {runs_at}, got {preset!r}")
        return resolve_setup(preset, dataset, runs, repeats)

    def table_spec(self, setup: Setup) -> TableSpec:
        if self.table is None:
            raise UserError(f"experiment {self.name} reproduces no table (it is a sweep: pdarts-ray sweep)")
        return self.table(setup)

    def sweep_definitions(self, setup: Setup, name: str | None = None) -> dict[str, dict]:
        """The experiment's sweep definitions at a preset, by part, each named `name` (default
        the definition's own name and the time), with `-<part>` where there are several."""
        definitions = self.sweeps(setup)
        prefix = name or f"{next(iter(definitions.values()))['name']}-{time.strftime('%Y%m%d-%H%M%S')}"
        return {
            part: {**d, "name": prefix if len(definitions) == 1 else f"{prefix}-{part}"}
            for part, d in definitions.items()
        }


_REGISTRY: dict[str, Experiment] = {}


def register_experiment(fn: Callable[[], dict] | None = None, *, name: str | None = None):
    """Register the experiment a function describes: the function's name is the experiment's,
    its module's docstring the experiment's context (unless it returns a `doc`), and it returns
    the other keyword arguments of `Experiment` (`sweeps`, `table`, `presets`). Returns the
    function unchanged."""

    def register(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"experiment {key!r} is registered twice")
        described = fn()
        described.setdefault("doc", inspect.getmodule(fn).__doc__ or "")
        _REGISTRY[key] = Experiment(key, **described)
        return fn

    return register(fn) if fn is not None else register


def unregister_experiment(name: str) -> None:
    """Take an experiment out of the registry (one registered by a test)."""
    _REGISTRY.pop(name, None)


def list_experiments(with_table: bool = False) -> list[str]:
    """The registered experiments' names in the order they were registered; with `with_table`
    only those that reproduce a table."""
    return [n for n, e in _REGISTRY.items() if e.table is not None or not with_table]


def get_experiment(name: str) -> Experiment:
    if name not in _REGISTRY:
        raise UserError(f"unknown experiment {name!r} (choose from {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def grid(name: str, setup: Setup, space: dict, **config) -> dict:
    """A grid sweep definition on the setup's search preset, `config` over it."""
    base = {"preset": setup.search_preset, **({"config": config} if config else {})}
    return {"name": name, "base": base, "searcher": "grid", "space": space}
