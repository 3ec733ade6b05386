"""The paper's experiments, one module each, registered by `@register_experiment`
(registry.py): the paper's context and the exact commands, the table each reproduces, the
sweeps that explore it and the presets it runs at. Importing this package imports every
module in it, so each registers; a new experiment is one more module here
(docs/adding-an-experiment.md)."""

from __future__ import annotations

import importlib
import pkgutil

from .registry import Experiment, get_experiment, list_experiments, register_experiment

# the paper's experiments in the order `pdarts-ray reproduce --help` lists them; any other
# module follows, by name
PAPER_ORDER = ("table3", "depth", "approx", "dropout", "skip", "refine", "table1", "opspace")
_NOT_EXPERIMENTS = {"registry", "outcomes"}
_found = {m.name for m in pkgutil.iter_modules(__path__)} - _NOT_EXPERIMENTS
for _module in [*(m for m in PAPER_ORDER if m in _found), *sorted(_found - set(PAPER_ORDER))]:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["Experiment", "get_experiment", "list_experiments", "register_experiment"]
