"""Op-space schedules: how many candidate ops each stage keeps per edge (no table).

Paper (section 3.2, search space approximation): the op space shrinks as the network
deepens, 8 -> 5 -> 3 ops per edge on CIFAR-10, so the 17-cell final stage fits in memory.

    pdarts-ray sweep --experiment opspace --preset tiny
    ray submit cluster/gpu.yaml ablations/opspace_grid.py -- --preset paper-c10

The sweep (`opspace-grid`): the paper's 8/5/3 against a gentler 8/6/4, a steeper 8/4/2
and no approximation at all (8/8/8, the memory-hungry reference point).
"""

from __future__ import annotations

from .registry import grid, register_experiment


@register_experiment
def opspace():
    space = {"ops_kept": {"grid": [[8, 5, 3], [8, 6, 4], [8, 4, 2], [8, 8, 8]]}}
    return {"sweeps": lambda setup: {"": grid("opspace-grid", setup, space)}}
