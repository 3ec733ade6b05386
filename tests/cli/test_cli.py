"""The `genotype` and `bench` commands, --json purity, --help and --version; tables at 80
columns, help texts listing their registries, "did you mean" for mistyped names."""

import json

import pytest
from helpers.cli import run_cli
from helpers.paths import FIXTURES, ROOT

from pdarts_ray.core.waiting import OPENMP_KEYS, WAIT_POLICIES


def _case_file(tmp_path, fixture, index):
    case = json.loads((FIXTURES / fixture).read_text())["cases"][index]
    path = tmp_path / "state.json"
    path.write_text(
        json.dumps(
            {
                "primitives": json.loads((FIXTURES / fixture).read_text())["primitives"],
                "normal": case["normal"],
                "reduce": case["reduce"],
                "extra": 1,
            }
        )
    )
    return case, path


def test_genotype_derive_json(tmp_path):
    case, path = _case_file(tmp_path, "genotype_fixtures.json", 4)
    code, stdout, stderr = run_cli("genotype", "derive", path, "--skip-connects", case["M"], "--json")
    assert code == 0, stderr
    assert json.loads(stdout) == case["expected"]["genotype"]
    code, stdout, _ = run_cli("genotype", "derive", path, "--json")
    assert json.loads(stdout) == case["expected"]["genotype_before_restriction"]


def test_genotype_prune_json(tmp_path):
    case, path = _case_file(tmp_path, "switch_fixtures.json", 0)
    args = ["genotype", "prune", path, "--drop", case["num_to_drop"], "--json"]
    code, stdout, stderr = run_cli(*args + (["--last-stage"] if case["is_last_stage"] else []))
    assert code == 0, stderr
    assert json.loads(stdout) == case["expected"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("{", "not valid JSON"),
        ('{"normal": {"switches": [], "alphas": []}}', "normal.switches"),
        ('{"primitives": ["none"], "normal": {}, "reduce": {}}', "primitives differ"),
        ("[1]", "expected a JSON object"),
    ],
)
def test_genotype_derive_bad_state(tmp_path, content, fragment):
    path = tmp_path / "s.json"
    path.write_text(content)
    code, stdout, stderr = run_cli("genotype", "derive", path, "--json")
    assert code == 2 and fragment in stderr and stderr.count("\n") == 1 and stdout == ""


def test_genotype_prune_too_many(tmp_path):
    _, path = _case_file(tmp_path, "genotype_fixtures.json", 0)
    code, _, stderr = run_cli("genotype", "prune", path, "--drop", 3)
    assert code == 2 and "--drop" in stderr


@pytest.mark.slow
def test_bench_step_json():
    code, stdout, stderr = run_cli(
        "bench",
        "step",
        "--stage",
        "3",
        "--batch",
        "2",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert set(result) == {
        "stage",
        "batch",
        "device",
        "median_step_s",
        "peak_memory_bytes",
        "flops",
        "achieved_flop_per_s",
        "openmp_env",
    }
    policies = [{k: env.get(k) for k in OPENMP_KEYS} for env in WAIT_POLICIES.values()]
    assert result["openmp_env"] in policies  # the settings its threads waited with
    assert result["stage"] == 3 and result["batch"] == 2 and result["device"] == "cpu"
    assert result["median_step_s"] > 0 and result["peak_memory_bytes"] > 2**20
    assert result["achieved_flop_per_s"] == result["flops"]["full_step"] / result["median_step_s"] > 0


def test_version_and_help():
    code, stdout, _ = run_cli("--version")
    assert code == 0 and stdout.startswith("pdarts-ray ")
    for cmd in (["search"], ["presets"], ["genotype", "derive"], ["genotype", "prune"], ["bench", "step"]):
        code, stdout, _ = run_cli(*cmd, "--help")
        assert code == 0 and "usage: pdarts-ray" in stdout


def test_presets_json():
    code, stdout, _ = run_cli("presets", "--json")
    presets = json.loads(stdout)
    assert {"paper-c10", "paper-c100", "tiny", "smoke"} <= set(presets)
    assert presets["tiny"]["config"]["dataset"] == "digits"


@pytest.mark.slow
def test_sigterm_stops_a_search_that_then_resumes_at_once(tmp_path):
    """`ray job stop`, `kill` or a pod's shutdown send SIGTERM: the driver unwinds as after
    Ctrl-C, releasing its claim, so the run continues with no --take-over and no waiting."""
    import signal
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdarts_ray.cli",
            "search",
            "--preset",
            "smoke",
            "--set",
            "epochs=6",
            "--set",
            "warmup_epochs=1",
            "--out",
            str(run),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not (run / "checkpoints").is_dir() or not any((run / "checkpoints").iterdir()):
        assert time.time() < deadline
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.1)
    assert (run / ".driver.json").is_file()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "stopped (SIGTERM)" in err
    assert not (run / ".driver.json").exists()
    assert not (run / "result.json").exists()
    code, out, err = run_cli("search", "--resume", run, "--json")
    assert code == 0, err
    assert json.loads(out)["genotype"]


