"""The Python API: searches, evaluations, sweeps and the paper's tables from scripts and
notebooks, with typed configs in and result objects out. The CLI is a layer over these
functions; `import pdarts_ray` makes them available as `pdarts_ray.run_search` and so on,
loading nothing heavy until one is used.

    >>> import pdarts_ray as pr
    >>> cfg = pr.search_config("smoke", seed=3, epochs=4)
    >>> cfg.cells, cfg.seed, cfg.epochs
    ([3, 4, 5], 3, 4)
    >>> pr.search_config("smoke", cells=[3, 4])
    Traceback (most recent call last):
    ...
    pdarts_ray.core.errors.UserError: config: ops_kept: has 3 entries but cells has 2 (one per stage)

docs/python.md walks through a search, its retraining, a sweep and a table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .core.config import SEARCH_PRESETS, SearchConfig, apply_overrides, read_config_file
from .core.errors import UserError, interrupts_name
from .core.space import Genotype
from .evaluation.config import EVAL_PRESETS, EvalConfig
from .experiments import Experiment, get_experiment, list_experiments
from .experiments.outcomes import ReproduceResult, SweepResult

MLFLOW_EXPERIMENT = "pdarts-ray"  # the MLflow experiment of searches logged without a name

__all__ = [  # by section; pdarts_ray/__init__.py makes each available lazily
    *("search_config", "eval_config", "run_search", "resume_search", "open_search", "SearchResult"),
    *("genotype_of", "run_evaluation", "resume_evaluation", "EvalResult"),
    *("run_sweep", "sweep_experiment", "resume_sweep", "SweepResult", "paper_experiments"),
    *("reproduce", "ReproduceResult", "read_trials", "read_epochs"),
]


# ---------------------------------------------------------------- configs


def search_config(preset: str = "tiny", config_file: str | Path | None = None, **overrides) -> SearchConfig:
    """A validated search config: `preset`, then a YAML/JSON file of keys, then keyword overrides."""
    return _config(SearchConfig, SEARCH_PRESETS, preset, config_file, overrides)


def eval_config(preset: str = "eval-tiny", config_file: str | Path | None = None, **overrides) -> EvalConfig:
    """A validated evaluation (retraining) config, resolved like `search_config`."""
    return _config(EvalConfig, EVAL_PRESETS, preset, config_file, overrides)


def _config(cls, presets: Mapping[str, Mapping[str, Any]], preset: str, config_file, overrides: dict):
    if preset not in presets:
        raise UserError(f"unknown preset '{preset}' (choose from {', '.join(presets)})")
    values = apply_overrides(cls, {}, presets[preset], f"preset {preset}")
    if config_file is not None:
        values = apply_overrides(cls, values, read_config_file(config_file), str(config_file))
    values = apply_overrides(cls, values, overrides, "override")
    return cls(**values).validate()


# ---------------------------------------------------------------- searches


@dataclass(frozen=True)
class SearchResult:
    """A finished search: its run folder, final genotype and result.json (`summary`)."""

    run_dir: Path
    genotype: Genotype
    config: SearchConfig
    summary: dict = field(repr=False)

    @property
    def best_valid_acc(self) -> float | None:
        valid = [m["valid_acc"] for m in self.metrics() if m.get("valid_acc") is not None]
        return max(valid) if valid else None

    def metrics(self) -> list[dict]:
        """One row per epoch: stage, epoch, losses, accuracies, learning rate, seconds."""
        from .core.checkpoint import read_jsonl
        from .core.run_folder import METRICS_FILE

        return read_jsonl(self.run_dir / METRICS_FILE)

    def genotype_for(self, skip_connects: int) -> Genotype:
        """The final cells refined to another number M of skip-connects (0..8)."""
        by_m = _genotypes_by_m(self.run_dir)
        if str(skip_connects) not in by_m:
            raise UserError(
                f"skip_connects: must be one of {', '.join(sorted(by_m, key=int))}, got {skip_connects}"
            )
        return Genotype.from_dict(by_m[str(skip_connects)])


def _genotypes_by_m(run_dir: Path) -> dict:
    import json

    from .core.run_folder import GENOTYPES_FILE

    return json.loads((run_dir / GENOTYPES_FILE).read_text())["final_by_M"]


def run_search(
    config: SearchConfig | None = None,
    out: str | Path | None = None,
    *,
    workers: int = 1,
    use_ray: bool = False,
    sync_bn: bool = True,
    progress: bool | TextIO = False,
    mlflow: str | None = None,
    mlflow_experiment: str = MLFLOW_EXPERIMENT,
    take_over: bool = False,
) -> SearchResult:
    """Run a three-stage search into the new folder `out` (default ./pdarts-runs/search-<time>).

    With `workers` > 1 (or `use_ray`) it runs as one Ray Train run of that many data-parallel
    workers, joining $RAY_ADDRESS or starting a local Ray; otherwise in this process.
    `progress`: True prints one line per epoch to stderr; a stream (sys.stdout) prints them there.
    `mlflow`: a tracking URI (or absolute folder) to log the search to, as one MLflow run of
    `mlflow_experiment`.
    """
    cfg = config or search_config()
    run_dir = Path(out) if out is not None else _default_folder("search")
    _check_workers(cfg, workers)
    tracking = _tracking(mlflow, mlflow_experiment)
    with interrupts_name(run_dir):
        if workers > 1 or use_ray:
            _search_with_ray(
                cfg, run_dir, workers, sync_bn, progress, take_over, resume=False, tracking=tracking
            )
        else:
            from .core.search import run_search as search_here

            _here(cfg, run_dir, progress, tracking, lambda hooks: search_here(cfg, run_dir, hooks, take_over))
        return open_search(run_dir)


def resume_search(
    run_dir: str | Path,
    *,
    workers: int | None = None,
    use_ray: bool = False,
    sync_bn: bool = True,
    progress: bool | TextIO = False,
    mlflow: str | None = None,
    mlflow_experiment: str = MLFLOW_EXPERIMENT,
    take_over: bool = False,
) -> SearchResult:
    """Continue an interrupted search from its last checkpoint, with the config it was saved with.
    A search that ran on N workers continues on N (`workers` defaults to the saved number); one
    logged to MLflow continues its MLflow run."""
    from .core.search import ProgressiveSearch
    from .core.search import resume_search as resume_here
    from .distributed.parallel_search import started_workers

    run_dir = Path(run_dir)
    search = ProgressiveSearch.open(run_dir)
    started = started_workers(run_dir)  # a data-parallel search killed before its first checkpoint
    saved = search.checkpoints.latest_path()
    ran = started or (search.checkpoints.load() if saved is not None else None)  # how it ran
    if workers is None:
        workers = int(ran.get("workers", 1)) if ran is not None else 1
    _check_workers(search.cfg, workers, ran, sync_bn, run_dir)
    use_ray = use_ray or started is not None  # it starts again on its workers, through Ray
    tracking = _tracking(mlflow or _saved_tracking_uri(run_dir), mlflow_experiment)
    with interrupts_name(run_dir):
        if workers > 1 or use_ray:
            _search_with_ray(
                search.cfg, run_dir, workers, sync_bn, progress, take_over, resume=True, tracking=tracking
            )
        else:
            _here(
                search.cfg, run_dir, progress, tracking, lambda hooks: resume_here(run_dir, hooks, take_over)
            )
        return open_search(run_dir)


def _check_workers(cfg: SearchConfig, workers: int, ran=None, sync_bn: bool = True, where=None) -> None:
    """The one check of a search's data-parallel workers, where they enter: at least one, the
    same as a resumed search `ran` on (its random streams are per rank), dividing the batch."""
    from .core.search import check_same_workers

    if workers < 1:
        raise UserError(f"workers: must be at least 1, got {workers}")
    if ran is not None:
        check_same_workers(ran, workers, sync_bn, where)
    if cfg.batch_size % workers:
        raise UserError(
            f"config: batch_size: must be divisible by the workers ({workers}), got {cfg.batch_size}"
        )


def _tracking(uri: str | None, experiment: str) -> dict | None:
    if uri is None:
        return None
    from .results.tracking import check_tracking_uri, mlflow_client

    mlflow_client(check_tracking_uri(uri, "mlflow"))  # installed and well formed, before anything runs
    return {"uri": uri, "experiment": experiment}


def _saved_tracking_uri(run_dir: Path) -> str | None:
    import json

    from .results.tracking import TRACKING_FILE

    saved = run_dir / TRACKING_FILE
    return json.loads(saved.read_text())["tracking_uri"] if saved.is_file() else None


def _here(cfg: SearchConfig, run_dir: Path, progress, tracking: dict | None, run):
    """A search in this process, with its progress lines and MLflow logging if asked for."""
    import contextlib

    from .core.hooks import AllHooks
    from .core.progress import SearchProgress

    shown = None
    if progress:
        shown = SearchProgress(cfg.cells, cfg.ops_kept, cfg.epochs, cfg.warmup_epochs, _stream(progress))
    tracker = None
    if tracking:
        from .results.tracking import MlflowSearch

        tracker = MlflowSearch(tracking["uri"], tracking["experiment"], run_dir)
    try:
        with tracker or contextlib.nullcontext():
            return run(AllHooks(shown, tracker))
    finally:
        if shown is not None:
            shown.close()


def _stream(progress):
    """`progress` is True (lines on stderr) or a stream to write them to."""
    return progress if hasattr(progress, "write") else sys.stderr


def _search_with_ray(
    cfg: SearchConfig,
    run_dir: Path,
    workers: int,
    sync_bn: bool,
    progress,
    take_over: bool,
    resume: bool,
    tracking: dict | None,
) -> dict:
    from .core.claim import claim_folder
    from .core.runtime import resolve_device
    from .core.search import ProgressiveSearch, check_out_dir, load_search_data
    from .distributed.parallel_search import pinned_threads, search_with_ray

    if resume:
        with claim_folder(run_dir, "pdarts-ray search --resume", take_over):
            return search_with_ray(cfg, run_dir, workers, sync_bn, progress=bool(progress), tracking=tracking)
    check_out_dir(run_dir)
    if workers == 1:
        resolve_device(cfg.device)  # with several workers, Ray's may see devices this process does not
    load_search_data(cfg)  # bad data fails here, before the run folder is written
    with claim_folder(run_dir, "pdarts-ray search", take_over):
        search = ProgressiveSearch.create(pinned_threads(cfg, workers), run_dir)
        return search_with_ray(
            search.cfg, run_dir, workers, sync_bn, progress=bool(progress), tracking=tracking
        )


def open_search(run_dir: str | Path) -> SearchResult:
    """The result of a finished search from its run folder."""
    from .core.config import from_dict
    from .core.run_folder import CONFIG_FILE, RESULT_FILE, read_json

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir}: not a search run folder (no {CONFIG_FILE})")
    if not (run_dir / RESULT_FILE).is_file():
        raise UserError(f"{run_dir}: the search has not finished (continue it with resume_search)")
    summary = read_json(run_dir / RESULT_FILE)
    config = from_dict(SearchConfig, read_json(run_dir / CONFIG_FILE), str(run_dir / CONFIG_FILE))
    try:
        genotype = Genotype.from_dict(summary["genotype"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{run_dir / RESULT_FILE}: no valid genotype ({str(err).splitlines()[0]})") from None
    return SearchResult(run_dir, genotype, config, summary)


def _default_folder(kind: str) -> Path:
    import time

    return Path(f"pdarts-runs/{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


# ---------------------------------------------------------------- evaluations


@dataclass(frozen=True)
class EvalResult:
    """A finished retraining: test accuracy, cost, and result.json (`summary`)."""

    run_dir: Path
    top1: float
    error_pct: float
    params: int
    summary: dict = field(repr=False)


def genotype_of(genotype: Genotype | SearchResult | Mapping | str | Path) -> tuple[str, Genotype]:
    """(a display name, the genotype) for a Genotype, a search result, a genotype dict, a
    published name (PDARTS, DARTS_V2, PC_DARTS, ...) or a genotype file or run folder."""
    from .evaluation.genotypes import load_genotype

    if isinstance(genotype, Genotype):
        return "genotype", genotype
    if isinstance(genotype, SearchResult):
        return str(genotype.run_dir), genotype.genotype
    if isinstance(genotype, Mapping):
        try:
            return "genotype", Genotype.from_dict(dict(genotype))
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"genotype: {str(err).splitlines()[0]}") from None
    return load_genotype(str(genotype))


def run_evaluation(
    genotype,
    config: EvalConfig | None = None,
    out: str | Path | None = None,
    *,
    progress: bool | TextIO = False,
) -> EvalResult:
    """Retrain `genotype` from scratch (see genotype_of for what it may be) into the new folder
    `out` and test it every epoch; with `config.workers` > 1 or `config.ray_train` through Ray Train."""
    from .core.runtime import resolve_device
    from .core.search import check_out_dir
    from .evaluation.data import check_data
    from .evaluation.retrain import EvalRun

    cfg = config or eval_config()
    name, genotype = genotype_of(genotype)
    run_dir = Path(out) if out is not None else _default_folder("eval")
    check_out_dir(run_dir)
    if not cfg.uses_ray:  # Ray workers may hold devices this process does not see
        resolve_device(cfg.device)
    data = check_data(cfg)  # bad data fails here, before the run folder is written
    return _train(EvalRun.create(cfg, genotype, run_dir, name), data, progress)


def resume_evaluation(run_dir: str | Path, *, progress: bool | TextIO = False) -> EvalResult:
    """Continue an interrupted retraining from its last checkpoint."""
    from .evaluation.retrain import EvalRun

    return _train(EvalRun.open(Path(run_dir)), None, progress)


def _train(run, data, progress) -> EvalResult:
    from .evaluation.retrain import EpochLines

    if run.cfg.uses_ray:
        from .distributed.retrain import train_with_ray

        result = train_with_ray(run, progress=bool(progress))
    else:
        hooks = EpochLines(run.cfg.epochs, _stream(progress)) if progress else None
        result = run.train(run.saved_state(), hooks, data=data)
    return EvalResult(run.run_dir, result["top1"], result["error_pct"], result["params"], result)


# ---------------------------------------------------------------- sweeps and the paper's experiments


SWEEP_FLAGS = {"preset", "num_samples", "concurrent", "gpus_per_trial", "workers_per_trial", "mlflow"}


def run_sweep(
    definition: Mapping | str | Path,
    *,
    storage: str | None = None,
    name: str | None = None,
    address: str | None = None,
    verbose: int = 0,
    **flags,
) -> SweepResult:
    """Run a sweep definition (a mapping, or a YAML/JSON file) on Ray Tune; every trial is one
    search and one row in the store. `flags`: preset, num_samples, concurrent, gpus_per_trial,
    workers_per_trial, mlflow (a tracking URI every trial is logged to), as the CLI's flags of
    the same names."""
    source = "sweep"
    if not isinstance(definition, Mapping):
        source, definition = str(definition), read_config_file(definition)
    definition = {**definition, "name": name} if name else definition
    return _sweeps({source: definition}, storage, address, verbose, flags)[0]


def sweep_experiment(
    experiment: str, preset: str = "paper", *, name: str | None = None, **options
) -> list[SweepResult]:
    """Run the sweeps of one of the paper's experiments (see `paper_experiments()`) at a preset
    (smoke, tiny, small, paper, or a search preset such as paper-c100), one SweepResult per
    sweep, named `name` (`<name>-<part>` for an experiment of several). `options`: storage,
    address, verbose and the flags of run_sweep but preset."""
    found = get_experiment(experiment)
    definitions = found.sweep_definitions(found.setup(preset), name)
    storage, address, verbose = (options.pop(k, None) for k in ("storage", "address", "verbose"))
    return _sweeps(definitions, storage, address, verbose or 0, options)


def _sweeps(definitions: dict, storage, address, verbose: int, flags: dict) -> list[SweepResult]:
    """Every definition checked (`flags` over it), then each run in turn."""
    from .distributed.definition import apply_flags, parse_sweep
    from .distributed.sweep import run_sweep as sweep_on_ray

    if unknown := set(flags) - SWEEP_FLAGS:
        raise UserError(f"run_sweep: unknown argument '{sorted(unknown)[0]}'")
    sweeps = [parse_sweep(apply_flags(dict(d), storage=storage, **flags), s) for s, d in definitions.items()]
    return [SweepResult.of(sweep_on_ray(sweep, address, verbose=verbose)) for sweep in sweeps]


def resume_sweep(
    name_or_path: str,
    *,
    storage: str | None = None,
    address: str | None = None,
    verbose: int = 0,
    take_over: bool = False,
) -> SweepResult:
    """Continue an interrupted sweep: unfinished trials from their last epoch checkpoints."""
    from .distributed.sweep import resume_sweep as resume_on_ray

    return SweepResult.of(resume_on_ray(name_or_path, storage, address, verbose=verbose, take_over=take_over))


def paper_experiments() -> dict[str, Experiment]:
    """The paper's experiments by name: each one's `doc` (the paper's context and the commands),
    `table` (the table it reproduces, if any), `sweeps` and `presets`."""
    return {name: get_experiment(name) for name in list_experiments()}


def reproduce(
    table: str,
    preset: str = "tiny",
    *,
    dataset: str | None = None,
    runs: int | None = None,
    repeats: int | None = None,
    storage: str | None = None,
    address: str | None = None,
    out: str | Path | None = None,
    run: bool = True,
    take_over: bool = False,
    verbose: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> ReproduceResult:
    """Compute one of the paper's tables (see `paper_experiments()`), starting only the searches and
    retrainings the store lacks (none with `run=False`), and write <table>.md/.csv/.png into
    `out` when given. `log` receives one line per batch of work started; `progress` shows the
    retrainings' epochs. `runs`: searches of table3, refine and approx's random op spaces;
    `repeats`: searches (seeds) per row of the other tables."""
    from .distributed.reproduce import reproduce as reproduce_on_ray

    setup = get_experiment(table).setup(preset, dataset, runs, repeats)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UserError(f"out: {out} exists and is not a folder")
    done = reproduce_on_ray(table, setup, storage, address, run, log, verbose, progress, take_over)
    return done.result(out)


# ---------------------------------------------------------------- the store


def read_trials(experiment: str, storage: str | None = None):
    """An experiment's trial rows (one per search) as a pyarrow Table; `experiment` is a name
    under `storage` (default $PDARTS_STORAGE, else ~/pdarts_results) or a path or URI."""
    from .results.store import locate
    from .results.store import read_trials as read

    return read(locate(experiment, storage))


def read_epochs(experiment: str, storage: str | None = None):
    """An experiment's per-epoch rows as a pyarrow Table, each (trial, stage, epoch) once."""
    from .results.store import locate
    from .results.store import read_epochs as read

    return read(locate(experiment, storage))
