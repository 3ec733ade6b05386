"""Pictures: the drawn edges of the published P-DARTS cells, files written by
plot genotype / plot run / plot_bars, finished and unfinished runs, and CLI errors."""

import json
import shutil
import xml.etree.ElementTree as ET

import pytest
from helpers.cli import run_cli

from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve
from pdarts_ray.core.errors import UserError
from pdarts_ray.core.search import run_search
from pdarts_ray.core.space import PRIMITIVES
from pdarts_ray.evaluation.genotypes import PDARTS
from pdarts_ray.plots import RUN_FIGURES, plot_bars, plot_genotype, plot_run
from pdarts_ray.plots.bars import series_colours
from pdarts_ray.plots.cells import Edge, genotype_edges
from pdarts_ray.plots.curves import curve_pictures, mean_curve
from pdarts_ray.plots.runs import alpha_series, load_run, stage_memory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ALGORITHM.md 1.11, gene by gene: (input, node, op) with inputs c_{k-2}, c_{k-1}, 0..3
PDARTS_NORMAL = [
    ("c_{k-2}", "0", "skip_connect"),
    ("c_{k-1}", "0", "dil_conv_3x3"),
    ("c_{k-2}", "1", "skip_connect"),
    ("c_{k-1}", "1", "sep_conv_3x3"),
    ("c_{k-1}", "2", "sep_conv_3x3"),
    ("1", "2", "sep_conv_3x3"),
    ("c_{k-2}", "3", "sep_conv_3x3"),
    ("2", "3", "dil_conv_5x5"),
]
PDARTS_REDUCE = [
    ("c_{k-2}", "0", "avg_pool_3x3"),
    ("c_{k-1}", "0", "sep_conv_5x5"),
    ("c_{k-2}", "1", "sep_conv_3x3"),
    ("0", "1", "dil_conv_5x5"),
    ("c_{k-2}", "2", "max_pool_3x3"),
    ("c_{k-1}", "2", "dil_conv_3x3"),
    ("c_{k-1}", "3", "dil_conv_3x3"),
    ("1", "3", "dil_conv_5x5"),
]
CONCAT = [(n, "c_{k}", None) for n in ("0", "1", "2", "3")]


def _check_picture(path):
    assert path.is_file() and path.stat().st_size > 1000
    if path.suffix == ".png":
        assert path.read_bytes().startswith(PNG_MAGIC)
    else:
        assert ET.parse(path).getroot().tag.endswith("svg")


def _svg_texts(path):
    return [el.text for el in ET.parse(path).getroot().iter() if el.tag.endswith("text") and el.text]


@pytest.mark.parametrize("cell, expected", [("normal", PDARTS_NORMAL), ("reduce", PDARTS_REDUCE)])
def test_pdarts_edges_are_the_published_ones(cell, expected):
    assert genotype_edges(PDARTS, cell) == [Edge(*e) for e in expected + CONCAT]


def test_plot_genotype_writes_both_cells_with_every_op_label(tmp_path):
    paths = plot_genotype(PDARTS, tmp_path, "pdarts", name="PDARTS")
    assert [p.name for p in paths] == [
        "pdarts-normal.png",
        "pdarts-normal.svg",
        "pdarts-reduce.png",
        "pdarts-reduce.svg",
    ]
    for path in paths:
        _check_picture(path)
    for cell, expected in (("normal", PDARTS_NORMAL), ("reduce", PDARTS_REDUCE)):
        texts = _svg_texts(tmp_path / f"pdarts-{cell}.svg")
        labels = sorted(t for t in texts if t in PRIMITIVES)
        assert labels == sorted(op for _, _, op in expected)
        assert {"0", "1", "2", "3"} <= set(texts)


def test_plot_bars_leaves_missing_values_out(tmp_path):
    paths = plot_bars(
        "Test error",
        ["C10", "C100", "ImageNet"],
        {"paper": [2.5, 16.55, 24.4], "ours": [2.71, None, None]},
        "error (%)",
        tmp_path / "sub" / "error",
        note="ours: one seed",
    )
    assert [p.name for p in paths] == ["error.png", "error.svg"]
    for path in paths:
        _check_picture(path)
    texts = _svg_texts(paths[1])
    assert {"2.5", "16.55", "24.4", "2.71"} <= set(texts) and "None" not in texts
    with pytest.raises(ValueError, match="3 groups"):
        plot_bars("x", ["a", "b", "c"], {"ours": [1.0]}, "y", tmp_path / "bad")