# ---------------------------------------------------------------- tables, help texts, mistyped names


def test_presets_piped_at_80_columns_show_every_value():
    presets = json.loads(run_cli("presets", "--json")[1])
    code, out, err = run_cli("presets", env={"COLUMNS": "80"})
    assert code == 0, err
    assert max(map(len, out.splitlines())) <= 80 and "…" not in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    for name, preset in presets.items():
        c = preset["config"]
        values = (
            [c["network"], c["channels"], c["layers"], c["epochs"], c["batch_size"], c["lr"]]
            if preset["kind"] == "evaluate"
            else ["/".join(map(str, c[k])) for k in ("cells", "ops_kept", "skip_dropout")]
            + [c["skip_connects"], c["epochs"], f"({c['warmup_epochs']})", c["batch_size"], c["channels"]]
        )
        assert lines[name] == [name, *map(str, values), c["dataset"]]


def _store(tmp_path):
    from pdarts_ray import results as R
    from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve, to_dict

    config = to_dict(resolve(SearchConfig, SEARCH_PRESETS, "smoke"))

    def cell(op):
        return {
            "normal": [[op, 0], [op, 1]] * 4,
            "normal_concat": [2, 3, 4, 5],
            "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4,
            "reduce_concat": [2, 3, 4, 5],
        }

    result = {
        "genotype": cell("sep_conv_3x3"),
        "skip_connects": 2,
        "skip_connects_before_refinement": 3,
        "peak_memory_bytes": [2**20, 2**21, 2**22],
        "stage_seconds": [1.5, 2.5, 3.5],
        "best_valid_acc": 0.75,
        "final_valid_acc": 0.5,
        "versions": {},
    }
    genotypes = {"final_by_M": {str(m): cell("skip_connect" if m else "sep_conv_3x3") for m in range(9)}}
    for trial, lr in (("t1", 0.1), ("t2", 0.2)):
        R.write_trial(
            str(tmp_path),
            "exp",
            R.trial_row(
                "exp", trial, "finished", {**config, "lr": lr}, result, genotypes, started=1.0, finished=2.0
            ),
        )
    R.write_trial(str(tmp_path), "exp", R.trial_row("exp", "t3", "failed", config, failure="out of memory"))
    return str(tmp_path)


