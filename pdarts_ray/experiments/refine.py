"""Section 4.4.3: several searches before and after architecture refinement to M = 2.

Paper: three searches with skip dropout keep 2, 3 and 4 skip-connects and retrain to
2.79 +- 0.16 % before refinement; refined to M = 2 they retrain to 2.65 +- 0.05 %.
"Before refinement" is the cell derived with no limit on skip-connects (M = 8).

    pdarts-ray reproduce refine --preset paper
    pdarts-ray sweep --experiment refine --preset paper

The sweep: `--runs` searches with skip dropout 0.0/0.3/0.6 (seeds counting up from the
preset's), the searches the table reads.
"""

from __future__ import annotations

from ..results.tables import refine as table
from ..results.tables.common import DROPOUT, rates
from .registry import grid, register_experiment


def sweeps(setup) -> dict[str, dict]:
    dropout = rates(DROPOUT, len(setup.base["cells"]))
    return {"": grid("refine", setup, {"seed": {"grid": setup.seeds()}}, skip_dropout=dropout)}


@register_experiment
def refine():
    return {"table": table.spec, "sweeps": sweeps}
