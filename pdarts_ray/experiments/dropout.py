"""Section 4.4.3: skip-connect dropout against none, each cell refined to M = 2, 3, 4.

Paper: without regularisation the deeper later stages drift to parameter-free
skip-connects; dropout on skip-connects, decayed within each stage and raised from stage to
stage, counters it (section 3.3). Without skip dropout the normal cell keeps 8 skip-connects
before refinement and retrains to 2.93 / 3.28 / 3.51 % at M = 2 / 3 / 4; with dropout
0.0/0.3/0.6 it keeps 4 and retrains to 2.69 / 2.84 / 2.97 %: dropout holds skip-connects
down and the cells are better. The paper's final CIFAR-10 search uses 0.0/0.4/0.7.

    pdarts-ray reproduce dropout --preset paper
    pdarts-ray sweep --experiment dropout --preset tiny
    ray submit cluster/gpu.yaml ablations/dropout_grid.py -- --preset paper-c10

The sweep (`dropout-grid`): no dropout against both schedules; M is read off every search,
so three searches give all nine (schedule, M) rows.
"""

from __future__ import annotations

from ..results.tables import dropout as table
from .registry import grid, register_experiment

SPACE = {
    "skip_dropout": {"grid": [[0.0, 0.0, 0.0], [0.0, 0.3, 0.6], [0.0, 0.4, 0.7]]},
    "skip_connects": {"grid": [2, 3, 4]},
}


@register_experiment
def dropout():
    return {"table": table.spec, "sweeps": lambda setup: {"": grid("dropout-grid", setup, SPACE)}}
