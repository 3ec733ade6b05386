"""The Parquet results store and `pdarts-ray results`: real files in tmp folders, and a
real smoke search imported."""

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.cli import run_cli

from pdarts_ray import results as R
from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve, to_dict
from pdarts_ray.core.errors import UserError

SMOKE = resolve(SearchConfig, SEARCH_PRESETS, "smoke")


def _genotype(skips: int) -> dict:
    ops = ["skip_connect"] * skips + ["sep_conv_3x3"] * (8 - skips)
    return {
        "normal": [[op, i // 2 + (i % 2)] for i, op in enumerate(ops)],
        "normal_concat": [2, 3, 4, 5],
        "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4,
        "reduce_concat": [2, 3, 4, 5],
    }


def _finished_row(trial_id="t1", experiment="exp", **cfg_changes):
    config = {**to_dict(SMOKE), **cfg_changes}
    by_m = {str(m): _genotype(min(m, 3)) for m in range(9)}
    result = {
        "genotype": by_m["2"],
        "skip_connects": 2,
        "skip_connects_before_refinement": 3,
        "peak_memory_bytes": [100 * 2**20, 200 * 2**20, 300 * 2**20],
        "peak_memory_reserved_bytes": [None, None, None],
        "peak_memory_kind": "cpu_peak_rss",
        "stage_seconds": [1.5, 2.5, 3.5],
        "stage_skip_connects_before_refinement": [1, 2, 3],
        "best_valid_acc": 0.75,
        "final_valid_acc": 0.5,
        "device": "cpu",
        "threads": 1,
        "versions": {"pdarts_ray": "0.1.0", "torch": "9.9", "python": "3.11.0"},
    }
    genotypes = {"stage1": _genotype(1), "stage2": _genotype(2), "stage3": by_m["2"], "final_by_M": by_m}
    return R.trial_row(
        experiment,
        trial_id,
        "finished",
        config,
        result,
        genotypes,
        started=1_700_000_000.25,
        finished=1_700_000_100.5,
    )


def _epoch(stage, epoch, loss, **extra):
    return {
        "stage": stage,
        "epoch": epoch,
        "global_epoch": (stage - 1) * 3 + epoch,
        "train_loss": loss,
        "train_acc": 0.5,
        "valid_acc": None,
        "valid_loss": None,
        "skip_dropout": 0.1,
        "lr": 0.01,
        "skip_connects_now": 1,
        "epoch_seconds": 0.2,
        "peak_memory_bytes": 1000,
        **extra,
    }


# ---------------------------------------------------------------- rows and files


def test_trial_row_round_trips_through_parquet(tmp_path):
    row = _finished_row()
    assert R.write_trial(str(tmp_path), "exp", row) is True
    [back] = R.read_trials(str(tmp_path), "exp").to_pylist()
    assert back == row
    assert back["cfg_cells"] == [3, 4, 5] and back["cfg_skip_dropout"] == [0.0, 0.4, 0.7]
    assert back["stage_seconds"] == [1.5, 2.5, 3.5] and back["skip_connects_after_refinement"] == 2
    assert json.loads(back["stage_genotypes"][0]) == _genotype(1)
    assert back["started"].timestamp() == 1_700_000_000.25
    assert set(back) == set(R.TRIAL_SCHEMA.names)


def test_failed_trial_row_has_reason_and_versions(tmp_path):
    row = R.trial_row("exp", "bad", "failed", to_dict(SMOKE), failure="SearchDiverged: non-finite loss")
    R.write_trial(str(tmp_path), "exp", row)
    [back] = R.read_trials(str(tmp_path), "exp").to_pylist()
    assert back["status"] == "failed" and back["failure"].startswith("SearchDiverged")
    assert back["genotype"] is None and back["stage_seconds"] is None
    assert back["version_pdarts_ray"] and back["version_python"] and back["seed"] == SMOKE.seed


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(status="done"), "status"),
        (dict(trial_id="../escape"), "trial id"),
        (dict(experiment="a/b"), "experiment name"),
        (dict(config={"no_such_key": 1}), "unknown config keys"),
        (dict(status="finished", result=None), "needs its result"),
    ],
)
def test_trial_row_rejects_bad_input(change, message):
    args = dict(experiment="exp", trial_id="t", status="failed", config=to_dict(SMOKE))
    with pytest.raises(UserError, match=message):
        R.trial_row(**{**args, **change})


