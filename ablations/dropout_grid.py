"""Skip-connect dropout schedules, reported for M = 2, 3, 4.

Paper context (P-DARTS, section 3.3 and the ablation of section 4.4): without
regularisation the deeper later stages drift to parameter-free skip-connects. Dropout on
skip-connects, decayed within each stage and raised from stage to stage, counters it; the
paper searches CIFAR-10 with initial rates 0.0/0.4/0.7 (0.0/0.3/0.6 in its first version)
and then keeps at most M skip-connects in the final normal cell (M = 2 in the paper). This
grid compares no dropout with both schedules; M is read off every search, so three
searches give all nine (schedule, M) rows.

Run:
    python ablations/dropout_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/dropout_grid.py -- --preset paper-c10
"""

from pdarts_ray.distributed.ablation import run

SWEEP = {
    "name": "dropout-grid",
    "base": {"preset": "paper-c10"},
    "searcher": "grid",
    "space": {
        "skip_dropout": {"grid": [[0.0, 0.0, 0.0], [0.0, 0.3, 0.6], [0.0, 0.4, 0.7]]},
        "skip_connects": {"grid": [2, 3, 4]},
    },
}

if __name__ == "__main__":
    run({"": SWEEP}, __doc__)