def test_the_papers_bars_are_grey_and_ours_coloured(tmp_path):
    names = ["paper run 1", "ours run 1", "paper run 2", "ours run 2"]
    colours = series_colours(names)
    greys = [c for c in colours if c[1:3] == c[3:5] == c[5:7]]
    assert greys == colours[0::2] and len(set(colours)) == 4
    paths = plot_bars(
        "Table 3", ["stage 1"], {n: [float(i + 1)] for i, n in enumerate(names)}, "GB", tmp_path / "t3"
    )
    svg = paths[1].read_text()
    fills = {c for c in colours if f"fill: {c}" in svg}
    assert fills == set(colours), (colours, fills)


def test_curves_draw_each_run_and_the_mean_and_break_at_missing_epochs(tmp_path):
    runs = [[0.1, 0.2, None, 0.4], [0.3, 0.4, 0.5]]
    assert mean_curve(runs) == pytest.approx([0.2, 0.3, 0.5, 0.4])
    assert mean_curve([[None, None]]) == [None, None]
    pictures = curve_pictures(
        "A long title " * 12,
        {"without": runs, "with": [[None, None]]},
        "epoch",
        "weight",
        stage_starts=[1, 3],
        note="a note",
    )
    (tmp_path / "c.svg").write_bytes(pictures["svg"])
    _check_picture(tmp_path / "c.svg")
    texts = _svg_texts(tmp_path / "c.svg")
    assert "without (mean of 2)" in texts and "with (none yet)" in texts
    title_lines = [t for t in texts if "title" in t]
    assert len(title_lines) > 1, "a long title is broken into lines, not cut off"
    with pytest.raises(ValueError, match="at least one run"):
        curve_pictures("x", {"a": []}, "epoch", "y", [1])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("plots") / "run"
    run_search(resolve(SearchConfig, SEARCH_PRESETS, "smoke"), run_dir)
    return run_dir


@pytest.fixture()
def unfinished_run(smoke_run, tmp_path):
    """The smoke run as it stood after stage 2's second epoch."""
    run_dir = tmp_path / "unfinished"
    shutil.copytree(smoke_run, run_dir)
    for name in ("result.json", "genotype.json", "genotypes.json"):
        (run_dir / name).unlink()
    for name in ("metrics.jsonl", "alpha_trajectory.jsonl"):
        lines = (run_dir / name).read_text().splitlines(keepends=True)
        (run_dir / name).write_text("".join(lines[:5]))
    alphas = json.loads((run_dir / "alphas.json").read_text())
    (run_dir / "alphas.json").write_text(
        json.dumps({"primitives": alphas["primitives"], "stage1": alphas["stage1"]})
    )
    return run_dir


def test_plot_run_on_a_finished_search(smoke_run, tmp_path):
    paths = plot_run(smoke_run, tmp_path)
    assert [p.name for p in paths] == [f"{name}.{fmt}" for name in RUN_FIGURES for fmt in ("png", "svg")]
    for path in paths:
        _check_picture(path)
    run = load_run(smoke_run)
    alphas = json.loads((smoke_run / "alphas.json").read_text())
    # each stage's columns are named by that stage's switches: 8, then 5, then 3 ops per edge
    for cell in ("normal", "reduce"):
        series = alpha_series(run, cell)
        for edge in range(14):
            for stage, epoch in ((1, 0), (2, 3), (3, 6)):
                on = [
                    PRIMITIVES[k] for k, v in enumerate(alphas[f"stage{stage}"][cell]["switches"][edge]) if v
                ]
                at = sorted(op for op, points in series[edge].items() if any(x == epoch for x, _ in points))
                assert at == sorted(on)
                assert sum(
                    p for points in series[edge].values() for x, p in points if x == epoch
                ) == pytest.approx(1.0)
    result = json.loads((smoke_run / "result.json").read_text())
    mib, labels, _ = stage_memory(run)
    assert mib == pytest.approx([b / 2**20 for b in result["peak_memory_bytes"]])
    assert labels == ["stage 1", "stage 2", "stage 3"]


@pytest.mark.slow
def test_plot_run_on_an_unfinished_search(smoke_run, unfinished_run, tmp_path):
    run = load_run(unfinished_run)
    finished = json.loads((smoke_run / "alphas.json").read_text())
    # the running stage's ops are rebuilt by pruning stage 1, exactly as the search did
    assert run.switches[2] == {cell: finished["stage2"][cell]["switches"] for cell in ("normal", "reduce")}
    mib, labels, _ = stage_memory(run)
    assert len(mib) == 2 and labels == ["stage 1", "stage 2\n(so far)"]
    rc, out, err = run_cli("plot", "run", unfinished_run, "--json")  # default --out: RUN_DIR/plots
    assert rc == 0, err
    paths = [unfinished_run / "plots" / f"{name}.{fmt}" for name in RUN_FIGURES for fmt in ("png", "svg")]
    assert json.loads(out) == [str(p) for p in paths]
    for path in paths:
        _check_picture(path)


