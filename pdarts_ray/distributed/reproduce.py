"""Reproducing a paper table: start what the store lacks, then compute the table.

Missing searches run as sweeps (one Ray Tune experiment per batch of otherwise equal
configs, a grid over seeds), members of the table's family `reproduce-<preset>-<dataset>`.
A batch that was interrupted (some trials without a row, Ray Tune's state saved) is
resumed, its unfinished trials continuing from their last epoch, rather than started
again. Missing retrainings run in this process one after another, or as Ray tasks on a
cluster (`address`); their rows go to the family's `evaluations/` table and their run
folders to its `eval-runs/` (a temporary folder for a URI storage).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..experiments import get_experiment
from ..experiments.outcomes import ReproduceResult
from ..results import experiment_path
from ..results.tables.common import (
    EvalNeed,
    Rendered,
    SearchNeed,
    Setup,
    StoreView,
    canonical_genotype,
    digest,
    eval_key,
    family_experiments,
    search_key,
)
from .experiment import SWEEP_FILE, claim_experiment, exists, load_setup, tune_state_missing
from .runtime import worker_runtime_env


class ReproduceFailed(Exception):
    """A search or retraining that a table needs failed (exit code 1)."""


# ---------------------------------------------------------------- starting what is missing


def sweep_search_keys(sweep: dict) -> set[str]:
    """The search keys a sweep of this family runs: its base config under each seed of its grid."""
    base = sweep["base_config"]
    seeds = sweep["sweep"]["space"].get("seed", {}).get("grid", [base["seed"]])
    return {search_key({**base, "seed": seed}) for seed in seeds}


def interrupted_sweeps(
    root: str, experiment: str, needs: list[SearchNeed]
) -> dict[str, tuple[dict, list[SearchNeed]]]:
    """Family sweeps that stopped before every trial had a row but after Ray Tune saved its
    state, by name: each one's saved setup and the missing searches it would finish if resumed."""
    from ..results import experiment_path, read_trials

    out, taken = {}, set()
    for name in family_experiments(root, experiment):
        path = experiment_path(root, name)
        if not exists(f"{path}/{SWEEP_FILE}"):  # stopped before it wrote its definition: nothing to continue
            continue
        sweep = load_setup(path)  # a damaged one is an error, not a reason to search again
        keys = sweep_search_keys(sweep)
        covered = [n for n in needs if n.key in keys and n.key not in taken]
        if covered and read_trials(root, name).num_rows < len(keys) and not tune_state_missing(path):
            out[name] = (sweep, covered)
            taken |= {n.key for n in covered}
    return out


def search_sweeps(needs: list[SearchNeed], setup: Setup, root: str, local: bool) -> list[dict]:
    """Sweep definitions for the missing searches: one grid over seeds per otherwise equal config.
    Names are fresh members of the family, so a batch that failed is never confused with the next."""
    groups: dict[str, list[SearchNeed]] = {}
    for need in needs:
        rest = {k: v for k, v in need.overrides.items() if k != "seed"}
        groups.setdefault(json.dumps(rest, sort_keys=True), []).append(need)
    out = []
    for rest_text, members in groups.items():
        rest = json.loads(rest_text)
        seeds = sorted({n.config["seed"] for n in members})
        stem = f"{setup.experiment}.s-{digest({'rest': rest, 'seeds': seeds})[:10]}"
        name, attempt = stem, 1
        while exists(experiment_path(root, name)):
            attempt += 1
            name = f"{stem}-{attempt}"
        # a local machine runs two searches side by side (each on one thread); a cluster all of them
        concurrent = min(len(seeds), max(1, min(2, os.cpu_count() or 1))) if local else len(seeds)
        definition = {
            "name": name,
            "storage": root,
            "base": {"preset": setup.search_preset, "config": rest},
            "searcher": "grid",
            "max_concurrent_trials": concurrent,
            "gpus_per_trial": "auto",
            "cpus_per_trial": 1,
        }
        if len(seeds) == 1:
            definition["base"]["config"] = {**rest, "seed": seeds[0]}
        else:
            definition["space"] = {"seed": {"grid": seeds}}
        out.append(definition)
    return out


def _eval_runs_dir(root: str, experiment: str) -> Path:
    if "://" in root:
        return Path(tempfile.gettempdir()) / "pdarts-ray-eval-runs" / experiment
    return Path(root) / experiment / "eval-runs"


