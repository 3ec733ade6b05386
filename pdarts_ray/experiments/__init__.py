"""The paper's experiments, one module each, registered by `@register_experiment`
(registry.py): the paper's context and the exact commands, the table each reproduces, the
sweeps that explore it and the presets it runs at. Importing this package registers them all,
in the order `pdarts-ray reproduce --help` lists them; a new experiment is one more module
here and one more name below (docs/adding-an-experiment.md)."""

from __future__ import annotations

import importlib

from .registry import Experiment, get_experiment, list_experiments, register_experiment

MODULES = ("table3", "depth", "approx", "dropout", "skip", "refine", "table1", "opspace")
for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["Experiment", "get_experiment", "list_experiments", "register_experiment"]