def test_plot_run_refuses_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match="not a search run folder"):
        plot_run(tmp_path, tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


@pytest.mark.slow
def test_cli_plot_genotype_and_errors(tmp_path):
    rc, out, err = run_cli("plot", "genotype", "PDARTS", "--out", tmp_path / "g", "--json")
    assert rc == 0, err
    assert [p.rsplit("/", 1)[-1] for p in json.loads(out)] == [
        "pdarts-normal.png",
        "pdarts-normal.svg",
        "pdarts-reduce.png",
        "pdarts-reduce.svg",
    ]
    rc, out, err = run_cli("plot", "run", tmp_path, "--json")
    assert rc == 2 and out == "" and err.startswith("error: ") and "not a search run folder" in err
    assert len(err.strip().splitlines()) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"normal": [["conv_9x9", 0]], "reduce": []}')
    rc, out, err = run_cli("plot", "genotype", bad, "--out", tmp_path / "b")
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_a_file_that_is_not_a_picture_is_never_overwritten(tmp_path):
    (tmp_path / "pdarts-reduce.svg").write_text("my notes")
    with pytest.raises(UserError, match="not a picture"):
        plot_genotype(PDARTS, tmp_path, "pdarts")
    assert sorted(tmp_path.iterdir()) == [tmp_path / "pdarts-reduce.svg"]
    assert (tmp_path / "pdarts-reduce.svg").read_text() == "my notes"
    (tmp_path / "error.png").write_text("not an image")
    with pytest.raises(UserError, match="not a picture"):
        plot_bars("x", ["a"], {"ours": [1.0]}, "y", tmp_path / "error")


# ---------------------------------------------------------------- several arguments


def _runs(tmp_path, smoke_run, unfinished_run):
    """A runs folder as `pdarts-ray search` leaves it: one finished run, one interrupted."""
    runs = tmp_path / "pdarts-runs"
    shutil.copytree(smoke_run, runs / "search-a")
    shutil.copytree(unfinished_run, runs / "search-b")
    return runs


def _main(capsys, *args):
    from pdarts_ray.cli.main import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    # warnings about the process (main() runs inside pytest's) are not the command's lines
    return (
        rc,
        out,
        "".join(line for line in err.splitlines(keepends=True) if not line.startswith("warning: ")),
    )


def test_unique_stems_take_parent_folders_then_numbers():
    from pdarts_ray.cli.plot import unique_stems

    assert unique_stems([("runs", "search-a"), ("runs", "search-b")], "x") == ["search-a", "search-b"]
    assert unique_stems([("a", "run"), ("b", "run"), ("c", "other")], "x") == ["a-run", "b-run", "other"]
    # a published name keeps its stem; the file that shares it takes its folder's name
    assert unique_stems([("pdarts",), ("cells", "pdarts")], "x") == ["pdarts", "cells-pdarts"]
    assert unique_stems([("a", "b", "run"), ("c", "b", "run")], "x") == ["a-b-run", "c-b-run"]
    # equal once cleaned (`a b` and `a-b`): numbered, never onto another argument's stem
    assert unique_stems([("a-b",), ("a-b",), ("a-b-2",)], "x") == ["a-b", "a-b-3", "a-b-2"]
    assert unique_stems([()], "genotype") == ["genotype"]