def evaluate_genotype(
    eval_config: dict,
    genotype: dict,
    run_dir: str,
    name: str,
    progress: bool = False,
    experiment: str | None = None,
) -> dict:
    """Retrain one genotype in this process, continuing an earlier attempt's run folder if there is one.
    With `experiment` (as a Ray task) it also sets the retraining's Ray gauges every epoch."""
    import sys

    from ..core.config import from_dict
    from ..core.run_folder import RESULT_FILE
    from ..core.runtime import resolve_device
    from ..core.space import Genotype
    from ..evaluation.config import EvalConfig
    from ..evaluation.data import check_data
    from ..evaluation.retrain import AllHooks, EpochLines, EvalRun

    run_dir = Path(run_dir)
    gauges = None
    if experiment is not None:
        from .monitoring import EvalMetrics

        gauges = EvalMetrics(experiment, run_dir.name, name, eval_config["epochs"])
    hooks = AllHooks(EpochLines(eval_config["epochs"], sys.stderr) if progress else None, gauges)
    if (run_dir / RESULT_FILE).is_file():  # trained, but its row was never written
        return json.loads((run_dir / RESULT_FILE).read_text())
    if (run_dir / "config.json").is_file():
        run = EvalRun.open(run_dir)
        return run.train(run.saved_state(), hooks)
    if run_dir.exists():  # an attempt killed before it wrote its config
        import shutil

        shutil.rmtree(run_dir)
    cfg = from_dict(EvalConfig, eval_config, "evaluation config")
    resolve_device(cfg.device)
    data = check_data(cfg)
    run = EvalRun.create(cfg, Genotype.from_dict(genotype), run_dir, name)
    return run.train(None, hooks, data=data)


def _store_evaluation(root: str, setup: Setup, need: EvalNeed, result: dict) -> None:
    from ..results import evaluation_row, write_evaluation

    genotype = canonical_genotype(need.genotype)
    key = eval_key(genotype, setup.eval_config)
    write_evaluation(
        root,
        setup.experiment,
        evaluation_row(
            setup.experiment, key, genotype, setup.eval_preset, setup.eval_config, result, need.name
        ),
    )


def run_evaluations(
    needs: list[EvalNeed], setup: Setup, root: str, use_ray: bool, log, progress: bool = False
) -> list[str]:
    """Retrain every missing genotype and store its row; the failures' descriptions."""
    runs_dir = _eval_runs_dir(root, setup.experiment)
    failures = []
    if not use_ray:
        for i, need in enumerate(needs):
            key = eval_key(need.genotype, setup.eval_config)
            log(f"retraining {i + 1}/{len(needs)}: {need.name} ({setup.eval_preset}, {key})")
            try:
                result = evaluate_genotype(
                    setup.eval_config, need.genotype, str(runs_dir / key), need.name, progress
                )
            except Exception as err:  # one failed retraining leaves the others to run
                failures.append(f"retraining {need.name}: {type(err).__name__}: {err}")
                continue
            _store_evaluation(root, setup, need, result)
            log(f"retrained {need.name}: error {result['error_pct']:.2f} %, {result['seconds']:.0f} s")
        return failures
    import ray

    from .monitoring import EvalMetrics

    gpu = setup.eval_config["device"] != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
    cpus = max(1, setup.eval_config["threads"])
    # threads 0 would mean every core of the node: a task holding one CPU then runs beside
    # others each on all cores
    config = {**setup.eval_config, "threads": cpus}
    # the wait policy given to each task too: Ray may run in a job this package did not start
    task = ray.remote(evaluate_genotype).options(
        num_cpus=cpus, num_gpus=1 if gpu else 0, max_retries=1, runtime_env=worker_runtime_env({})
    )
    pending = {}
    for need in needs:
        key = eval_key(need.genotype, setup.eval_config)
        pending[
            task.remote(config, need.genotype, str(runs_dir / key), need.name, experiment=setup.experiment)
        ] = (need, key)
    log(f"retraining {len(needs)} cells as Ray tasks ({setup.eval_preset})")
    # a finished task's worker may exit, and Ray drops a gauge series that no process reports
    # any more: this process holds each finished retraining's last figures until it returns
    finished_gauges = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        need, key = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except Exception as err:
            failures.append(f"retraining {need.name}: {str(err).strip().splitlines()[-1][:300]}")
            continue
        _store_evaluation(root, setup, need, result)
        gauges = EvalMetrics(setup.experiment, key, need.name, config["epochs"])
        gauges.record_result(result)
        finished_gauges.append(gauges)
        log(f"retrained {need.name}: error {result['error_pct']:.2f} %")
    return failures


@dataclass
class Outcome:
    rendered: Rendered
    experiment: str
    searches_started: int
    evaluations_started: int
    files: list[str] = field(default_factory=list)

    def result(self, out: str | Path | None = None) -> ReproduceResult:
        """The table as the API returns it, its files written into `out` when given."""
        from ..results.tables.render import write_outputs

        files = write_outputs(self.rendered, Path(out)) if out is not None else []
        r = self.rendered
        return ReproduceResult.of(r, self.experiment, self.searches_started, self.evaluations_started, files)


