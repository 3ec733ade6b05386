"""A sweep saved by pdarts-ray 0.1.0, before the package had layers, still resumes.

`tests/fixtures/old-layout-sweep/` is an experiment folder that 0.1.0 wrote: a two-trial
`smoke` grid over seeds 1 and 2 whose driver was SIGKILLed after trial 9b478_00000 had
finished and while trial 9b478_00001 waited after global epoch 4. Ray Tune's saved state
names the sweep's callback and its trial-naming function by their 0.1.0 module path,
`pdarts_ray.sweep`. The paths in its `sweep.json` are placeholders, filled in for the copy
that the test resumes.
"""

import json
import shutil

import pytest
from helpers.cli import run_cli
from helpers.paths import FIXTURES

pytestmark = pytest.mark.slow

FIXTURE = FIXTURES / "old-layout-sweep"
FINISHED, UNFINISHED = "9b478_00000", "9b478_00001"


def test_the_fixture_names_the_old_module_path():
    assert b"pdarts_ray.sweep" in (FIXTURE / "tuner.pkl").read_bytes()


def test_a_sweep_saved_by_the_old_layout_resumes(tmp_path):
    from pdarts_ray.core.search import run_search
    from pdarts_ray.distributed.definition import parse_sweep
    from pdarts_ray.results import read_epochs, read_trials

    store, cache = tmp_path / "store", tmp_path / "cache"
    experiment = store / "old-layout"
    shutil.copytree(FIXTURE, experiment)
    setup = experiment / "sweep.json"
    setup.write_text(setup.read_text().replace("@STORAGE@", str(store)).replace("@CACHE@", str(cache)))
    before = read_trials(str(experiment)).to_pylist()
    assert [t["trial_id"] for t in before] == [FINISHED]

    code, out, err = run_cli(
        "sweep",
        "--resume",
        "old-layout",
        "--storage",
        store,
        "--json",
        env={"PDARTS_CACHE": str(cache)},
        timeout=600,
    )
    assert code == 0, err[-3000:]
    # its saved Tuner gave Tune the concurrency limit beside the generator's own: dropped, no warning
    assert "max_concurrent_trials" not in err
    trials = {t["trial_id"]: t for t in read_trials(str(experiment)).to_pylist()}
    assert sorted(trials) == [FINISHED, UNFINISHED]
    assert all(t["status"] == "finished" for t in trials.values())
    assert trials[FINISHED] == before[0]  # stored once, not run again
    epochs = read_epochs(str(experiment)).to_pylist()
    for trial_id in trials:
        assert sorted((e["stage"], e["epoch"]) for e in epochs if e["trial_id"] == trial_id) == [
            (s, e) for s in (1, 2, 3) for e in range(3)
        ]
    assert len(json.loads(out)["trials"]) == 2
    # the resumed trial continued from its epoch-4 checkpoint to the uninterrupted search's cell
    reference = run_search(
        parse_sweep({"base": {"preset": "smoke", "config": {"seed": 2}}}).base_config(),
        tmp_path / "reference",
    )
    assert json.loads(trials[UNFINISHED]["genotype"]) == reference["genotype"]
