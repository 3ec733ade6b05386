"""Table 3 (section 4.4.2): peak memory of each search stage.

Paper: GPU memory in GB at batch 96 on a 16 GB P100 over three runs: 9.8/14.0/14.2,
9.8/14.4/14.5, 9.8/14.2/14.3 (stage 1/2/3). The growing depth costs memory while the
shrinking op space gives it back.

    pdarts-ray reproduce table3 --preset paper
    pdarts-ray sweep --experiment table3 --preset paper

The sweep: the preset's search over `--runs` seeds (counting up from the preset's), the
searches the table reads.
"""

from __future__ import annotations

from ..results.tables import table3 as table
from .registry import grid, register_experiment


@register_experiment
def table3():
    return {
        "table": table.spec,
        "sweeps": lambda setup: {"": grid("table3", setup, {"seed": {"grid": setup.seeds()}})},
    }