def test_plot_genotype_draws_a_glob_of_runs_and_says_how_to_resume_the_unfinished(
    smoke_run, unfinished_run, tmp_path, capsys, monkeypatch
):
    runs = _runs(tmp_path, smoke_run, unfinished_run)
    monkeypatch.chdir(tmp_path)
    rc, out, err = _main(
        capsys,
        "plot",
        "genotype",
        "pdarts-runs/search-a/",
        "pdarts-runs/search-b/",
        "PDARTS",
        "pdarts",
        "--json",
    )
    assert rc == 2
    # the finished run and the published cell (named twice, drawn once) are drawn
    assert json.loads(out) == [
        f"{stem}-{cell}.{fmt}"
        for stem in ("search-a", "pdarts")
        for cell in ("normal", "reduce")
        for fmt in ("png", "svg")
    ]
    assert err == (
        "error: pdarts-runs/search-b/: no genotype.json yet: the search stopped before it finished; "
        "resume it with: pdarts-ray search --resume pdarts-runs/search-b\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == sorted(json.loads(out))
    assert "search-a: normal cell" in _svg_texts(tmp_path / "search-a-normal.svg")
    assert "PDARTS: reduction cell" in _svg_texts(tmp_path / "pdarts-reduce.svg")
    assert not (runs / "search-b" / "genotype.json").exists()


def test_a_run_still_running_is_named_with_its_driver(unfinished_run, tmp_path, capsys):
    import os
    import socket
    import time

    holder = {
        "command": "pdarts-ray search",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "renewed": time.time(),
        "lease_s": 120.0,
        "token": "t",
    }
    (unfinished_run / ".driver.json").write_text(json.dumps(holder))
    rc, out, err = _main(capsys, "plot", "genotype", unfinished_run, "--out", tmp_path / "figs")
    assert rc == 2 and out == "" and not (tmp_path / "figs").exists()
    assert f"no genotype.json yet: the search is still running: pdarts-ray search (pid {os.getpid()}" in err
    assert "--resume" not in err
    # a claim left by a process that is gone: the run was interrupted
    (unfinished_run / ".driver.json").write_text(json.dumps({**holder, "pid": 2**22 + 1}))
    rc, _, err = _main(capsys, "plot", "genotype", unfinished_run)
    assert rc == 2 and f"resume it with: pdarts-ray search --resume {unfinished_run}" in err


def test_runs_of_the_same_name_and_files_in_the_way(smoke_run, tmp_path, capsys):
    for parent in ("a", "b"):
        shutil.copytree(smoke_run, tmp_path / parent / "run")
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "pdarts-normal.png").write_text("my notes")
    rc, out, err = _main(
        capsys, "plot", "genotype", tmp_path / "a" / "run", tmp_path / "b" / "run", "PDARTS", "--out", figs
    )
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("error: PDARTS: ") and "pdarts-normal.png: exists and is not a picture" in err
    assert (figs / "pdarts-normal.png").read_text() == "my notes"
    assert sorted(p.name for p in figs.iterdir()) == sorted(
        [f"{s}-{c}.{f}" for s in ("a-run", "b-run") for c in ("normal", "reduce") for f in ("png", "svg")]
        + ["pdarts-normal.png"]
    )
    assert "run: normal cell" in _svg_texts(figs / "b-run-normal.svg")
    rc, out, err = _main(
        capsys, "plot", "genotype", "PDARTS", "DARTS_V2", "--stem", "x", "--out", figs / "new"
    )
    assert rc == 2 and out == "" and "--stem: only with one GENOTYPE" in err and not (figs / "new").exists()
    rc, out, err = _main(
        capsys, "plot", "genotype", "PDARTS", "DARTS_V2", "--out", figs / "pdarts-normal.png"
    )
    assert rc == 2 and out == "" and err.count("\n") == 1 and "is not a folder" in err


@pytest.mark.slow
def test_plot_run_draws_several_runs_into_one_folder(smoke_run, unfinished_run, tmp_path, capsys):
    runs = _runs(tmp_path, smoke_run, unfinished_run)
    (runs / "empty").mkdir()
    rc, out, err = _main(
        capsys,
        "plot",
        "run",
        runs / "search-a",
        runs / "search-b",
        runs / "empty",
        "--out",
        tmp_path / "figs",
        "--json",
    )
    assert rc == 2
    assert json.loads(out) == [
        str(tmp_path / "figs" / f"{run}-{name}.{fmt}")
        for run in ("search-a", "search-b")
        for name in RUN_FIGURES
        for fmt in ("png", "svg")
    ]
    note, error = err.splitlines()
    assert note == (
        f"note: {runs / 'search-b'}: the search stopped before it finished; resume it with: "
        f"pdarts-ray search --resume {runs / 'search-b'}"
    )
    assert error.startswith(f"error: {runs / 'empty'}: not a search run folder")
    assert not (runs / "search-a" / "plots").exists()
    # without --out each run's own plots folder, the file names as they always were
    rc, out, err = _main(capsys, "plot", "run", runs / "search-a", runs / "search-b", "--quiet")
    assert rc == 0 and out == "" and err == ""
    for run in ("search-a", "search-b"):
        assert sorted(p.name for p in (runs / run / "plots").iterdir()) == sorted(
            f"{name}.{fmt}" for name in RUN_FIGURES for fmt in ("png", "svg")
        )


def test_a_run_without_an_epoch_says_how_to_resume_it(unfinished_run, tmp_path):
    for name in ("metrics.jsonl", "alpha_trajectory.jsonl"):
        (unfinished_run / name).write_text("")
    with pytest.raises(
        UserError,
        match=r"nothing to plot yet \(no epoch has finished\); the search stopped "
        r"before it finished; resume it with: pdarts-ray search --resume ",
    ):
        plot_run(unfinished_run, tmp_path / "plots")
