"""The README's tour, the lines that need no CIFAR, no cluster and no GPU, through the real
command line at smoke size: `pdarts-ray search` (with `--preset smoke`), then the README's
`pdarts-ray plot genotype pdarts-runs/search-*/` as the shell expands it, over that run
and one killed after its first epoch; the resume command the plot names for the killed
run; and `results show NAME --by-m` on the search imported into a store.

The tour's `sweep` and `reproduce` lines start Ray and run several searches (minutes on
2 cores): tests/distributed/test_sweep.py and tests/distributed/test_quiet_runs.py run
them at smoke size.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest
from helpers.paths import ROOT
from helpers.processes import kill_group

PICTURES = [f"{cell}.{fmt}" for cell in ("normal", "reduce") for fmt in ("png", "svg")]


def _tour() -> list[str]:
    """The commands of the README's tour block, comments left off."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## A tour\n\n```\n(.*?)```", readme, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines()]


def _main(capsys, *args) -> tuple[int, str, str]:
    from pdarts_ray.cli.main import main

    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, _lines(err)


def _lines(err: str) -> str:
    """stderr without warnings about the process itself (main() runs inside pytest's; the
    machine may be busy), which are not the command's answer."""
    return "".join(line for line in err.splitlines(keepends=True) if not line.startswith("warning: "))


def _shell(line: str, cwd) -> tuple[int, str, str]:
    """A tour line in bash (its glob expanded as a user's shell does), `pdarts-ray` being
    this environment's."""
    command = line.replace("pdarts-ray", f"{shlex.quote(sys.executable)} -m pdarts_ray.cli", 1)
    proc = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, _lines(proc.stderr)


def _kill_after_first_epoch(proc, run_dir) -> None:
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline:
        if metrics.is_file() and metrics.read_text().strip():
            os.killpg(proc.pid, signal.SIGKILL)
            return
        time.sleep(0.1)


@pytest.mark.slow
def test_the_tour_without_cifar_cluster_or_gpu(tmp_path, monkeypatch, capsys):
    tour = _tour()
    search, plot = "pdarts-ray search", "pdarts-ray plot genotype pdarts-runs/search-*/"
    assert search in tour and plot in tour and "pdarts-ray results show dropout-tiny --by-m" in tour
    monkeypatch.chdir(tmp_path)

    # a second search, killed after its first epoch, while the tour's own one runs
    killed = tmp_path / "pdarts-runs" / "search-killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pdarts_ray.cli", "search", "--preset", "smoke", "--out", killed, "--quiet"],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    watcher = threading.Thread(target=_kill_after_first_epoch, args=(proc, killed))
    watcher.start()
    try:
        rc, out, err = _main(capsys, *shlex.split(search)[1:], "--preset", "smoke")
        watcher.join()
    finally:
        kill_group(proc)
    assert rc == 0, err
    [run] = [p for p in (tmp_path / "pdarts-runs").iterdir() if p != killed]
    assert re.fullmatch(r"search-\d{8}-\d{6}", run.name)
    assert f"run folder: pdarts-runs/{run.name}" in out and "best valid acc" in out
    for name in (
        "config.json",
        "metrics.jsonl",
        "alphas.json",
        "genotypes.json",
        "genotype.json",
        "result.json",
    ):
        assert (run / name).is_file(), name
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert (killed / "metrics.jsonl").read_text().strip() and not (killed / "genotype.json").exists()

    # the glob takes both runs: the finished one is drawn, the killed one named with its resume command
    rc, out, err = _shell(plot, tmp_path)
    assert rc == 2
    assert out.split() == [f"{run.name}-{p}" for p in PICTURES]
    resume = "pdarts-ray search --resume pdarts-runs/search-killed"
    assert (
        err == f"error: pdarts-runs/search-killed/: no genotype.json yet: the search stopped before it "
        f"finished; resume it with: {resume}\n"
    )
    rc, _, err = _main(capsys, *shlex.split(resume)[1:])
    assert rc == 0, err
    assert json.loads((killed / "result.json").read_text())["genotype"]
    rc, out, err = _shell(plot, tmp_path)
    assert (rc, err) == (0, "")
    assert out.split() == [f"{name}-{p}" for name in (run.name, "search-killed") for p in PICTURES]
    drawn = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert drawn == sorted(out.split())
    assert "search-killed: normal cell" in (tmp_path / "search-killed-normal.svg").read_text()

    # results show NAME --by-m: one row per M of each trial
    store = tmp_path / "store"
    rc, _, err = _main(capsys, "results", "import", run, "--name", "tour", "--storage", store)
    assert rc == 0, err
    rc, out, err = _main(
        capsys, "results", "show", "tour", "--by-m", "--storage", store, "--format", "markdown"
    )
    assert rc == 0, err
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert [c.strip() for c in table[0].strip("|").split("|")] == [
        "trial",
        "M",
        "skips",
        "normal cell",
        "reduce cell",
    ]
    assert [row.split("|")[2].strip() for row in table[2:]] == [str(m) for m in range(9)]