def reproduce(
    table: str,
    setup: Setup,
    storage: str | None = None,
    address: str | None = None,
    run: bool = True,
    log=None,
    verbose: int = 0,
    progress: bool = False,
    take_over: bool = False,
) -> Outcome:
    """Start what the table lacks in the store (unless `run` is False), then compute it. A run
    that may start work claims the table's family first (one reproduce per family at a time)."""
    from ..results import storage_root

    root = storage_root(storage)
    log = log or (lambda line: None)
    spec = get_experiment(table).table_spec(setup)
    if not run:
        return _reproduce(spec, setup, root, address, False, log, verbose, progress)
    with claim_experiment(
        experiment_path(root, setup.experiment), f"pdarts-ray reproduce {table}", take_over
    ):
        return _reproduce(spec, setup, root, address, True, log, verbose, progress)


def _reproduce(
    spec, setup: Setup, root: str, address: str | None, run: bool, log, verbose: int, progress: bool
) -> Outcome:
    from .connect import ray_connected
    from .definition import Sweep
    from .sweep import sweep_cpus

    store = StoreView(root, setup.experiment)
    missing = [n for n in spec.searches if store.search(n) is None]
    unique = list({n.key: n for n in missing}.values())
    searches, evaluations = 0, 0
    with contextlib.ExitStack() as cluster:  # a cluster (`address`) joined once, when there is work
        if run and unique:
            sweeps, resumable = _search_batches(unique, setup, root, address)
            cpus = sweep_cpus(sweeps[0] if sweeps else Sweep(**next(iter(resumable.values()))[0]["sweep"]))
            if address is None:  # a local Ray for the searches alone: the retrainings here get the cores
                with ray_connected(None, cpus):
                    _run_searches(sweeps, resumable, root, log, verbose)
            else:
                cluster.enter_context(ray_connected(address, cpus))
                _run_searches(sweeps, resumable, root, log, verbose)
            searches = len(unique)
            store.refresh()
            failed = [n for n in unique if store.search(n) is None]
            if failed:
                raise ReproduceFailed(
                    "; ".join(
                        f"{n.describe()} failed: {store.failures.get(n.key, 'no row stored')}" for n in failed
                    )
                )
        wanted = [
            e for e in spec.evaluations(store) if store.evaluation(e.genotype, setup.eval_config) is None
        ]
        wanted = list({eval_key(e.genotype, setup.eval_config): e for e in wanted}.values())
        if run and wanted:
            if address is not None:  # joined already if it ran the searches
                cluster.enter_context(ray_connected(address))
            failures = run_evaluations(wanted, setup, root, address is not None, log, progress)
            evaluations = len(wanted)
            store.refresh()
            if failures:
                raise ReproduceFailed("; ".join(failures))
    rendered = spec.build(store)
    if not run:
        still = [n for n in spec.searches if store.search(n) is None]
        rendered.missing = [n.describe() for n in {n.key: n for n in still}.values()]
        lacking: dict[str, EvalNeed] = {}  # one line per cell, under the first name it has
        for e in spec.evaluations(store):
            if store.evaluation(e.genotype, setup.eval_config) is None:
                lacking.setdefault(eval_key(e.genotype, setup.eval_config), e)
        rendered.missing += [f"retraining {e.name} ({setup.eval_preset})" for e in lacking.values()]
    return Outcome(rendered, setup.experiment, searches, evaluations)


def _search_batches(unique: list[SearchNeed], setup: Setup, root: str, address: str | None):
    """The sweeps to start, and the interrupted ones that continue where they stopped (their
    trials from their last epoch)."""
    from .definition import parse_sweep

    resumable = interrupted_sweeps(root, setup.experiment, unique)
    resumed = {n.key for _, covered in resumable.values() for n in covered}
    fresh = [n for n in unique if n.key not in resumed]
    sweeps = [parse_sweep(d, "reproduce") for d in search_sweeps(fresh, setup, root, local=address is None)]
    return sweeps, resumable


def _run_searches(sweeps: list, resumable: dict, root: str, log, verbose: int) -> None:
    from .sweep import resume_sweep, run_sweep

    for name, (_, covered) in resumable.items():
        log(f"continuing: {name} ({len(covered)} search{'es' if len(covered) > 1 else ''})")
        resume_sweep(name, root, verbose=verbose)
    for sweep in sweeps:
        count = sweep.num_samples * max(1, len(sweep.space.get("seed", {}).get("grid", [0])))
        log(f"searching: {sweep.name} ({count} search{'es' if sweep.space else ''})")
        run_sweep(sweep, verbose=verbose)
