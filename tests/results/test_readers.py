"""The store read by others' tools, as docs/results.md shows: DuckDB and pandas give the
rows the project's own readers give, across files of two versions (union by name) and
with epoch rows that a restarted trial wrote twice (the part written last wins)."""

import re
import shutil

import duckdb
import pandas as pd
import pytest
from helpers.paths import FIXTURES, ROOT

from pdarts_ray.results import read_epochs, read_trials, trial_row, write_epochs, write_trial


def docs_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", (ROOT / "docs" / "results.md").read_text(), re.S)


def docs_queries():
    """The docs' two DuckDB statements: (trials, epochs)."""
    (block,) = docs_blocks("sql")
    trials, epochs, rest = block.split(";")
    assert not rest.strip()
    return trials, epochs


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """The 0.1.0 experiment (rows without the `workers` column), one trial added by this
    version, and a later part that rewrites two epochs of a trial (as a restarted trial does)."""
    root = tmp_path_factory.mktemp("readers")
    folder = root / "two-versions"
    for part in ("trials", "epochs"):
        shutil.copytree(FIXTURES / "old-layout-sweep" / part, folder / part)
    old = read_trials(str(folder)).to_pylist()[0]
    config = {k[4:]: v for k, v in old.items() if k.startswith("cfg_")}
    result = {"genotype": __import__("json").loads(old["genotype"]), "best_valid_acc": 0.5, "workers": 2}
    write_trial(str(root), "two-versions", trial_row("two-versions", "new_trial", "finished", config, result))
    epochs = read_epochs(str(folder)).to_pylist()
    again = [dict(r, valid_acc=0.123 + i) for i, r in enumerate(epochs[:2])]
    write_epochs(str(root), "two-versions", again[0]["trial_id"], again)
    return folder


def test_the_store_mixes_versions_and_repeats(store):
    assert (
        "workers"
        not in __import__("pyarrow.parquet")
        .parquet.read_schema(next((store / "trials").glob("9b478*.parquet")))
        .names
    )
    assert read_trials(str(store)).column("workers").to_pylist() == [None, 2]  # 9b478_00000, new_trial
    assert [r["valid_acc"] for r in read_epochs(str(store)).to_pylist()[:2]] == [0.123, 1.123]


def duckdb_query(sql: str, folder) -> list[dict]:
    sql = sql.replace("/data/pdarts/dropout-tiny", str(folder))
    frame = duckdb.sql(sql).df()
    return frame.to_dict("records")


def test_duckdb_reads_the_trials_as_the_project_does(store):
    trials_sql, _ = docs_queries()
    got = duckdb_query(trials_sql, store)
    want = read_trials(str(store)).to_pylist()
    assert sorted(r["trial_id"] for r in got) == [r["trial_id"] for r in want]
    by_id = {r["trial_id"]: r for r in want}
    for row in got:
        assert row["best_valid_acc"] == by_id[row["trial_id"]]["best_valid_acc"]
        assert list(row["cfg_skip_dropout"]) == by_id[row["trial_id"]]["cfg_skip_dropout"]


def test_duckdb_deduplicates_the_epochs_as_the_project_does(store):
    _, epochs_sql = docs_queries()
    got = duckdb_query(epochs_sql, store)
    want = read_epochs(str(store)).to_pylist()
    assert len(got) == len(want) < sum(1 for _ in (store / "epochs").glob("*.parquet")) * 10
    for a, b in zip(got, want):
        assert {k: a[k] for k in ("trial_id", "stage", "epoch", "valid_acc", "train_loss")} == {
            k: b[k] for k in ("trial_id", "stage", "epoch", "valid_acc", "train_loss")
        }


def test_pandas_reads_what_the_project_reads(store):
    (block,) = docs_blocks("python")
    scope = {}
    exec(block.replace("/data/pdarts/dropout-tiny", str(store)), scope)
    assert sorted(scope["trials"]["trial_id"]) == read_trials(str(store)).column("trial_id").to_pylist()
    want = read_epochs(str(store)).to_pandas()
    got = scope["epochs"].reset_index(drop=True)
    pd.testing.assert_frame_equal(got[want.columns].reset_index(drop=True), want, check_dtype=False)


def test_without_deduplication_the_repeated_epochs_show(store):
    """The rule matters: a plain read of the epoch files has the rewritten epochs twice."""
    plain = duckdb.sql(
        f"SELECT count(*) AS n FROM read_parquet('{store}/epochs/*.parquet', union_by_name = true)"
    ).fetchall()[0][0]
    assert plain == read_epochs(str(store)).num_rows + 2