@pytest.mark.parametrize(
    "view, values",
    [
        (
            ["show", "exp"],
            (
                "t1",
                "t2",
                "0.1",
                "0.2",
                "0.750",
                "3/0",
                "1/2/4",
                "1.5/2.5/3.5",
                "sep3x8",
                "maxx8",
                "out of memory",
            ),
        ),
        (["show", "exp", "--by-m"], ("t1", "t2", "0.1", "0.2", "sep3x8", "skipx8", "maxx8")),
        (["list"], ("exp", "3", "2", "1")),
    ],
)
def test_results_tables_at_80_columns_show_every_value(tmp_path, capsys, monkeypatch, view, values):
    from pdarts_ray.cli.main import main

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["results", *view, "--storage", _store(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80 and "…" not in out
    assert [value for value in values if value not in out] == []


def test_results_show_by_m_shows_every_m_as_the_sweeps_page_says(tmp_path, capsys):
    """The store keeps every M; a sweep's space over M names the rows of the sweep's own table."""
    from pdarts_ray.cli.main import main

    assert main(["results", "show", "exp", "--storage", _store(tmp_path), "--by-m", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["trial_id"], r["M"]) for r in rows] == [(t, m) for t in ("t1", "t2") for m in range(9)]
    docs = " ".join((ROOT / "docs" / "sweeps.md").read_text().split())
    assert "`results show --by-m` shows every M, 0..8, for every trial" in docs


def test_a_table_too_wide_for_its_values_is_printed_row_by_row():
    from rich.console import Console
    from rich.table import Table

    from pdarts_ray.cli.common import print_table

    table = Table(title="t")
    for col in ("name", *(f"column {i}" for i in range(12))):
        table.add_column(col)
    table.add_row("a", *(f"value-{i}" for i in range(12)))
    for width, rows in ((400, 1), (60, 0)):
        console = Console(width=width, record=True)
        print_table(table, console)
        out = console.export_text()
        assert max(map(len, out.splitlines())) <= width
        assert all(f"value-{i}" in out for i in range(12))
        assert len([ln for ln in out.splitlines() if "value-0" in ln and "value-11" in ln]) == rows


def _help(*command) -> str:
    import contextlib
    import io

    from pdarts_ray.cli.main import build_parser

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return out.getvalue()


def test_help_texts_list_the_registries_they_describe(monkeypatch):
    from pdarts_ray.core.config import DATASETS, DTYPES, KERNELS, SEARCH_PRESETS
    from pdarts_ray.evaluation.config import EVAL_PRESETS
    from pdarts_ray.experiments import list_experiments
    from pdarts_ray.results.tables.common import DATASETS as PAPER_DATASETS
    from pdarts_ray.results.tables.common import PRESETS as TABLE_PRESETS

    monkeypatch.setenv("COLUMNS", "1000")  # no name split over two lines
    for command, registries in (
        (["search"], (SEARCH_PRESETS, DATASETS)),
        (["sweep"], (SEARCH_PRESETS, list_experiments())),
        (["evaluate"], (EVAL_PRESETS,)),
        (["bench", "step"], (KERNELS, DTYPES)),
        (["bench", "predict"], (SEARCH_PRESETS, DATASETS, KERNELS)),
        (["reproduce"], (list_experiments(with_table=True), TABLE_PRESETS, PAPER_DATASETS)),
    ):
        text = " ".join(_help(*command).replace(",", " ").replace("{", " ").split())  # choices: {a,b}
        assert [name for registry in registries for name in registry if f" {name}" not in text] == [], command
    assert "tiny (default)" in _help("search") and "eval-tiny (default)" in _help("evaluate")


@pytest.mark.parametrize(
    "args, hint",
    [
        (["serch"], "did you mean 'search'?"),
        (["results", "shwo"], "did you mean 'show'?"),
        (["reproduce", "skp", "--no-run"], "did you mean 'skip'?"),
        (["bench", "step", "--stage", "1", "--kernels", "leen"], "did you mean 'lean'?"),
        (["search", "--preset", "tinny", "--dry-run"], "did you mean 'tiny'?"),
        (
            ["evaluate", "--genotype", "PDARTS", "--preset", "eval-smok", "--dry-run"],
            "did you mean 'eval-smoke'?",
        ),
        (["search", "--set", "sed=3", "--dry-run"], "did you mean 'seed'?"),
        (["search", "--set", "kernels=leen", "--dry-run"], "did you mean 'lean'?"),
        (["search", "--config", "{file}", "--dry-run"], "did you mean 'epochs'?"),
    ],
)
def test_a_mistyped_name_is_one_line_naming_the_closest(tmp_path, capsys, args, hint):
    from pdarts_ray.cli.main import main

    (tmp_path / "c.yaml").write_text("epoch: 3\n")
    assert main([a.format(file=tmp_path / "c.yaml") for a in args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and captured.err.startswith("error: ")
    assert hint in captured.err
