"""Table 1: the P-DARTS row (test error, parameters, search cost).

Paper: CIFAR-10 2.50 % test error, 3.4 M parameters, 0.3 GPU-days; CIFAR-100 15.92 %,
3.6 M, 0.3 GPU-days.

    pdarts-ray reproduce table1 --preset paper
    pdarts-ray reproduce table1 --preset paper --dataset cifar100
    pdarts-ray sweep --experiment table1 --preset paper

The sweep: the preset's search per seed (`--repeats`), the searches the table reads.
"""

from __future__ import annotations

from ..results.tables import table1 as table
from .registry import grid, register_experiment


@register_experiment
def table1():
    return {
        "table": table.spec,
        "sweeps": lambda setup: {"": grid("table1", setup, {"seed": {"grid": setup.repeat_seeds()}})},
    }
