"""Every bad file a user can hand the CLI: one line on stderr, exit 2, nothing written.

sweep.json of an experiment (damaged, or with keys a definition cannot hold), genotype files
that describe absurd cells, checkpoints with parts missing, and unreadable Parquet files in
the results store (skipped with a warning by the views, refused by what computes from it).
"""

import json
import shutil

import pytest
import torch
from helpers.cli import run_cli
from helpers.paths import FIXTURES


def _files(folder):
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def experiment(tmp_path):
    """A copy of a real sweep experiment (saved by 0.1.0) whose sweep.json a test damages."""
    store = tmp_path / "store"
    shutil.copytree(FIXTURES / "old-layout-sweep", store / "exp")
    setup = store / "exp" / "sweep.json"
    setup.write_text(
        setup.read_text().replace("@STORAGE@", str(store)).replace("@CACHE@", str(tmp_path / "cache"))
    )
    return store


def _damage(setup_path, change):
    data = json.loads(setup_path.read_text())
    change(data)
    setup_path.write_text(json.dumps(data))


BAD_SETUPS = {
    "not JSON": (lambda p: p.write_text('{"name": "exp", '), "not valid JSON"),
    "unknown top-level key": (lambda p: _damage(p, lambda d: d.update(surprise=1)), "unknown key 'surprise'"),
    "unknown sweep field": (
        lambda p: _damage(p, lambda d: d["sweep"].update(searchr="grid")),
        "unknown field 'searchr'",
    ),
    "unknown base config key": (
        lambda p: _damage(p, lambda d: d["base_config"].update(cels=[3, 4, 5])),
        "unknown key 'cels'",
    ),
    "bad value in the space": (
        lambda p: _damage(p, lambda d: d["sweep"]["space"].update(lr={"grid": [-1]})),
        "must not be negative",
    ),
    "base edited by hand": (
        lambda p: _damage(p, lambda d: d["base_config"].update(epochs=9)),
        "does not match the sweep's base",
    ),
    "missing key": (
        lambda p: _damage(p, lambda d: d.pop("experiment_path")),
        "missing key 'experiment_path'",
    ),
    "wrong type": (
        lambda p: _damage(p, lambda d: d.update(cpus_per_trial="two")),
        "cpus_per_trial: wrong type",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETUPS))
def test_sweep_resume_refuses_a_bad_sweep_json(experiment, case):
    damage, words = BAD_SETUPS[case]
    damage(experiment / "exp" / "sweep.json")
    before = _files(experiment)
    code, out, err = run_cli("sweep", "--resume", "exp", "--storage", experiment)
    assert code == 2, err
    assert err.startswith("error: ") and words in err and len(err.strip().splitlines()) == 1, err
    assert _files(experiment) == before


GENOTYPES = {
    "a range of ten trillion": "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], "
    "normal_concat=range(10000000000000), reduce=[('skip_connect', 0), "
    "('skip_connect', 1)], reduce_concat=range(2, 3))",
    "a range of a hundred million": "Genotype(normal=[('skip_connect', 0), ('skip_connect', 1)], "
    "normal_concat=range(100000000), reduce=[('skip_connect', 0), "
    "('skip_connect', 1)], reduce_concat=[2])",
    "ten thousand genes": json.dumps(
        {"normal": [["skip_connect", 0]] * 10000, "reduce": [["skip_connect", 0]] * 2}
    ),
    "a huge file": "#" * (2 << 20),
    "a huge input index": json.dumps(
        {
            "normal": [["skip_connect", 0], ["skip_connect", 10**30]],
            "reduce": [["skip_connect", 0], ["skip_connect", 1]],
        }
    ),
}


@pytest.mark.parametrize("case", sorted(GENOTYPES))
def test_absurd_genotype_files_are_one_line(tmp_path, case):
    path = tmp_path / "g.txt"
    path.write_text(GENOTYPES[case])
    code, out, err = run_cli("genotype", "params", path, timeout=60)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def stopped_search(tmp_path_factory):
    """A smoke search stopped after stage 2's first epoch (two checkpoints in its folder)."""
    from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
    from pdarts_ray.core.search import SearchHooks, run_search

    class Stop(Exception):
        pass

    class StopAt(SearchHooks):
        def on_epoch_end(self, metrics, checkpoint):
            if (metrics["stage"], metrics["epoch"]) == (2, 0):
                raise Stop

    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    with pytest.raises(Stop):
        run_search(resolve(SearchConfig, SEARCH_PRESETS, "smoke"), run_dir, StopAt())
    return run_dir


def _break_newest(run_dir, change):
    from pdarts_ray.core.checkpoint import CheckpointDir

    newest = CheckpointDir(run_dir / "checkpoints").latest_path()
    state = torch.load(newest, weights_only=True)
    change(state)
    torch.save(state, newest)
    return newest


