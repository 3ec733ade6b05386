"""The CPU wait policy: in the environment before torch loads, the user's own settings win,
results do not change with it, and a busy machine is noticed and said in one line."""

import json
import os
import subprocess
import sys

import pytest

from pdarts_ray.core import waiting
from pdarts_ray.core.contention import bench_contention, policy_process_env, start_busy_cores, stop_busy_cores
from pdarts_ray.core.errors import UserError

# `alone`: the tests that measure how busy the machine is; nothing else may run beside them
# (every other test here waits for nothing, and an `alone` test holds up the Ray tests' chain)

_SHOW_ENV = "import os, json; print(json.dumps({k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'GOMP_SPINCOUNT')}))"  # noqa: E501


@pytest.fixture
def clean_env(monkeypatch):
    for key in (*waiting.OPENMP_KEYS, waiting.POLICY_ENV):
        monkeypatch.delenv(key, raising=False)


def test_auto_spins_on_a_quiet_machine_and_waits_passively_on_a_busy_one(clean_env, monkeypatch):
    assert waiting.DEFAULT_WAIT_POLICY == "auto"
    monkeypatch.setattr(waiting, "busy_cores", lambda window_s: 0.1)
    assert waiting.wait_policy_env() == waiting.WAIT_POLICIES["spin"] == {"GOMP_SPINCOUNT": "300000"}
    monkeypatch.setattr(waiting, "busy_cores", lambda window_s: 0.9)
    assert waiting.wait_policy_env() == waiting.WAIT_POLICIES["passive"] == {"OMP_WAIT_POLICY": "PASSIVE"}
    monkeypatch.setattr(waiting, "busy_cores", lambda window_s: None)  # no /proc: as on a quiet machine
    assert waiting.wait_policy_env() == waiting.WAIT_POLICIES["spin"]
    assert waiting.wait_policy_env("spin-3000") == {"GOMP_SPINCOUNT": "3000"}


@pytest.mark.alone
def test_auto_sees_a_real_busy_core(clean_env):
    loops = start_busy_cores(1)
    try:
        assert waiting.resolve_policy("auto") == "passive"
    finally:
        stop_busy_cores(loops)


def test_a_users_own_openmp_setting_wins(clean_env, monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert waiting.wait_policy_env() == {"OMP_WAIT_POLICY": "ACTIVE"}
    monkeypatch.setenv(waiting.POLICY_ENV, "passive")
    assert waiting.wait_policy_env() == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_a_policy_chosen_by_name_and_a_bad_name(clean_env, monkeypatch):
    monkeypatch.setenv(waiting.POLICY_ENV, "spin-1000")
    assert waiting.wait_policy_env() == {"GOMP_SPINCOUNT": "1000"}
    monkeypatch.setenv(waiting.POLICY_ENV, "fast")
    with pytest.raises(UserError, match="PDARTS_WAIT_POLICY=fast: unknown wait policy"):
        waiting.wait_policy_env()


@pytest.mark.slow
def test_the_cli_sets_the_policy_before_torch_loads():
    code = (
        "import sys; from pdarts_ray.cli.main import build_parser, main; build_parser(); "
        "assert 'torch' not in sys.modules; main(['bench', 'predict', '--preset', 'smoke', '--json']); "
        "assert 'torch' in sys.modules; " + _SHOW_ENV
    )
    env = {k: v for k, v in os.environ.items() if k not in (*waiting.OPENMP_KEYS, waiting.POLICY_ENV)}
    for policy, expected in (
        ("spin-1000", {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "1000"}),
        ("passive", {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}),
    ):
        proc = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**env, waiting.POLICY_ENV: policy},
        )
        assert "torch was imported before" not in proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected


