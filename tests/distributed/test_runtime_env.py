"""What Ray is started or joined with, read off the calls (no Ray runs): every job and every
Ray Train run carries the CPU wait policy as the driver sees it (the user's own OpenMP
settings first), a submitted job's own variables are left to it, the job's processes are
told which Ray instance is theirs (one started for it or the cluster joined), and each
searcher holds the sweep's concurrency limit, not Tune."""

import contextlib
import json
import os

import pytest

from pdarts_ray.distributed.definition import parse_sweep


class Called(Exception):
    """Raised by a stand-in for a Ray entry point, carrying its keyword arguments."""


def _capture(*args, **kwargs):
    raise Called(kwargs)


def _enter(context) -> None:
    with context:
        pass


def _called(call) -> dict:
    with pytest.raises(Called) as caught:
        call()
    return caught.value.args[0]


@pytest.fixture
def user_policy(monkeypatch):
    """The user's own OpenMP setting in the driver's environment, and nothing else of it."""
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR", raising=False)
    return {"OMP_WAIT_POLICY": "PASSIVE"}


def test_the_policy_is_the_users_own_where_set_else_the_named_one(monkeypatch, user_policy):
    from pdarts_ray.distributed.runtime import job_runtime_env, worker_runtime_env

    assert job_runtime_env() == {"env_vars": user_policy}
    assert worker_runtime_env({"PDARTS_CACHE": "/c"}) == {"env_vars": {**user_policy, "PDARTS_CACHE": "/c"}}
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.setenv("PDARTS_WAIT_POLICY", "spin-1000")
    assert job_runtime_env({"X": "1"}) == {"env_vars": {"GOMP_SPINCOUNT": "1000", "X": "1"}}
    # a Tune trial builds its workers' environment from the policy its driver computed
    assert worker_runtime_env({}, policy=user_policy) == {"env_vars": user_policy}


def test_a_submitted_jobs_own_variables_are_left_to_it(monkeypatch, user_policy):
    from pdarts_ray.distributed.runtime import job_runtime_env

    # `ray job submit --runtime-env-json`: Ray refuses to merge a variable ray.init sets again
    submitted = {"runtime_env": {"working_dir": "/w", "env_vars": {"OMP_WAIT_POLICY": "ACTIVE"}}}
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps(submitted))
    assert job_runtime_env({"X": "1"}) == {"env_vars": {"X": "1"}}
    assert job_runtime_env() is None


def test_the_job_names_its_own_ray_instance_local_or_joined(monkeypatch, user_policy):
    import ray

    from pdarts_ray.distributed.connect import ray_connected
    from pdarts_ray.distributed.sweep import sweep_cpus

    cpus = sweep_cpus(parse_sweep({"base": {"preset": "smoke"}}))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setenv("RAY_ADDRESS", "local")
    monkeypatch.delenv("RAY_GCS_SERVER_PORT", raising=False)

    def start(**kwargs):  # Ray's head takes its GCS port from the environment
        raise Called({**kwargs, "gcs_port": os.environ["RAY_GCS_SERVER_PORT"]})

    monkeypatch.setattr(ray, "init", start)
    local = _called(lambda: _enter(ray_connected(None, cpus)))
    assert local["dashboard_host"] == "127.0.0.1" and local["include_dashboard"]
    assert local["runtime_env"]["env_vars"] == {
        **user_policy,
        "RAY_ADDRESS": f"127.0.0.1:{local['gcs_port']}",
    }
    assert "RAY_GCS_SERVER_PORT" not in os.environ
    monkeypatch.setattr(ray, "init", _capture)
    monkeypatch.delenv("RAY_ADDRESS")
    joined = _called(lambda: _enter(ray_connected("127.0.0.1:6379")))
    assert joined["address"] == "127.0.0.1:6379"
    assert set(joined["runtime_env"]["env_vars"]) == {*user_policy, "RAY_ADDRESS"}
    assert joined["runtime_env"]["env_vars"]["RAY_ADDRESS"].endswith(":6379")
    client = _called(lambda: _enter(ray_connected("ray://head:10001")))
    assert client["runtime_env"] == {"env_vars": user_policy}
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6380")  # as `ray job submit` sets it
    started = _called(lambda: _enter(ray_connected(cpus=2)))
    assert started["runtime_env"]["env_vars"]["RAY_ADDRESS"].endswith(":6380")


