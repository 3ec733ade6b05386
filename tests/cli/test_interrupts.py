"""Ctrl-C and SIGTERM during a search: the line names the exact command that resumes it, a
resumed search says where it continues, and a search that had finished exits 0. A sweep
that Ray Tune ended early on Ctrl-C ends its driver the same way (a real Ctrl-C on a sweep:
tests/distributed/test_sweep.py)."""

import json
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from pdarts_ray.cli.main import main, report_interrupt
from pdarts_ray.core.checkpoint import CheckpointDir
from pdarts_ray.core.errors import Stopped, SweepInterrupted
from pdarts_ray.core.progress import SearchProgress


def _interrupt(cls=KeyboardInterrupt, run_dir=None):
    err = cls()
    if run_dir is not None:
        err.run_dir = run_dir
    return err


def test_an_interrupted_run_names_its_resume_command(tmp_path, capsys):
    run = tmp_path / "my run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert report_interrupt(_interrupt(run_dir=run)) == 130
    assert (
        capsys.readouterr().err.strip() == f"interrupted; continue with: pdarts-ray search --resume '{run}'"
    )
    assert report_interrupt(_interrupt(Stopped, run)) == 143
    assert "stopped (SIGTERM); continue with: pdarts-ray search --resume" in capsys.readouterr().err


def test_an_interrupt_after_the_result_is_written_exits_0(tmp_path, capsys):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "result.json").write_text("{}")
    assert report_interrupt(_interrupt(run_dir=tmp_path)) == 0
    assert "after the search had finished" in capsys.readouterr().err


def test_an_interrupt_outside_a_run_or_before_its_folder_says_interrupted(tmp_path, capsys):
    assert report_interrupt(_interrupt()) == 130
    assert report_interrupt(_interrupt(run_dir=tmp_path / "never-written")) == 130
    assert capsys.readouterr().err.splitlines() == ["interrupted", "interrupted"]


@pytest.mark.slow
def test_a_search_stopped_after_an_epoch_resumes_and_says_from_where(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    epoch_end = SearchProgress.on_epoch_end

    def stop_after_second_epoch(self, metrics, checkpoint):
        epoch_end(self, metrics, checkpoint)
        if (metrics["stage"], metrics["epoch"]) == (1, 1):
            raise KeyboardInterrupt

    monkeypatch.setattr(SearchProgress, "on_epoch_end", stop_after_second_epoch)
    assert main(["search", "--preset", "smoke", "--out", str(run)]) == 130
    assert (
        capsys.readouterr().err.splitlines()[-1]
        == f"interrupted; continue with: pdarts-ray search --resume {run}"
    )
    monkeypatch.setattr(SearchProgress, "on_epoch_end", epoch_end)
    assert main(["search", "--resume", str(run)]) == 0
    out = capsys.readouterr().out
    assert "resumed from stage 1, epoch 2" in out
    assert out.index("resumed from stage 1, epoch 2") < out.index("stage 1 epoch 3/")
    assert (run / "result.json").is_file()


@pytest.mark.slow
def test_ctrl_c_while_the_summary_prints_exits_0(tmp_path, capsys, monkeypatch):
    import pdarts_ray.cli.search as search_cli

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(search_cli, "_print_search_summary", interrupted)
    assert main(["search", "--preset", "smoke", "--out", str(tmp_path / "run")]) == 0
    assert "after the search had finished" in capsys.readouterr().err


@pytest.mark.slow
def test_a_real_sigint_prints_the_resume_command_that_works(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "pdarts_ray.cli", "search", "--preset", "smoke", "--out", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while CheckpointDir(run / "checkpoints").latest_path() is None:
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # the smoke search finished before the signal landed
        pytest.skip("the search ended before the signal arrived")
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"interrupted; continue with: pdarts-ray search --resume {run}"
    resume = last.split("continue with: ")[1].split()
    assert resume[:3] == ["pdarts-ray", "search", "--resume"]
    done = subprocess.run(
        [sys.executable, "-m", "pdarts_ray.cli", *resume[1:], "--json"],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "resumed from stage" in done.stderr
    assert json.loads(done.stdout)["run_dir"] == str(run)


def test_a_sweep_with_trials_left_without_a_row_ends_its_driver_naming_the_resume(
    tmp_path, capsys, monkeypatch
):
    import pdarts_ray.results
    from pdarts_ray.distributed.sweep import _end_if_interrupted

    rows = {"count": 2}
    monkeypatch.setattr(
        pdarts_ray.results, "read_trials", lambda root, name: SimpleNamespace(num_rows=rows["count"])
    )
    setup = {"name": "cut", "storage": str(tmp_path / "my store")}
    _end_if_interrupted(2, setup)  # every trial ended with its row: nothing to say
    rows["count"] = 1  # Tune was stopped with a trial still to run
    with pytest.raises(SweepInterrupted) as stop:
        _end_if_interrupted(2, setup)
    assert report_interrupt(stop.value) == 130
    assert capsys.readouterr().err.strip() == (
        f"interrupted; continue with: pdarts-ray sweep --resume cut --storage '{tmp_path / 'my store'}'"
    )


def test_reproduce_ends_at_the_first_interrupted_sweep_and_says_run_it_again(monkeypatch, capsys):
    from pdarts_ray import api
    from pdarts_ray.distributed import reproduce

    started = []

    def run_sweep(sweep, verbose=1):
        started.append(sweep)
        raise SweepInterrupted("a", "continue with: pdarts-ray sweep --resume a")

    sweeps = [SimpleNamespace(name=name, num_samples=1, space={}) for name in "ab"]
    monkeypatch.setattr("pdarts_ray.distributed.sweep.run_sweep", run_sweep)
    with pytest.raises(SweepInterrupted):
        reproduce._run_searches(sweeps, {}, "store", log=lambda line: None, verbose=0)
    assert started == sweeps[:1]  # the second sweep never started

    def interrupted(*args, **kwargs):
        raise SweepInterrupted("a", "continue with: pdarts-ray sweep --resume a")

    monkeypatch.setattr(api, "reproduce", interrupted)
    assert main(["reproduce", "table1", "--preset", "smoke", "--quiet"]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "interrupted; the same command continues it (the finished searches are kept)"
    )
