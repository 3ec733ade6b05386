"""Cells per stage: the depth schedule of the progressive search.

Paper context (P-DARTS, section 3.2 and the discussion of the depth gap): DARTS searches
with 8 cells and evaluates with 20; P-DARTS grows the searched network 5 -> 11 -> 17
cells so the last stage is close to the evaluation depth. This grid compares the
paper's 5/11/17 with a constant 8/8/8 (DARTS' depth in every stage) and a milder
5/8/11.

Run:
    python ablations/depth_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/depth_grid.py -- --preset paper-c10
"""

from pdarts_ray.distributed.ablation import run

SWEEP = {
    "name": "depth-grid",
    "base": {"preset": "paper-c10"},
    "searcher": "grid",
    "space": {"cells": {"grid": [[5, 11, 17], [8, 8, 8], [5, 8, 11]]}},
}

if __name__ == "__main__":
    run({"": SWEEP}, __doc__)
