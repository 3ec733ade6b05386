"""Section 4.4.2: the approximated op space against random op spaces of the same size.

Paper: the earlier, shallower stages decide which 3 ops per edge the 17-cell final stage
searches over. The final stage searched on the op space stages 1-2 chose gives 2.58 % test
error; the best of three searches on op spaces drawn at random per edge gives 3.43 %: the
earlier stages choose well.

    pdarts-ray reproduce approx --preset paper
    pdarts-ray sweep --experiment approx --preset tiny
    ray submit cluster/gpu.yaml ablations/approx_vs_random.py -- --preset paper-c10

The sweep is two over the same seeds 0-3: `<name>-approx`, the full progressive search, and
`<name>-random`, only a final stage (the preset's last-stage depth, op count and skip
dropout) on a random op space per edge (`ops_kept` below 8 draws one from `space_seed`,
which defaults to the seed, so every seed gets another random space). Compare `final
valid` between the two tables, then retrain the genotypes with `pdarts-ray evaluate`.
"""

from __future__ import annotations

from ..results.tables import approx as table
from .registry import grid, register_experiment

SEEDS = [0, 1, 2, 3]


def sweeps(setup) -> dict[str, dict]:
    seeds = {"seed": {"grid": SEEDS}}
    last_stage = {key: setup.base[key][-1:] for key in ("cells", "ops_kept", "skip_dropout")}
    return {
        "approx": grid("approx-vs-random", setup, seeds),
        "random": grid("approx-vs-random", setup, seeds, **last_stage),
    }


@register_experiment
def approx():
    return {"table": table.spec, "sweeps": sweeps}
