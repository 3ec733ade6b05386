"""Per-epoch schedules and supernet layouts against fixtures/schedules.json."""

import json

import pytest
from helpers.paths import FIXTURES

from pdarts_ray.core.config import SearchConfig
from pdarts_ray.core.space import full_switches
from pdarts_ray.core.stage import lr_at, skip_dropout_at
from pdarts_ray.core.supernet import SearchNetwork

SCHEDULES = json.loads((FIXTURES / "schedules.json").read_text())


def test_search_lr_is_cosine_stepped_at_epoch_start():
    cfg = SearchConfig()
    got = [lr_at(cfg, e) for e in range(25)]
    assert got == pytest.approx(SCHEDULES["search_lr_per_epoch"], abs=1e-15)
    assert got[-1] == pytest.approx(0.0, abs=1e-18)  # the last epoch trains weights with lr 0


def test_search_lr_as_the_paper_ran_it_with_an_offset_of_zero():
    """Under PyTorch 0.4/1.0 the official scheduler.step() at the epoch's start gave epoch 0
    the initial rate: the same schedule one step earlier."""
    cfg = SearchConfig(lr_step_offset=0).validate()
    got = [lr_at(cfg, e) for e in range(25)]
    assert got[0] == 0.025
    assert got[1:] == pytest.approx(SCHEDULES["search_lr_per_epoch"][:-1], abs=1e-15)


@pytest.mark.parametrize("rate", ["0.0", "0.1", "0.4", "0.7"])
def test_skip_dropout_schedule(rate):
    got = [skip_dropout_at(float(rate), e, 25, 10) for e in range(25)]
    assert got == pytest.approx(SCHEDULES["skip_dropout_p_per_epoch"][rate], abs=5e-7)


def _layout(net: SearchNetwork):
    cells = []
    for cell in net.cells:
        c = cell.preprocess1[1].out_channels  # the cell's working width C
        cells.append([c, "R" if cell.reduction else "N"])
    return cells


@pytest.mark.parametrize("stage,layers", [(1, 5), (2, 11), (3, 17)])
def test_search_layouts(stage, layers):
    expected = SCHEDULES["layouts"][f"search_stage{stage}_{layers}cells_C16"]
    net = SearchNetwork(16, 10, layers, full_switches(), full_switches())
    assert net.stem[0].out_channels == expected["stem_out"]
    assert _layout(net) == expected["cells"]
    assert [i for i, c in enumerate(net.cells) if c.reduction] == expected["reduction_cells"]


def test_supernet_parameter_count_matches_the_reference():
    # the reference logs 1.276058 M for stage 1, alphas included
    net = SearchNetwork(16, 10, 5, full_switches(), full_switches())
    assert sum(p.numel() for p in net.parameters()) == 1_276_058
