"""One driver per run folder and per experiment: claims on a local folder."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from helpers.cli import run_cli

from pdarts_ray.core.claim import CLAIM_FILE, Claim, LocalClaimFiles, claim_folder
from pdarts_ray.core.errors import UserError


def _holder(folder, **changes):
    """Write a claim file as another driver would have."""
    holder = {
        "command": "pdarts-ray sweep",
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": time.time(),
        "renewed": time.time(),
        "lease_s": 120.0,
        "token": "other",
        **changes,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CLAIM_FILE).write_text(json.dumps(holder))
    return holder


def test_a_claim_is_exclusive_and_names_its_holder(tmp_path):
    with claim_folder(tmp_path, "pdarts-ray search"):
        held = json.loads((tmp_path / CLAIM_FILE).read_text())
        assert held["pid"] == os.getpid() and held["command"] == "pdarts-ray search"
        with pytest.raises(UserError) as err:
            claim_folder(tmp_path, "pdarts-ray search --resume").acquire()
        message = str(err.value)
        assert "held by pdarts-ray search" in message and f"pid {os.getpid()}" in message
        assert "\n" not in message
    assert not (tmp_path / CLAIM_FILE).exists()  # released


def test_a_claim_whose_process_is_gone_is_taken_over(tmp_path, capsys):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _holder(tmp_path, pid=gone.pid)
    with claim_folder(tmp_path, "pdarts-ray search --resume"):
        assert json.loads((tmp_path / CLAIM_FILE).read_text())["pid"] == os.getpid()
    assert "its process is gone" in capsys.readouterr().err


def test_an_expired_lease_is_taken_over_even_from_another_host(tmp_path, capsys):
    _holder(tmp_path, host="elsewhere", renewed=time.time() - 1000)
    with claim_folder(tmp_path, "pdarts-ray sweep --resume"):
        pass
    assert "its lease expired" in capsys.readouterr().err


def test_a_live_holder_on_another_host_holds_until_forced(tmp_path, capsys):
    _holder(tmp_path, host="elsewhere")
    with pytest.raises(UserError, match="on elsewhere"):
        claim_folder(tmp_path, "pdarts-ray sweep --resume").acquire()
    with claim_folder(tmp_path, "pdarts-ray sweep --resume", take_over=True):
        pass
    assert "forced (--take-over)" in capsys.readouterr().err


def test_the_lease_is_renewed_while_the_driver_runs(tmp_path):
    claim = Claim(LocalClaimFiles(tmp_path / CLAIM_FILE), "pdarts-ray sweep", renew_s=0.05)
    with claim:
        first = json.loads((tmp_path / CLAIM_FILE).read_text())["renewed"]
        time.sleep(0.3)
        assert json.loads((tmp_path / CLAIM_FILE).read_text())["renewed"] > first
    assert not claim.lost


def test_of_two_drivers_taking_over_one_stale_claim_exactly_one_wins(tmp_path):
    data = json.dumps({"command": "x", "host": "elsewhere", "pid": 1, "renewed": 0}).encode()
    files = LocalClaimFiles(tmp_path / CLAIM_FILE)
    assert files.create(data) == data
    results, barrier = [], threading.Barrier(8)

    def take(i):
        barrier.wait()
        results.append(files.replace(data, f"winner {i}".encode()))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and (tmp_path / CLAIM_FILE).read_bytes() == winners[0]


def test_search_resume_on_a_held_run_folder_stops_with_one_line(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir = tmp_path / "run"
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
        _holder(run_dir, command="pdarts-ray search", pid=sleeper.pid)
        before = sorted(p.name for p in run_dir.iterdir())
        code, out, err = run_cli("search", "--resume", run_dir)
        assert code == 2
        assert (
            err.startswith("error: ")
            and "held by pdarts-ray search" in err
            and len(err.strip().splitlines()) == 1
        )
        assert sorted(p.name for p in run_dir.iterdir()) == before
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_new_search_into_a_held_folder_stops_with_one_line(tmp_path):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _holder(tmp_path / "run", command="pdarts-ray search", pid=sleeper.pid)
        code, out, err = run_cli("search", "--preset", "smoke", "--out", tmp_path / "run")
        assert code == 2 and "held by pdarts-ray search" in err
        assert [p.name for p in (tmp_path / "run").iterdir()] == [CLAIM_FILE]
    finally:
        sleeper.kill()
        sleeper.wait()
