"""Pictures (PNG and SVG, rendered headless): a genotype's cells, a search run's alphas,
skip-connects and memory, and the grouped bars of the paper's tables.

`plot_genotype`, `plot_run`, `plot_bars` and `RUN_FIGURES` are importable from here
(matplotlib is loaded on first use).
"""

import importlib

_WHERE = {"plot_bars": "bars", "plot_genotype": "cells", "plot_run": "runs", "RUN_FIGURES": "runs"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