def test_every_ray_train_run_gives_its_workers_the_drivers_policy(monkeypatch, tmp_path, user_policy):
    import ray.train.torch
    import ray.tune
    import ray.tune.integration.ray_train

    from pdarts_ray.core.config import SEARCH_PRESETS, SearchConfig, resolve, to_dict
    from pdarts_ray.core.search import ProgressiveSearch
    from pdarts_ray.distributed import parallel_search, retrain, sweep, trial
    from pdarts_ray.evaluation.config import EVAL_PRESETS, EvalConfig

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", _capture)
    monkeypatch.setenv("PDARTS_CACHE", str(tmp_path / "cache"))
    cache = {"PDARTS_CACHE": str(tmp_path / "cache")}

    cfg = resolve(SearchConfig, SEARCH_PRESETS, "smoke", None, ["device=cpu"])
    ProgressiveSearch.create(cfg, tmp_path / "search")
    monkeypatch.setattr(parallel_search, "ray_connected", lambda cpus: contextlib.nullcontext(False))
    called = _called(lambda: parallel_search.search_with_ray(cfg, tmp_path / "search", 2, progress=False))
    assert called["run_config"].worker_runtime_env == {"env_vars": {**user_policy, **cache}}

    class Run:  # what fit_with_ray reads of an EvalRun
        cfg = resolve(EvalConfig, EVAL_PRESETS, "eval-smoke", None, ["device=cpu", "workers=2"])
        run_dir = tmp_path / "eval"

    called = _called(lambda: retrain.fit_with_ray(Run()))
    assert called["run_config"].worker_runtime_env == {"env_vars": {**user_policy, **cache}}

    class Context:  # a Tune trial's
        def get_trial_id(self):
            return "t0"

        def get_trial_name(self):
            return "trial_t0"

    monkeypatch.setattr(ray.tune, "get_context", Context)
    monkeypatch.setattr(ray.tune.integration.ray_train, "TuneReportCallback", ray.train.UserCallback)
    setup = {
        "name": "e",
        "storage": str(tmp_path),
        "experiment_path": str(tmp_path / "e"),
        "base_config": to_dict(cfg),
        "gpus_per_trial": 0.0,
        "cpus_per_trial": 1,
        "max_failures": 0,
        "worker_env": cache,
        "local_runs": None,
    }
    monkeypatch.setattr(ray.tune, "with_parameters", _capture)
    assert _called(lambda: sweep._trainable(setup))["policy"] == user_policy
    # the trial runs in a Ray process that may not have the driver's environment
    monkeypatch.delenv("OMP_WAIT_POLICY")
    called = _called(lambda: trial.search_trial({}, setup=setup, policy=user_policy))
    assert called["run_config"].worker_runtime_env == {"env_vars": {**user_policy, **cache}}


def test_each_searcher_holds_the_concurrency_limit_and_tune_none(tmp_path):
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator
    from ray.tune.search.optuna import OptunaSearch

    from pdarts_ray.distributed.sweep import build_tuner, search_algorithm, setup_of

    optuna = parse_sweep(
        {"base": {"preset": "smoke"}, "max_concurrent_trials": 3, "space": {"lr": {"uniform": [0.01, 0.1]}}}
    )
    limited = search_algorithm(optuna)
    assert isinstance(limited, ConcurrencyLimiter) and isinstance(limited.searcher, OptunaSearch)
    assert limited.max_concurrent == 3
    grid = parse_sweep(
        {
            "base": {"preset": "smoke"},
            "searcher": "grid",
            "max_concurrent_trials": 3,
            "space": {"seed": {"grid": [1, 2]}},
        }
    )
    generator = search_algorithm(grid)
    assert isinstance(generator, BasicVariantGenerator) and generator.max_concurrent == 3
    setup = setup_of(grid, "g", str(tmp_path), str(tmp_path / "g"), grid.base_config(), 0)
    assert build_tuner(grid, setup)._local_tuner._tune_config.max_concurrent_trials is None


def test_retrainings_as_ray_tasks_carry_the_policy(monkeypatch, tmp_path, user_policy):
    import ray

    from pdarts_ray.distributed.reproduce import run_evaluations
    from pdarts_ray.evaluation.genotypes import PDARTS
    from pdarts_ray.results.tables.common import EvalNeed, resolve_setup

    class Task:
        options = staticmethod(_capture)

    monkeypatch.setattr(ray, "cluster_resources", dict)
    monkeypatch.setattr(ray, "remote", lambda function: Task())
    need = EvalNeed(PDARTS.to_dict(), "P-DARTS")
    called = _called(lambda: run_evaluations([need], resolve_setup("smoke"), str(tmp_path), True, print))
    assert called["runtime_env"] == {"env_vars": user_policy}


def test_ray_is_left_as_found_and_what_was_started_is_shut_down(monkeypatch):
    import ray

    from pdarts_ray.distributed.connect import ray_connected

    calls = []
    monkeypatch.setattr(ray, "init", lambda **kwargs: calls.append("init"))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    monkeypatch.setattr(ray, "is_initialized", lambda: True)  # a driver already on Ray
    with ray_connected("127.0.0.1:6379") as connected:
        assert connected is False
    assert calls == []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(KeyboardInterrupt), ray_connected("127.0.0.1:6379") as connected:
        assert connected is True
        raise KeyboardInterrupt
    assert calls == ["init", "shutdown"]
