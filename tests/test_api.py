"""The Python API (pdarts_ray/api.py): typed configs in, result objects out, the same runs
as the CLI's. The docs' example runs from an installed wheel: tests/test_wheel.py."""

import doctest
import json
import re

import pytest
from helpers.cli import run_cli

import pdarts_ray
from pdarts_ray import api
from pdarts_ray.core.errors import UserError
from pdarts_ray.core.space import Genotype


def test_the_module_docstring_examples_hold():
    result = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0


def test_the_package_exposes_the_api_lazily():
    assert pdarts_ray.run_search is api.run_search
    assert set(pdarts_ray.__all__) == set(api.__all__)
    assert all(callable(getattr(pdarts_ray, name)) for name in pdarts_ray.__all__)
    with pytest.raises(AttributeError, match="no attribute 'search_cfg'"):
        pdarts_ray.search_cfg  # noqa: B018


def test_configs_are_a_preset_then_a_file_then_keywords(tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text("epochs: 5\nseed: 7\n")
    cfg = pdarts_ray.search_config("smoke", keys, seed=9)
    assert (cfg.epochs, cfg.seed, cfg.channels) == (5, 9, 4)
    assert pdarts_ray.eval_config("eval-smoke", lr=0.1).lr == 0.1
    with pytest.raises(UserError, match="override: unknown key 'epoch'"):
        pdarts_ray.search_config("smoke", epoch=3)
    with pytest.raises(UserError, match="config: seed: must be an integer"):
        pdarts_ray.search_config("smoke", seed="three")
    with pytest.raises(UserError, match="unknown preset 'tinny'"):
        pdarts_ray.search_config("tinny")


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "search"
    return pdarts_ray.run_search(pdarts_ray.search_config("smoke", seed=3), out)


def test_a_search_returns_its_result(search):
    run = search.run_dir
    assert search.genotype == Genotype.from_dict(json.loads((run / "genotype.json").read_text()))
    assert search.summary == json.loads((run / "result.json").read_text())
    assert search.config.seed == 3
    metrics = search.metrics()
    assert len(metrics) == search.config.epochs * search.config.num_stages
    assert search.best_valid_acc == max(m["valid_acc"] for m in metrics if m["valid_acc"] is not None)
    no_skips = search.genotype_for(0)
    assert all(op != "skip_connect" for op, _ in no_skips.normal)
    assert search.genotype_for(search.config.skip_connects) == search.genotype
    with pytest.raises(UserError, match="skip_connects: must be one of 0, 1, "):
        search.genotype_for(9)


def test_a_finished_search_is_opened_not_resumed(search):
    assert pdarts_ray.open_search(search.run_dir) == search
    with pytest.raises(UserError, match="already finished"):
        pdarts_ray.resume_search(search.run_dir)


@pytest.mark.slow
def test_the_cli_is_the_same_search(search, tmp_path):
    code, out, err = run_cli(
        "search", "--preset", "smoke", "--seed", "3", "--out", tmp_path / "cli", "--json"
    )
    assert code == 0, err
    assert Genotype.from_dict(json.loads(out)["genotype"]) == search.genotype


def test_a_used_folder_is_refused_and_kept(search):
    before = (search.run_dir / "result.json").read_bytes()
    with pytest.raises(UserError, match="not empty"):
        pdarts_ray.run_search(pdarts_ray.search_config("smoke"), search.run_dir)
    assert (search.run_dir / "result.json").read_bytes() == before


def test_an_evaluation_of_a_search_result(search, tmp_path):
    result = pdarts_ray.run_evaluation(search, pdarts_ray.eval_config("eval-smoke"), tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "result.json").read_text())
    assert result.summary == saved
    assert (result.top1, result.params) == (saved["top1"], saved["params"])
    assert result.error_pct == pytest.approx(100 * (1 - saved["top1"]))
    assert Genotype.from_dict(saved["genotype"]) == search.genotype


def test_every_kind_of_genotype_is_taken(search):
    g = search.genotype
    assert api.genotype_of(search)[1] == g
    assert api.genotype_of(g)[1] == g
    assert api.genotype_of(g.to_dict())[1] == g
    assert api.genotype_of(search.run_dir)[1] == g
    assert api.genotype_of("pdarts") == ("PDARTS", pdarts_ray.api.genotype_of("PDARTS")[1])
    with pytest.raises(UserError, match="genotype"):
        api.genotype_of({"normal": [["no_such_op", 0]]})


def test_a_searchs_workers_are_checked_once_where_they_enter(search, tmp_path):
    import shutil

    smoke = pdarts_ray.search_config("smoke")  # a global batch of 32
    for workers, error in [
        (0, "workers: must be at least 1, got 0"),
        (3, "config: batch_size: must be divisible by the workers (3), got 32"),
    ]:
        with pytest.raises(UserError, match=re.escape(error)):
            pdarts_ray.run_search(smoke, tmp_path / "new", workers=workers)
    assert not (tmp_path / "new").exists()
    code, _, err = run_cli("search", "--preset", "smoke", "--workers", "0", "--out", tmp_path / "new")
    assert code == 2 and err == "error: workers: must be at least 1, got 0\n"
    # a search with checkpoints (its result taken away) continues on the workers it ran on,
    # checked before anything starts
    unfinished = tmp_path / "unfinished"
    shutil.copytree(search.run_dir, unfinished)
    (unfinished / "result.json").unlink()
    with pytest.raises(UserError, match="workers: must be at least 1, got 0"):
        pdarts_ray.resume_search(unfinished, workers=0)
    with pytest.raises(UserError, match=r"ran with 1 worker; resume it with the same \(--workers 1\)"):
        pdarts_ray.resume_search(unfinished, workers=2)
