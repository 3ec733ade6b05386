"""Op-space schedules: how many candidate ops each stage keeps per edge.

Paper context (P-DARTS, section 3.2, search space approximation): the op space shrinks
as the network deepens, 8 -> 5 -> 3 ops per edge on CIFAR-10, so the 17-cell final
stage fits in memory. This grid compares the paper's 8/5/3 with a gentler 8/6/4, a
steeper 8/4/2 and no approximation at all (8/8/8, the memory-hungry reference point).

Run:
    python ablations/opspace_grid.py --preset tiny
    ray submit cluster/gpu.yaml ablations/opspace_grid.py -- --preset paper-c10
"""

from pdarts_ray.distributed.ablation import run

SWEEP = {
    "name": "opspace-grid",
    "base": {"preset": "paper-c10"},
    "searcher": "grid",
    "space": {"ops_kept": {"grid": [[8, 5, 3], [8, 6, 4], [8, 4, 2], [8, 8, 8]]}},
}

if __name__ == "__main__":
    run({"": SWEEP}, __doc__)