def test_write_trial_is_exactly_once(tmp_path):
    assert not R.has_trial(str(tmp_path), "exp", "t1")
    assert R.write_trial(str(tmp_path), "exp", _finished_row())
    path = tmp_path / "exp" / "trials" / "t1.parquet"
    before = path.read_bytes()
    assert R.has_trial(str(tmp_path), "exp", "t1")
    assert R.write_trial(str(tmp_path), "exp", {**_finished_row(), "best_valid_acc": 0.99}) is False
    assert path.read_bytes() == before
    assert R.read_trials(str(tmp_path), "exp").column("best_valid_acc").to_pylist() == [0.75]
    assert sorted(os.listdir(path.parent)) == ["t1.parquet"]  # no temp file left behind


def test_a_leftover_temp_file_is_ignored(tmp_path):
    R.write_trial(str(tmp_path), "exp", _finished_row())
    R.write_epochs(str(tmp_path), "exp", "t1", [_epoch(1, 0, 1.0)])
    for sub in ("trials", "epochs"):
        (tmp_path / "exp" / sub / ".t2.parquet.0123.tmp").write_bytes(b"PAR1 half a file")
        (tmp_path / "exp" / sub / ".t3.parquet").write_bytes(b"PAR1 half a file")
    assert R.read_trials(str(tmp_path), "exp").num_rows == 1
    assert R.read_epochs(str(tmp_path), "exp").num_rows == 1


def test_a_truncated_file_is_a_clear_error(tmp_path):
    R.write_trial(str(tmp_path), "exp", _finished_row())
    path = tmp_path / "exp" / "trials" / "t1.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(UserError, match=r"t1\.parquet: not a readable Parquet file, possibly half-written"):
        R.read_trials(str(tmp_path), "exp")


def test_a_foreign_parquet_file_is_a_clear_error(tmp_path):
    R.write_trial(str(tmp_path), "exp", _finished_row())
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "exp" / "trials" / "other.parquet")
    with pytest.raises(UserError, match=r"other\.parquet: not a pdarts-ray trials file"):
        R.read_trials(str(tmp_path), "exp")


def test_an_epochs_file_among_the_trials_is_an_error(tmp_path):
    R.write_epochs(str(tmp_path), "exp", "t1", [_epoch(1, 0, 1.0)])
    [part] = (tmp_path / "exp" / "epochs").iterdir()
    (tmp_path / "exp" / "trials").mkdir()
    os.replace(part, tmp_path / "exp" / "trials" / "t1.parquet")
    with pytest.raises(UserError, match="not a pdarts-ray trials file"):
        R.read_trials(str(tmp_path), "exp")


def _rewrite(path, table):
    meta = pq.read_schema(path).metadata
    pq.write_table(table.replace_schema_metadata(meta), path)


def test_schema_mismatch_is_an_error_and_a_missing_column_reads_as_null(tmp_path):
    R.write_trial(str(tmp_path), "exp", _finished_row())
    path = tmp_path / "exp" / "trials" / "t1.parquet"
    table = pq.read_table(path)
    # a file from before a config key existed: that column reads as null
    _rewrite(path, table.drop_columns(["cfg_space_seed"]))
    assert R.read_trials(str(tmp_path), "exp").column("cfg_space_seed").to_pylist() == [None]
    i = table.schema.get_field_index("threads")
    _rewrite(path, table.set_column(i, "threads", pa.array(["one"])))
    with pytest.raises(UserError, match=r"t1\.parquet: column threads has type string"):
        R.read_trials(str(tmp_path), "exp")


