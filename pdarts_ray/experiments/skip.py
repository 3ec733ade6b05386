"""Section 4.4.3: a search refined to M = 0..4 skip-connects in the normal cell.

Paper: after the last stage the normal cell is refined so that it keeps at most M
skip-connects, the weakest skip giving way to the next best op (section 3.3). The cell of
one search with skip dropout 0.0/0.3/0.6, refined to M = 0, 1, 2, 3, 4, retrains to
2.78 / 2.68 / 2.69 / 2.84 / 2.97 % with 4.1 / 3.7 / 3.3 / 3.0 / 2.7 M parameters: M = 2 is
the paper's choice.

    pdarts-ray reproduce skip --preset paper
    pdarts-ray sweep --experiment skip --preset tiny
    ray submit cluster/gpu.yaml ablations/skip_grid.py -- --preset paper-c10

The sweep (`skip-grid`): M is a post-processing choice, so one search derives the cell for
every M: a single search and a table of five cells.
"""

from __future__ import annotations

from ..results.tables import skip as table
from .registry import grid, register_experiment


@register_experiment
def skip():
    space = {"skip_connects": {"grid": [0, 1, 2, 3, 4]}}
    return {"table": table.spec, "sweeps": lambda setup: {"": grid("skip-grid", setup, space)}}
