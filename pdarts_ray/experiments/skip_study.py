"""The skip-connect study: skip-connects over depth and architecture steps, without and
with skip dropout, and what refinement to M then changes.

Paper (sections 3.2.2 and 4.4.3): as the searched network deepens, the parameter-free
skip-connect takes over the normal cell (8 of 8 without regularisation on CIFAR-10, after
about 3,900 architecture steps a stage); skip dropout holds it down (4 of 8), and
refinement to M = 2 then changes the cells that still keep more. The `small` tables,
128 architecture steps a stage, saw at most 3. This study runs `small`'s network with
stages of 512 architecture steps (search preset `skip-study`), both settings on 6 paired
seeds (100-105) that took part in no choice, one thread each, and tests each claim.

    pdarts-ray reproduce skip-study --preset study --storage $PWD/benchmarks/results/store
    pdarts-ray reproduce skip-study --preset study --no-run --storage $PWD/benchmarks/results/store
    pdarts-ray sweep --experiment skip-study --preset study --storage $PWD/runs

The sweep (`skip-study`) runs the same searches as a plain grid, outside the reproduce family.

A run keeps every finished search in the store; running the command again starts only the
searches still missing, so the study can be spread over several sittings.
"""

from __future__ import annotations

from ..results.tables import skip_study as table
from .registry import grid, register_experiment

SETTINGS = {"skip_dropout": {"grid": [[0.0, 0.0, 0.0], [0.0, 0.3, 0.6]]}}


@register_experiment(name="skip-study")
def skip_study():
    return {
        "table": table.spec,
        "sweeps": lambda setup: {
            "": grid("skip-study", setup, {**SETTINGS, "seed": {"grid": setup.repeat_seeds()}})
        },
        "presets": ("smoke", "study"),
    }