def test_epochs_duplicates_are_removed_last_part_wins(tmp_path):
    s = str(tmp_path)
    R.write_epochs(s, "exp", "t1", [_epoch(1, 0, 1.0), _epoch(1, 1, 0.9)])
    # a restarted trial reports epoch 1 again; reporter keys around the metrics are dropped
    R.write_epochs(s, "exp", "t1", [_epoch(1, 1, 0.8, training_iteration=2), _epoch(1, 2, 0.7)])
    R.write_epochs(s, "exp", "t2", [_epoch(1, 1, 5.0)])
    assert len(os.listdir(tmp_path / "exp" / "epochs")) == 3
    table = R.read_epochs(s, "exp")
    keys = list(
        zip(
            table.column("trial_id").to_pylist(),
            table.column("epoch").to_pylist(),
            table.column("train_loss").to_pylist(),
        )
    )
    assert keys == [("t1", 0, 1.0), ("t1", 1, 0.8), ("t1", 2, 0.7), ("t2", 1, 5.0)]
    assert table.schema.names == R.EPOCH_SCHEMA.names


def test_epoch_rows_need_stage_and_epoch(tmp_path):
    with pytest.raises(UserError, match="needs stage and epoch"):
        R.write_epochs(str(tmp_path), "exp", "t1", [{"train_loss": 1.0}])


# ---------------------------------------------------------------- storage


def test_storage_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("PDARTS_STORAGE", raising=False)
    assert R.storage_root() == os.path.expanduser("~/pdarts_results")
    monkeypatch.setenv("PDARTS_STORAGE", str(tmp_path / "env"))
    assert R.storage_root() == str(tmp_path / "env")
    assert R.storage_root(str(tmp_path / "explicit")) == str(tmp_path / "explicit")
    assert R.storage_root("s3://bucket/results") == "s3://bucket/results"
    with pytest.raises(UserError, match="storage: 'results' is a relative path"):
        R.storage_root("results")
    monkeypatch.setenv("PDARTS_STORAGE", "relative/dir")
    with pytest.raises(UserError, match="PDARTS_STORAGE: 'relative/dir' is a relative path"):
        R.storage_root()


def test_a_file_uri_works(tmp_path):
    uri = f"file://{tmp_path}"
    assert R.experiment_path(uri, "exp") == f"{uri}/exp"
    assert R.write_trial(uri, "exp", _finished_row())
    R.write_epochs(uri, "exp", "t1", [_epoch(1, 0, 1.0)])
    assert (tmp_path / "exp" / "trials" / "t1.parquet").is_file()
    assert R.has_trial(uri, "exp", "t1") and not R.write_trial(uri, "exp", _finished_row())
    assert R.read_trials(f"{uri}/exp").num_rows == 1 and R.read_epochs(uri, "exp").num_rows == 1
    assert [e["name"] for e in R.list_experiments(uri)] == ["exp"]


def test_a_missing_experiment_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no such experiment"):
        R.read_trials(str(tmp_path), "nope")


def test_list_experiments_counts_and_ignores_other_folders(tmp_path):
    s = str(tmp_path)
    R.write_trial(s, "a", _finished_row("t1", "a"))
    R.write_trial(s, "a", R.trial_row("a", "t2", "failed", to_dict(SMOKE), failure="killed"))
    R.write_epochs(s, "b", "t1", [_epoch(1, 0, 1.0)])  # a running sweep: epochs, no trial yet
    (tmp_path / "ray_only" / "some_trial").mkdir(parents=True)  # Ray Tune's folder without our tables
    (tmp_path / "notes.txt").write_text("x")
    listed = R.list_experiments(s)
    assert [(e["name"], e["trials"], e["finished"], e["failed"]) for e in listed] == [
        ("a", 2, 1, 1),
        ("b", 0, 0, 0),
    ]
    assert all(e["last_change"] for e in listed)
    assert R.list_experiments(str(tmp_path / "missing")) == []


