"""M, the skip-connects kept in the final normal cell: M = 0 .. 4.

Paper context (P-DARTS, section 3.3, search space regularisation): after the last stage
the normal cell is refined so that it keeps at most M skip-connects (M = 2 in the
paper), the weakest skip giving way to the next best op. M is a post-processing choice:
one search derives the cell for every M, so this grid is a single search and a table
of five cells.

Run:
    python ablations/skip_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/skip_grid.py -- --preset paper-c10
"""

from pdarts_ray.distributed.ablation import run

SWEEP = {
    "name": "skip-grid",
    "base": {"preset": "paper-c10"},
    "searcher": "grid",
    "space": {"skip_connects": {"grid": [0, 1, 2, 3, 4]}},
}

if __name__ == "__main__":
    run({"": SWEEP}, __doc__)
