"""The skip-connect study's table from constructed rows: trial rows and epoch rows as the
`study` preset's searches would store them, each claim's effect and verdict."""

import pytest

from pdarts_ray.distributed.reproduce import reproduce
from pdarts_ray.experiments import get_experiment
from pdarts_ray.results import trial_row, write_trial
from pdarts_ray.results.store import write_epochs
from pdarts_ray.results.tables.common import resolve_setup
from pdarts_ray.results.tables.render import write_outputs

FAMILY = "reproduce-study-digits"
SEEDS = (100, 101, 102, 103, 104, 105)


def cell(skips: int) -> dict:
    normal = [["skip_connect" if g < skips else "sep_conv_3x3", g % 2] for g in range(8)]
    reduce = [["max_pool_3x3", g % 2] for g in range(8)]
    return {"normal": normal, "normal_concat": [2, 3, 4, 5], "reduce": reduce, "reduce_concat": [2, 3, 4, 5]}


def add_search(store, config: dict, per_stage: list[int], early: int, weights: list[float], rise=0.1):
    """A finished search whose stages end with `per_stage` skip-connects and skip weights
    `weights`; its last stage held `early` skip-connects (weight - `rise`) after 128 steps."""
    trial = f"t{config['seed']}-{sum(config['skip_dropout']) > 0:d}"
    final = per_stage[-1]
    by_m = {str(m): cell(min(m, final)) for m in range(9)}
    result = {
        "genotype": by_m[str(config["skip_connects"])],
        "stage_skip_connects_before_refinement": per_stage,
        "skip_connects_before_refinement": final,
        "threads": 1,
    }
    experiment = FAMILY + ".s-hand"
    row = trial_row(experiment, trial, "finished", {**config, "threads": 1}, result, {"final_by_M": by_m})
    assert write_trial(str(store), experiment, row)
    epochs = []
    for s, (skips, weight) in enumerate(zip(per_stage, weights)):
        for e in range(config["epochs"]):
            last_stage_early = s == len(per_stage) - 1 and e <= 11  # 4 warm-up + 8 epochs of 16 steps
            epochs.append(
                {
                    "stage": s + 1,
                    "epoch": e,
                    "skip_connects_now": early if last_stage_early else skips,
                    "skip_weight_now": weight - rise if last_stage_early else weight,
                }
            )
    write_epochs(str(store), experiment, trial, epochs)


def build(store, grow: bool):
    setup = resolve_setup("study")
    spec = get_experiment("skip-study").table_spec(setup)
    for need in spec.searches:
        seed, dropout = need.config["seed"], sum(need.config["skip_dropout"]) > 0
        k = seed - SEEDS[0]
        if not grow:
            add_search(store, need.config, [1, 1, 1], 1, [0.2, 0.2, 0.2], rise=0.02 * (k % 2) - 0.01)
        elif dropout:
            add_search(store, need.config, [0, 0, k % 2], 0, [0.1, 0.1, 0.15])
        else:  # more skip-connects deeper and later, on every seed
            add_search(store, need.config, [0, 2, 3 + k % 3], 1 + k % 2, [0.15, 0.25, 0.4])
    return reproduce("skip-study", setup, str(store), run=False).rendered


def test_the_study_counts_skip_connects_per_stage_and_tests_each_claim(tmp_path):
    r = build(tmp_path, grow=True)
    assert any("512 architecture steps a stage (16 an epoch" in n for n in r.notes)
    assert r.rows[0] == ["without skip dropout", "100", "0-2-3", "0.150 / 0.250 / 0.400", "1 → 3", "1"]
    assert r.rows[6][:2] == ["without skip dropout", "mean ± std"]
    assert r.rows[7] == [
        "with skip dropout 0.0/0.3/0.6",
        "100",
        "0-0-0",
        "0.100 / 0.100 / 0.150",
        "0 → 0",
        "0",
    ]
    depth, steps, weight, dropout, refine = r.effects
    assert depth.differences == [3, 4, 5, 3, 4, 5] and depth.verdict() == "shown"  # p = 2/64
    assert steps.differences == [2, 2, 4, 1, 3, 3] and steps.verdict() == "shown"
    assert weight.differences == pytest.approx([0.1] * 6) and weight.verdict() == "shown"
    assert dropout.differences == [3, 3, 5, 2, 4, 4] and dropout.verdict() == "shown"
    # refinement to M = 2 changes the cells with 3-5 skip-connects: 1-3 genes each
    assert refine.differences == [1, 2, 3, 1, 2, 3] and refine.verdict() == "shown"
    assert r.figure["series"]["without skip dropout"] == pytest.approx([0.15, 0.25, 0.4])
    # the weight at every epoch's end, per search: the last stage's first 12 epochs lower
    first = r.curves["groups"]["without skip dropout"][0]
    assert first == pytest.approx([0.15] * 36 + [0.25] * 36 + [0.3] * 12 + [0.4] * 24)
    assert len(r.curves["groups"]["with skip dropout 0.0/0.3/0.6"]) == 6
    assert r.curves["stage_starts"] == [1, 37, 73]
    files = write_outputs(r, tmp_path / "out")
    assert [f.rsplit("/", 1)[1] for f in files[-2:]] == ["skip-study-curves.png", "skip-study-curves.svg"]


def test_skip_connects_that_do_not_accumulate_are_the_finding(tmp_path):
    r = build(tmp_path, grow=False)
    depth, steps, weight, dropout, refine = r.effects
    assert [depth.verdict(), steps.verdict(), weight.verdict(), dropout.verdict()] == ["not shown"] * 4
    assert depth.differences == [0] * 6 and dropout.differences == [0] * 6
    assert refine.verdict() == "not applicable"  # 1 skip-connect: M = 2 leaves every cell alone


def test_the_study_is_registered_with_its_presets():
    study = get_experiment("skip-study")
    assert study.presets == ("smoke", "study")
    assert "pdarts-ray reproduce skip-study --preset study --storage $PWD/benchmarks/results/store" in (
        study.commands
    )
    setup = study.setup("study")
    assert (setup.search_preset, setup.repeat_seeds()) == ("skip-study", list(SEEDS))
    (definition,) = study.sweep_definitions(setup, "s").values()
    assert (
        definition["space"]["seed"] == {"grid": list(SEEDS)} and definition["base"]["preset"] == "skip-study"
    )