def test_expand_m_gives_one_row_per_trial_and_m(tmp_path):
    failed = R.trial_row("exp", "t0", "failed", to_dict(SMOKE), failure="x")
    rows = R.expand_m([failed, _finished_row("t1"), _finished_row("t2")])
    assert [(r["trial_id"], r["M"]) for r in rows] == [(t, m) for t in ("t1", "t2") for m in range(9)]
    assert [r["skip_connects_after_refinement"] for r in rows[:9]] == [0, 1, 2, 3, 3, 3, 3, 3, 3]
    assert json.loads(rows[1]["genotype"]) == _genotype(1) and "genotypes_by_m" not in rows[0]
    R.write_trial(str(tmp_path), "exp", _finished_row("t1"))
    only = R.expand_m(R.read_trials(str(tmp_path), "exp"), ms=[0, 2])
    assert [(r["M"], r["skip_connects_after_refinement"]) for r in only] == [(0, 0), (2, 2)]
    with pytest.raises(UserError, match="M must be in 0..8"):
        R.expand_m([], ms=[9])


# ---------------------------------------------------------------- a real search run


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    from pdarts_ray.core.search import run_search

    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    run_search(SMOKE, run_dir)
    return run_dir


def _load(run_dir, name):
    return json.loads((run_dir / name).read_text())


def test_import_run_stores_a_search_once(smoke_run, tmp_path):
    s = str(tmp_path)
    out = R.import_run(str(smoke_run), s, "imported")
    assert out["stored"] and out["epochs"] == 9 and out["trial_id"].startswith("run-")
    result, genotypes = _load(smoke_run, "result.json"), _load(smoke_run, "genotypes.json")
    [row] = R.read_trials(s, "imported").to_pylist()
    assert row["status"] == "finished" and row["cfg_cells"] == SMOKE.cells and row["cfg_threads"] == 1
    assert row["stage_peak_memory_bytes"] == result["peak_memory_bytes"]
    assert row["stage_seconds"] == result["stage_seconds"]
    assert row["best_valid_acc"] == result["best_valid_acc"]
    assert json.loads(row["genotype"]) == _load(smoke_run, "genotype.json")
    assert json.loads(row["genotypes_by_m"]) == genotypes["final_by_M"]
    assert [json.loads(g) for g in row["stage_genotypes"]] == [genotypes[f"stage{i}"] for i in (1, 2, 3)]
    assert row["version_torch"] == result["versions"]["torch"] and row["started"] < row["finished"]
    epochs = R.read_epochs(s, "imported")
    assert [(r["stage"], r["epoch"]) for r in epochs.to_pylist()] == [
        (st, e) for st in (1, 2, 3) for e in range(3)
    ]
    assert epochs.column("lr").null_count == 0
    # again: same trial id, nothing new written
    again = R.import_run(str(smoke_run), s, "imported")
    assert again["trial_id"] == out["trial_id"] and not again["stored"]
    assert len(os.listdir(tmp_path / "imported" / "trials")) == 1
    assert len(os.listdir(tmp_path / "imported" / "epochs")) == 1
    by_m = R.expand_m(R.read_trials(s, "imported"))
    assert [json.loads(r["genotype"]) for r in by_m] == [genotypes["final_by_M"][str(m)] for m in range(9)]
    assert all(r["skip_connects_after_refinement"] <= r["M"] for r in by_m)


