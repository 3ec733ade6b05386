"""Figure 3 and section 4.4.1: the cells found after stage 1, 2 and 3 of a search.

Paper: retrained, the stage-1/2/3 cells of the CIFAR-10 search score 2.90 / 2.82 / 2.58 %
test error, and DARTS V2 (searched at a fixed depth of 8 cells) 2.83 %: searching deeper
finds better cells. DARTS searches with 8 cells and evaluates with 20; P-DARTS grows the
searched network 5 -> 11 -> 17 cells so the last stage is close to the evaluation depth
(section 3.2, the depth gap).

    pdarts-ray reproduce depth --preset paper
    pdarts-ray sweep --experiment depth --preset tiny
    ray submit cluster/gpu.yaml ablations/depth_grid.py -- --preset paper-c10

The sweep (`depth-grid`): the paper's cells per stage 5/11/17 against a constant 8/8/8
(DARTS' depth in every stage) and a milder 5/8/11.
"""

from __future__ import annotations

from ..results.tables import depth as table
from .registry import grid, register_experiment


@register_experiment
def depth():
    space = {"cells": {"grid": [[5, 11, 17], [8, 8, 8], [5, 8, 11]]}}
    return {"table": table.spec, "sweeps": lambda setup: {"": grid("depth-grid", setup, space)}}
