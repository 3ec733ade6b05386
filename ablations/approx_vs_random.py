"""Search space approximation versus random op spaces of the same size.

Paper context (P-DARTS, section 4.4, "search space approximation"): the earlier, shallower
stages decide which 3 ops per edge the 17-cell final stage searches over. The paper checks
that this choice matters by running the final stage on op spaces of the same size drawn
at random. Two sweeps over the same seeds:

- `approx`: the full progressive search (stages 1 and 2 approximate the op space, stage 3
  searches it);
- `random`: only a final stage (the preset's last-stage depth, op count and skip dropout)
  on a random op space per edge (`ops_kept` below 8 draws one from `space_seed`, which
  defaults to the seed, so every seed gets another random space).

Compare `final valid` (the final stage's accuracy) between the two tables, then retrain
the genotypes with `pdarts-ray evaluate`.

Run:
    python ablations/approx_vs_random.py --preset tiny
    ray submit cluster/gpu.yaml ablations/approx_vs_random.py -- --preset paper-c10
"""

import sys

from pdarts_ray.core.config import SEARCH_PRESETS
from pdarts_ray.distributed.ablation import parser, run

SEEDS = [0, 1, 2, 3]


def last_stage_only(preset: str) -> dict:
    p = SEARCH_PRESETS.get(preset, {})
    return {key: p[key][-1:] for key in ("cells", "ops_kept", "skip_dropout") if key in p}


if __name__ == "__main__":
    preset = parser(__doc__).parse_known_args()[0].preset or "paper-c10"
    seeds = {"seed": {"grid": SEEDS}}
    run(
        {
            "approx": {
                "name": "approx-vs-random",
                "base": {"preset": preset},
                "searcher": "grid",
                "space": seeds,
            },
            "random": {
                "name": "approx-vs-random",
                "base": {"preset": preset, "config": last_stage_only(preset)},
                "searcher": "grid",
                "space": seeds,
            },
        },
        __doc__,
        sys.argv[1:],
    )