def test_import_refuses_an_unfinished_run(smoke_run, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text((smoke_run / "config.json").read_text())
    with pytest.raises(UserError, match="has not finished"):
        R.import_run(str(unfinished), str(tmp_path / "store"), "x")
    with pytest.raises(UserError, match="not a search run folder"):
        R.import_run(str(tmp_path), str(tmp_path / "store"), "x")
    with pytest.raises(UserError, match="experiment name 'bad/name'"):
        R.import_run(str(smoke_run), str(tmp_path / "store"), "bad/name")
    assert not (tmp_path / "store").exists()


# ---------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_cli_import_list_show(smoke_run, tmp_path):
    store = str(tmp_path / "store")
    rc, out, err = run_cli("results", "import", smoke_run, "--name", "smoke", env={"PDARTS_STORAGE": store})
    assert rc == 0, err
    assert out.startswith("stored: ") and "9 epochs" in out
    rc, out, _ = run_cli("results", "import", smoke_run, "--name", "smoke", "--storage", store, "--json")
    assert rc == 0 and json.loads(out)["stored"] is False
    rc, out, _ = run_cli("results", "list", "--storage", store, "--json")
    [listed] = json.loads(out)
    assert (listed["name"], listed["trials"], listed["finished"]) == ("smoke", 1, 1)
    rc, out, _ = run_cli("results", "list", env={"PDARTS_STORAGE": store})
    assert rc == 0 and "smoke" in out and "finished" in out

    rc, out, err = run_cli("results", "show", "smoke", "--storage", store)
    assert rc == 0, err
    assert "1 trial" in out and "finished" in out and "peak MiB per stage" in out
    rc, out, _ = run_cli("results", "show", str(tmp_path / "store" / "smoke"), "--format", "markdown")
    lines = out.splitlines()
    assert (
        rc == 0 and lines[2].startswith("| trial | status |") and lines[4].count("|") == lines[2].count("|")
    )
    rc, out, _ = run_cli("results", "show", "smoke", "--storage", store, "--format", "json")
    [row] = json.loads(out)
    assert row["cfg_cells"] == SMOKE.cells and row["started"].endswith("+00:00")
    rc, out, _ = run_cli("results", "show", "smoke", "--storage", store, "--format", "csv")
    header, line = out.splitlines()
    assert header.split(",")[:3] == ["experiment", "trial_id", "status"] and line.startswith("smoke,run-")
    rc, out, _ = run_cli("results", "show", "smoke", "--storage", store, "--epochs", "--json")
    assert [(r["stage"], r["epoch"]) for r in json.loads(out)][-1] == (3, 2)
    rc, out, _ = run_cli("results", "show", "smoke", "--storage", store, "--by-m", "--format", "markdown")
    assert rc == 0 and len([ln for ln in out.splitlines() if ln.startswith("| run-")]) == 9


def test_show_summary_columns_are_the_knobs_that_differ(tmp_path, capsys):
    from pdarts_ray.cli import main

    s = str(tmp_path)
    R.write_trial(s, "exp", _finished_row("t1", lr=0.1))
    R.write_trial(s, "exp", _finished_row("t2", lr=0.2, data_root="[x]"))
    R.write_trial(s, "exp", R.trial_row("exp", "t3", "failed", to_dict(SMOKE), failure="out of memory"))
    assert main(["results", "show", "exp", "--storage", s, "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:5] == ["trial", "status", "data_root", "lr", "best acc"] and header[-1] == "failure"
    assert "cells" not in header
    t1, t2, t3 = ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[4:])
    assert t1[3] == "0.1" and t2[2] == "[x]" and t3[-1] == "out of memory"
    assert t1[header.index("skips before/after")] == "3/2"
    assert t1[header.index("peak MiB per stage")] == "100/200/300"
    assert t1[header.index("normal cell")] == "sep3x6 skipx2"
    assert main(["results", "show", "exp", "--storage", s]) == 0
    assert "[x]" in capsys.readouterr().out  # rich shows it as text


@pytest.mark.parametrize(
    "args, message",
    [
        (["results", "show", "nope", "--storage", "/nonexistent-store"], "no such experiment"),
        (["results", "show", "x", "--format", "xml"], "invalid choice: 'xml'"),
        (["results", "show", "x", "--epochs", "--by-m"], "not allowed with argument"),
        (["results", "list", "--storage", "relative"], "is a relative path"),
        (
            ["results", "import", ".", "--name", "x", "--storage", "/nonexistent-store"],
            "not a search run folder",
        ),
    ],
)
def test_cli_errors_are_one_line(args, message):
    rc, out, err = run_cli(*args)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