BAD_CHECKPOINTS = {
    "stage_state missing": lambda s: s.pop("stage_state"),
    "stage_state wrong": lambda s: s.update(stage_state={"model": "weights"}),
    "switches wrong": lambda s: s.update(switches={"normal": [[True] * 8] * 3, "reduce": None}),
    "stages missing": lambda s: s.pop("stages"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_a_checkpoint_with_wrong_content_falls_back_to_the_previous(stopped_search, tmp_path, case):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_search, run_dir)
    newest = _break_newest(run_dir, BAD_CHECKPOINTS[case])
    code, out, err = run_cli("search", "--resume", run_dir, "--quiet")
    assert code == 0, err
    assert f"warning: {newest.name} is unreadable" in err and "using the previous checkpoint" in err
    assert (run_dir / "result.json").is_file()


def test_a_wrong_checkpoint_with_no_earlier_one_is_one_line(stopped_search, tmp_path):
    from pdarts_ray.core.checkpoint import CheckpointDir

    run_dir = tmp_path / "run"
    shutil.copytree(stopped_search, run_dir)
    older = CheckpointDir(run_dir / "checkpoints")._existing()[0][1]
    older.unlink()
    _break_newest(run_dir, BAD_CHECKPOINTS["stage_state missing"])
    before = _files(run_dir)
    code, out, err = run_cli("search", "--resume", run_dir, "--quiet")
    assert code == 2 and "stage_state missing or wrong" in err and len(err.strip().splitlines()) == 1, err
    assert _files(run_dir) == before


@pytest.fixture
def store_with_a_bad_file(tmp_path):
    from pdarts_ray.results import trial_row, write_trial

    store = tmp_path / "store"
    for trial in ("a", "b"):
        write_trial(str(store), "exp", trial_row("exp", trial, "failed", {}, failure="x"))
    bad = store / "exp" / "trials" / "c.parquet"
    bad.write_bytes(b"PAR1 half a file")
    return store, bad


def test_results_views_skip_an_unreadable_file_and_name_it(store_with_a_bad_file):
    store, bad = store_with_a_bad_file
    code, out, err = run_cli("results", "show", "exp", "--storage", store, "--format", "json")
    assert code == 0, err
    assert sorted(r["trial_id"] for r in json.loads(out)) == ["a", "b"]
    assert "warning: skipped" in err and str(bad) in err
    code, out, err = run_cli("results", "list", "--storage", store, "--json")
    assert code == 0 and json.loads(out)[0]["trials"] == 2 and str(bad) in err


def test_what_computes_from_the_store_refuses_an_unreadable_file(tmp_path):
    from pdarts_ray.results import trial_row, write_trial

    store = tmp_path / "store"
    family = "reproduce-smoke-synthetic.s-0000000000"
    write_trial(str(store), family, trial_row(family, "a", "failed", {}, failure="x"))
    bad = store / family / "trials" / "b.parquet"
    bad.write_bytes(b"not parquet")
    code, out, err = run_cli(
        "reproduce", "table3", "--preset", "smoke", "--storage", store, "--out", tmp_path / "out"
    )
    assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and not (store / "reproduce-smoke-synthetic").exists()


def test_an_experiment_keeps_the_preset_values_it_started_with(experiment):
    """A preset whose values change in a later version (paper-c10 now validates the last 4
    epochs of each stage) leaves experiments started with the earlier values loadable, and
    still refuses values that no version of the preset had."""
    from pdarts_ray.core.config import FORMER_PRESETS, SearchConfig, apply_overrides, to_dict
    from pdarts_ray.core.errors import UserError
    from pdarts_ray.distributed.experiment import load_setup

    path = experiment / "exp" / "sweep.json"

    def with_base(values):
        _damage(
            path,
            lambda d: (
                d["sweep"]["base"].update(preset="paper-c10", config={}),
                d.update(
                    base_config=to_dict(SearchConfig(**apply_overrides(SearchConfig, {}, values, "test")))
                ),
            ),
        )
        return load_setup(str(experiment / "exp"))

    (former,) = FORMER_PRESETS["0.1.0"]["paper-c10"]
    assert with_base(former)["base_config"]["valid_last_epochs"] == 0
    assert with_base({**former, "valid_last_epochs": 4})["base_config"]["valid_last_epochs"] == 4
    with pytest.raises(UserError, match="does not match the sweep's base"):
        with_base({**former, "valid_last_epochs": 2})


def test_former_presets_and_missing_keys_are_accepted_only_from_the_version_that_had_them(experiment):
    """The fixture was written by 0.1.0 (no `version`), which lacked some keys and had other
    preset values: the same file stamped with today's version is held to today's keys and
    presets, and a file from a newer version is refused."""
    from pdarts_ray.core.config import FORMER_PRESETS, SearchConfig, apply_overrides, to_dict
    from pdarts_ray.core.errors import UserError
    from pdarts_ray.core.version import VERSION
    from pdarts_ray.distributed.experiment import load_setup

    path = experiment / "exp" / "sweep.json"
    original = json.loads(path.read_text())
    assert "version" not in original and "sync_bn" not in original
    assert load_setup(str(experiment / "exp"))["version"] == "0.1.0"  # kept when saved again

    _damage(path, lambda d: d.update(version=VERSION))
    with pytest.raises(UserError, match="missing key 'workers_per_trial'"):
        load_setup(str(experiment / "exp"))

    (former,) = FORMER_PRESETS["0.1.0"]["paper-c10"]
    former_base = to_dict(SearchConfig(**apply_overrides(SearchConfig, {}, former, "test")))

    def paper_base(d, version):
        d.clear()
        d.update(original, version=version, verbose=0, workers_per_trial=1, sync_bn=True)
        d["sweep"]["base"].update(preset="paper-c10", config={})
        d.update(base_config=former_base)

    _damage(path, lambda d: paper_base(d, "0.1.0"))
    assert load_setup(str(experiment / "exp"))["base_config"] == former_base
    _damage(path, lambda d: paper_base(d, VERSION))
    with pytest.raises(UserError, match="does not match the sweep's base"):
        load_setup(str(experiment / "exp"))
    for version, message in (("9.0.0", "newer than this"), ("soon", "expected a version")):
        _damage(path, lambda d, v=version: d.update(version=v))
        with pytest.raises(UserError, match=message):
            load_setup(str(experiment / "exp"))