def test_a_bad_policy_name_is_one_line_and_exit_2():
    env = {**os.environ, waiting.POLICY_ENV: "fast"}
    proc = subprocess.run(
        [sys.executable, "-m", "pdarts_ray.cli", "presets"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown wait policy" in proc.stderr


def test_applying_after_torch_loaded_says_it_is_too_late(clean_env, capsys):
    import torch  # noqa: F401  (loaded, as in any test process)

    waiting.apply_wait_policy("passive")
    assert "torch was imported before the wait policy was set" in capsys.readouterr().err
    os.environ.pop("OMP_WAIT_POLICY")


def test_a_benchmark_process_gets_the_policy_it_names(clean_env, monkeypatch):
    monkeypatch.setenv("GOMP_SPINCOUNT", "7")  # the caller's own setting must not leak into the measurement
    env = policy_process_env("passive")
    assert "GOMP_SPINCOUNT" not in env and env[waiting.POLICY_ENV] == "passive"


@pytest.mark.alone
def test_busy_cores_sees_a_busy_loop_and_warns():
    quiet = waiting.busy_cores(0.5)
    assert quiet is not None and quiet >= 0
    loops = start_busy_cores(1)
    try:
        busy = waiting.busy_cores(1.0)
        line = waiting.warn_if_busy(len(os.sched_getaffinity(0)) + 1, "--set threads=1")
    finally:
        stop_busy_cores(loops)
    assert busy >= 0.6, busy
    assert line is not None and "--set threads=1" in line and "\n" not in line


@pytest.mark.alone
def test_background_work_at_low_priority_does_not_count_as_busy():
    loops = start_busy_cores(1, nice=19)
    try:
        niced = waiting.busy_cores(1.0)
    finally:
        stop_busy_cores(loops)
    loops = start_busy_cores(1)
    try:
        normal = waiting.busy_cores(1.0)
    finally:
        stop_busy_cores(loops)
    assert normal - niced >= 0.6, (normal, niced)


def test_no_warning_for_one_thread():
    assert waiting.warn_if_busy(1, "--set threads=1") is None


@pytest.mark.slow
def test_the_wait_policy_changes_no_computed_bit(tmp_path):
    """A search step's losses and weights under the default policy and under passive waiting, two
    threads each, in fresh processes: identical."""
    code = (
        "import torch, sys; from pdarts_ray.core.bench import bench_config, harness_stage; "
        "cfg = bench_config(batch=4, image_size=8, threads=2, device='cpu'); torch.manual_seed(0); "
        "torch.set_num_threads(2); net = harness_stage(1, cfg, torch.device('cpu')); "
        "g = torch.Generator().manual_seed(1); x = torch.randn(4, 3, 8, 8, generator=g); "
        "y = torch.randint(0, 10, (4,), generator=g); net.arch_step(x, y); net.weight_step(x, y); "
        "torch.save(net.model.state_dict(), sys.argv[1])"
    )
    states = []
    for policy in ("spin", "passive"):
        path = tmp_path / f"{policy}.pt"
        subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=policy_process_env(policy))
        states.append(__import__("torch").load(path))
    assert states[0].keys() == states[1].keys()
    assert all(states[0][k].equal(states[1][k]) for k in states[0])


def test_bench_contention_rejects_an_unknown_policy():
    with pytest.raises(UserError, match="unknown wait policy 'fast'"):
        bench_contention([], policies=("fast",))


@pytest.mark.alone
@pytest.mark.slow
def test_bench_contention_times_each_policy_alone_and_beside_a_busy_core():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pdarts_ray.cli",
            "bench",
            "contention",
            "--stage",
            "1",
            "--policies",
            "spin-10000,passive",
            "--batch",
            "2",
            "--image-size",
            "8",
            "--threads",
            "2",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["stage"], r["policy"]) for r in rows] == [(1, "spin-10000"), (1, "passive")]
    for r in rows:
        assert (
            r["alone_s"] > 0
            and r["beside_s"] > 0
            and r["slowdown"] == pytest.approx(r["beside_s"] / r["alone_s"])
        )
    assert rows[0]["alone_vs_baseline"] == 1.0
