"""The paper's diagnostic tables, computed from the results store beside the published numbers.

A table names the searches it needs (as resolved search configs) and, once those exist,
the retrainings (genotype + evaluation config). Both are found in the store by
deterministic keys, so a table starts only what the store still lacks, tables share
searches and retrainings, and a second run with a complete store starts nothing.

Searches run as sweeps (one Ray Tune experiment per batch of missing configs, named
`<experiment>.s-<hash>`); all of them belong to one family per (preset, dataset), the
experiment `reproduce-<preset>-<dataset>`, whose folder also holds the retrainings'
rows (`evaluations/`) and, for a local store, their run folders (`eval-runs/`). A batch
that was interrupted (some trials without a row, Ray Tune's state saved) is resumed, its
unfinished trials continuing from their last epoch, rather than started again.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import paper_numbers as paper
from .config import SEARCH_PRESETS, SearchConfig, apply_overrides, to_dict
from .errors import UserError

TABLES = ("table3", "depth", "approx", "dropout", "skip", "refine", "table1")
PRESETS = ("smoke", "tiny", "paper")
DATASETS = ("cifar10", "cifar100")
DEFAULT_RUNS = 3
# config keys that say where or how fast a run ran, not what it computed
SEARCH_RUNTIME_KEYS = ("data_root", "download", "device", "threads", "channels_last", "kernels")
EVAL_RUNTIME_KEYS = ("data_root", "download", "device", "threads", "channels_last", "loader_workers", "workers",
                     "ray_train", "max_failures")
NO_DROPOUT = [0.0, 0.0, 0.0]
DROPOUT = [0.0, 0.3, 0.6]  # section 4.4.3's rates for the dropout, skip and refine experiments
GIB = 2 ** 30
PAPER_NETWORK = "C = 36, 20 cells"


class ReproduceFailed(Exception):
    """A search or retraining that a table needs failed (exit code 1)."""


# ---------------------------------------------------------------- presets

@dataclass
class Setup:
    preset: str
    dataset: str  # the paper's dataset whose numbers are compared (cifar10 unless paper + cifar100)
    search_preset: str
    eval_preset: str
    runs: int
    base: dict  # the resolved search preset
    eval_config: dict  # the resolved evaluation preset

    @property
    def experiment(self) -> str:
        return f"reproduce-{self.preset}-{self.base['dataset']}"

    @property
    def comparable(self) -> bool:
        return self.preset == "paper"

    @property
    def seed(self) -> int:
        return self.base["seed"]

    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.runs)]


def resolve_setup(preset: str = "tiny", dataset: str | None = None, runs: int | None = None) -> Setup:
    """A preset names a search preset and an evaluation preset together."""
    from .config import resolve
    from .eval_config import EVAL_PRESETS, EvalConfig

    if preset not in PRESETS:
        raise UserError(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    if dataset is not None and dataset not in DATASETS:
        raise UserError(f"--dataset: must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if preset == "paper":
        dataset = dataset or "cifar10"
        search, evaluation = ("paper-c100", "eval-c100") if dataset == "cifar100" else ("paper-c10", "eval-c10")
    else:
        if dataset is not None:
            raise UserError(f"--dataset: applies to --preset paper (the {preset} preset searches and retrains on "
                            f"its own data)")
        dataset, search, evaluation = "cifar10", preset, f"eval-{preset}"
    if runs is None:
        runs = DEFAULT_RUNS
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise UserError(f"--runs: must be at least 1, got {runs}")
    base = to_dict(resolve(SearchConfig, SEARCH_PRESETS, search))
    eval_config = to_dict(resolve(EvalConfig, EVAL_PRESETS, evaluation))
    return Setup(preset, dataset, search, evaluation, runs, base, eval_config)


# ---------------------------------------------------------------- keys

def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def search_key(config: dict) -> str:
    """What a search computes: its resolved config without the keys that only say where it ran."""
    return _digest({k: v for k, v in config.items() if k not in SEARCH_RUNTIME_KEYS})[:16]


def canonical_genotype(genotype: dict | str) -> dict:
    from .space import Genotype

    data = json.loads(genotype) if isinstance(genotype, str) else genotype
    return Genotype.from_dict(data).to_dict()


def eval_key(genotype: dict, eval_config: dict) -> str:
    """A retraining: the genotype, the recipe and the seed."""
    recipe = {k: v for k, v in eval_config.items() if k not in EVAL_RUNTIME_KEYS}
    return "e-" + _digest({"genotype": canonical_genotype(genotype), "recipe": recipe, "seed": eval_config["seed"]})[:20]


@dataclass
class SearchNeed:
    overrides: dict  # keys over the search preset (seed always among them)
    config: dict = field(default_factory=dict)  # resolved

    @property
    def key(self) -> str:
        return search_key(self.config)

    def describe(self) -> str:
        return "search " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in self.overrides.items())


@dataclass
class EvalNeed:
    genotype: dict
    name: str


def _fmt_value(value) -> str:
    return "/".join(str(v) for v in value) if isinstance(value, list) else str(value)


def search_need(setup: Setup, **overrides) -> SearchNeed:
    overrides.setdefault("seed", setup.seed)
    values = apply_overrides(SearchConfig, setup.base, overrides, "reproduce")
    return SearchNeed(overrides, to_dict(SearchConfig(**values).validate()))


# ---------------------------------------------------------------- the store's view

def family_experiments(root: str, experiment: str) -> list[str]:
    """The sweeps of one reproduce family, by name."""
    import pyarrow.fs as pafs

    from .results import _filesystem

    fs, base = _filesystem(root)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return sorted(i.base_name for i in infos
                  if i.type == pafs.FileType.Directory and i.base_name.startswith(experiment + ".s-"))


def row_config(row: dict) -> dict:
    from .results import CONFIG_KEYS

    return {k: row[f"cfg_{k}"] for k in CONFIG_KEYS}


class StoreView:
    """Finished searches by config key and evaluations by key, read from the store."""

    def __init__(self, root: str, experiment: str):
        self.root, self.experiment = root, experiment
        self.refresh()

    def refresh(self) -> None:
        from .results import read_evaluations, read_trials

        self.searches: dict[str, dict] = {}
        self.failures: dict[str, str] = {}
        for name in family_experiments(self.root, self.experiment):
            rows = read_trials(self.root, name).to_pylist()
            # the earliest finished trial of a config is its answer, whatever ran later
            for row in sorted(rows, key=lambda r: (r["finished"] is None, r["finished"] or 0, r["trial_id"])):
                key = search_key(row_config(row))
                if row["status"] == "finished":
                    self.searches.setdefault(key, row)
                else:
                    self.failures[key] = row.get("failure") or "failed"
        self.evaluations = {r["eval_key"]: r for r in read_evaluations(self.root, self.experiment).to_pylist()}

    def search(self, need: SearchNeed) -> dict | None:
        return self.searches.get(need.key)

    def evaluation(self, genotype: dict | str | None, eval_config: dict) -> dict | None:
        if genotype is None:
            return None
        return self.evaluations.get(eval_key(canonical_genotype(genotype), eval_config))


# ---------------------------------------------------------------- tables

@dataclass
class Rendered:
    name: str
    title: str
    notes: list[str]
    columns: list[str]
    rows: list[list[str]]
    figure: dict  # plot_bars' groups, series, ylabel
    missing: list[str] = field(default_factory=list)


@dataclass
class TableSpec:
    name: str
    title: str
    command: str
    source: str
    searches: list[SearchNeed]
    evaluations: Callable[[StoreView], list[EvalNeed]]
    build: Callable[[StoreView], Rendered]


def _f(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _pub(p) -> str:
    """A published number as the paper prints it; empty where the paper has none."""
    return "" if p is None else p.text


def _pv(p) -> float | None:
    return None if p is None else float(p.value)


def _error(store: StoreView, setup: Setup, genotype) -> float | None:
    row = store.evaluation(genotype, setup.eval_config)
    return None if row is None else row["error_pct"]


def _notes(setup: Setup, extra: list[str]) -> list[str]:
    out = [f"preset {setup.preset}: search preset {setup.search_preset} ({setup.base['dataset']}), "
           f"retraining preset {setup.eval_preset}; experiment {setup.experiment}"]
    if not setup.comparable:
        out.append(f"The {setup.preset} preset shrinks the search and the retraining to run on a CPU "
                   f"({setup.base['dataset']} data, {setup.eval_config['layers']}-cell networks of "
                   f"C = {setup.eval_config['channels']}): its numbers are NOT comparable to the paper's.")
    elif setup.dataset == "cifar100":
        out.append("The paper's diagnostic experiments (section 4.4) were run on CIFAR-10; "
                   "its numbers are shown beside these CIFAR-100 ones for reference only.")
    return out + extra


def _genotype_of_m(row: dict | None, m: int) -> dict | None:
    if row is None or not row.get("genotypes_by_m"):
        return None
    return json.loads(row["genotypes_by_m"])[str(m)]


def _count_dataset(setup: Setup) -> str:
    return setup.base["dataset"] if setup.base["dataset"] in ("cifar10", "cifar100") else "cifar10"


def _params_m(setup: Setup, genotype) -> float | None:
    """Parameters (millions) of the paper's evaluation network built from `genotype`."""
    if genotype is None:
        return None
    from .counting import genotype_cost
    from .space import Genotype

    return genotype_cost(Genotype.from_dict(canonical_genotype(genotype)), _count_dataset(setup))["params"] / 1e6


def table3_config(setup: Setup) -> TableSpec:
    """Peak memory per search stage over `--runs` independent searches (seeds differ).

    Paper: Table 3 (section 4.4.2), GB at batch 96 on a 16 GB P100: 9.8/14.0/14.2,
    9.8/14.4/14.5, 9.8/14.2/14.3. Command: `pdarts-ray reproduce table3 --preset paper`.
    """
    needs = [search_need(setup, seed=s) for s in setup.seeds()]

    def build(store: StoreView) -> Rendered:
        rows_in = [store.search(n) for n in needs]
        stages = len(setup.base["cells"])
        kinds = {r["peak_memory_kind"] for r in rows_in if r}
        devices = sorted({r["device"] for r in rows_in if r and r["device"]})
        cuda = any(k and k.startswith("cuda") for k in kinds)
        columns = ["run", "seed"]
        for s in range(stages):
            columns += [f"stage {s + 1} paper", f"stage {s + 1} ours"]
        if cuda:
            columns += [f"stage {s + 1} ours reserved" for s in range(stages)]
        rows, series, our_series = [], {}, {}
        for i, (need, row) in enumerate(zip(needs, rows_in)):
            published = paper.TABLE3_MEMORY_GB[i] if i < len(paper.TABLE3_MEMORY_GB) else [None] * stages
            ours = [b / GIB if b is not None else None for b in (row["stage_peak_memory_bytes"] if row else [None] * stages)]
            cells = [str(i + 1), str(need.config["seed"])]
            for s in range(stages):
                cells += [_pub(published[s]) if s < len(published) else "", _f(ours[s])]
            if cuda:
                reserved = (row or {}).get("stage_peak_memory_reserved_bytes") or [None] * stages
                cells += [_f(b / GIB if b is not None else None) for b in reserved]
            rows.append(cells)
            if i < len(paper.TABLE3_MEMORY_GB):
                series[f"paper run {i + 1}"] = [_pv(p) for p in published]
            our_series[f"ours run {i + 1}"] = ours
        series.update(our_series)
        what = ("CUDA peak allocated (and reserved) per stage" if cuda else
                "peak resident memory of the search process per stage" if kinds == {"cpu_peak_rss"} else
                "peak memory per stage")
        extra = [f"Memory in GB (2^30 bytes): {what}, on {', '.join(devices) or 'no device yet'}, "
                 f"batch {setup.base['batch_size']}. Paper: GPU memory at batch 96 on a 16 GB P100."]
        return Rendered("table3", "Table 3: peak memory per search stage", _notes(setup, extra), columns, rows,
                        {"groups": [f"stage {s + 1}" for s in range(stages)], "series": series,
                         "ylabel": "peak memory (GB)"})

    return TableSpec("table3", "peak memory per search stage", "pdarts-ray reproduce table3 --preset paper",
                     "Table 3", needs, lambda store: [], build)


def depth_config(setup: Setup) -> TableSpec:
    """The cells derived after stage 1, 2 and 3 of one search, each retrained, beside DARTS V2.

    Paper: Figure 3 and section 4.4.1: 2.90 / 2.82 / 2.58 % test error, DARTS V2 2.83 %.
    Command: `pdarts-ray reproduce depth --preset paper`.
    """
    from .genotypes import DARTS_V2

    need = search_need(setup)
    darts = DARTS_V2.to_dict()

    def genotypes(store: StoreView) -> list[tuple[str, dict | None]]:
        row = store.search(need)
        stage_gs = [json.loads(g) for g in row["stage_genotypes"]] if row else [None] * len(setup.base["cells"])
        return [(f"stage {i + 1}", g) for i, g in enumerate(stage_gs)] + [("DARTS_V2", darts)]

    def evaluations(store: StoreView) -> list[EvalNeed]:
        return [EvalNeed(g, label) for label, g in genotypes(store) if g is not None]

    def build(store: StoreView) -> Rendered:
        rows, ours, published = [], [], []
        for i, (label, g) in enumerate(genotypes(store)):
            depth = str(setup.base["cells"][i]) if label != "DARTS_V2" else "8 (DARTS search)"
            p = paper.DEPTH_ERROR_PCT.get(label)
            err = _error(store, setup, g)
            skips = None if g is None else sum(op == "skip_connect" for op, _ in g["normal"])
            rows.append([label, depth, _f(skips), _pub(p), _f(err)])
            ours.append(err)
            published.append(_pv(p))
        extra = [f"Stage cells are refined to M = {setup.base['skip_connects']}, as the search writes them; "
                 f"every cell is retrained with {setup.eval_preset}."]
        return Rendered("depth", "Figure 3: cells of each search stage, retrained", _notes(setup, extra),
                        ["cell", "search cells", "skip-connects", "paper error (%)", "our error (%)"], rows,
                        {"groups": [r[0] for r in rows], "series": {"paper": published, "ours": ours},
                         "ylabel": "test error (%)"})

    return TableSpec("depth", "cells of each search stage", "pdarts-ray reproduce depth --preset paper",
                     "Figure 3, section 4.4.1", [need], evaluations, build)


def approx_config(setup: Setup) -> TableSpec:
    """The final stage searched on the approximated op space vs on random op spaces of the same size.

    The approximated space is the full search's (stages 1-2 choose stage 3's ops); each random
    one is a search of the final stage alone on an op space drawn per edge (`--runs` seeds),
    and the best retrained error of those counts. Paper: section 4.4.2, 2.58 vs 3.43 %.
    Command: `pdarts-ray reproduce approx --preset paper`.
    """
    main = search_need(setup)
    last = {k: setup.base[k][-1:] for k in ("cells", "ops_kept", "skip_dropout")}
    randoms = [search_need(setup, **last, seed=s) for s in setup.seeds()]

    def genotype(store: StoreView, need: SearchNeed) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = [(genotype(store, main), "approximated")]
        out += [(genotype(store, n), f"random seed {n.config['seed']}") for n in randoms]
        return [EvalNeed(g, name) for g, name in out if g is not None]

    def build(store: StoreView) -> Rendered:
        approx_err = _error(store, setup, genotype(store, main))
        random_errs = [_error(store, setup, genotype(store, n)) for n in randoms]
        best = None if any(e is None for e in random_errs) else min(random_errs)
        rows = [["approximated (stages 1-3)", str(setup.base["ops_kept"][-1]),
                 _pub(paper.APPROX_ERROR_PCT["approximated"]), _f(approx_err)],
                [f"random, best of {len(randoms)}", str(setup.base["ops_kept"][-1]),
                 _pub(paper.APPROX_ERROR_PCT["random (best of 3)"]), _f(best)]]
        rows += [[f"random, seed {n.config['seed']}", str(setup.base["ops_kept"][-1]), "", _f(e)]
                 for n, e in zip(randoms, random_errs)]
        extra = [f"Random: one search stage of {last['cells'][0]} cells on {last['ops_kept'][0]} ops per edge "
                 f"drawn at random (space seed = search seed), skip dropout {last['skip_dropout'][0]}; "
                 f"final cells at M = {setup.base['skip_connects']}; retrained with {setup.eval_preset}."]
        return Rendered("approx", "Section 4.4.2: approximated vs random op spaces", _notes(setup, extra),
                        ["op space", "ops per edge", "paper error (%)", "our error (%)"], rows,
                        {"groups": ["approximated", f"random (best of {len(randoms)})"],
                         "series": {"paper": [_pv(paper.APPROX_ERROR_PCT["approximated"]),
                                     _pv(paper.APPROX_ERROR_PCT["random (best of 3)"])],
                                    "ours": [approx_err, best]},
                         "ylabel": "test error (%)"})

    return TableSpec("approx", "approximated vs random op spaces", "pdarts-ray reproduce approx --preset paper",
                     "section 4.4.2", [main, *randoms], evaluations, build)


def _rates(values: list[float], stages: int) -> list[float]:
    """The paper's three-stage rates fitted to the preset's stage count."""
    return (values + [values[-1]] * stages)[:stages]


def dropout_config(setup: Setup) -> TableSpec:
    """Skip dropout 0.0/0.0/0.0 vs 0.0/0.3/0.6, each refined to M = 2, 3, 4 and retrained.

    Paper: section 4.4.3: 2.93/3.28/3.51 % without dropout, 2.69/2.84/2.97 % with, and 8 vs 4
    skip-connects in the normal cell before refinement. The dropout search is shared with `skip`.
    Command: `pdarts-ray reproduce dropout --preset paper`.
    """
    stages = len(setup.base["cells"])
    settings = [("0.0/0.0/0.0", search_need(setup, skip_dropout=_rates(NO_DROPOUT, stages))),
                ("0.0/0.3/0.6", search_need(setup, skip_dropout=_rates(DROPOUT, stages)))]
    ms = (2, 3, 4)

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = []
        for label, need in settings:
            for m in ms:
                g = _genotype_of_m(store.search(need), m)
                if g is not None:
                    out.append(EvalNeed(g, f"dropout {label}, M={m}"))
        return out

    def build(store: StoreView) -> Rendered:
        rows, series = [], {}
        for label, need in settings:
            row = store.search(need)
            skips = None if row is None else row["skip_connects_before_refinement"]
            errs = [_error(store, setup, _genotype_of_m(row, m)) for m in ms]
            for m, err in zip(ms, errs):
                rows.append([label, str(m), _pub(paper.DROPOUT_ERROR_PCT[label][m]), _f(err),
                             _pub(paper.DROPOUT_SKIPS_BEFORE[label]), _f(skips)])
            series[f"paper, dropout {label}"] = [_pv(paper.DROPOUT_ERROR_PCT[label][m]) for m in ms]
            series[f"ours, dropout {label}"] = errs
        extra = [f"Initial skip dropout per stage as listed; the other keys as {setup.search_preset}; "
                 f"retrained with {setup.eval_preset}."]
        return Rendered("dropout", "Section 4.4.3: skip dropout, refined to M = 2, 3, 4", _notes(setup, extra),
                        ["skip dropout", "M", "paper error (%)", "our error (%)",
                         "paper skip-connects before refinement", "our skip-connects before refinement"], rows,
                        {"groups": [f"M = {m}" for m in ms], "series": series, "ylabel": "test error (%)"})

    return TableSpec("dropout", "skip dropout vs none", "pdarts-ray reproduce dropout --preset paper",
                     "section 4.4.3", [n for _, n in settings], evaluations, build)


def skip_config(setup: Setup) -> TableSpec:
    """One search (skip dropout 0.0/0.3/0.6) refined to M = 0..4, each retrained.

    Paper: section 4.4.3: 2.78/2.68/2.69/2.84/2.97 % test error and 4.1/3.7/3.3/3.0/2.7 M
    parameters. Parameters are counted on the paper's evaluation network (C = 36, 20 cells).
    Command: `pdarts-ray reproduce skip --preset paper`.
    """
    need = search_need(setup, skip_dropout=_rates(DROPOUT, len(setup.base["cells"])))
    ms = (0, 1, 2, 3, 4)

    def evaluations(store: StoreView) -> list[EvalNeed]:
        row = store.search(need)
        return [EvalNeed(_genotype_of_m(row, m), f"M={m}") for m in ms if row is not None]

    def build(store: StoreView) -> Rendered:
        row = store.search(need)
        rows, errs = [], []
        for m in ms:
            g = _genotype_of_m(row, m)
            err = _error(store, setup, g)
            skips = None if g is None else sum(op == "skip_connect" for op, _ in g["normal"])
            params = _params_m(setup, g)
            rows.append([str(m), _f(skips), _pub(paper.SKIP_ERROR_PCT[m]), _f(err), _pub(paper.SKIP_PARAMS_M[m]),
                         _f(params)])
            errs.append(err)
        extra = [f"Parameters of the paper's evaluation network ({PAPER_NETWORK}, {_count_dataset(setup)}) "
                 f"built from each cell; errors from retraining with {setup.eval_preset}."]
        return Rendered("skip", "Section 4.4.3: skip-connects kept (M) after refinement", _notes(setup, extra),
                        ["M", "our skip-connects", "paper error (%)", "our error (%)", "paper params (M)",
                         "our params (M)"], rows,
                        {"groups": [f"M = {m}" for m in ms],
                         "series": {"paper": [_pv(paper.SKIP_ERROR_PCT[m]) for m in ms], "ours": errs},
                         "ylabel": "test error (%)"})

    return TableSpec("skip", "skip-connects kept", "pdarts-ray reproduce skip --preset paper", "section 4.4.3",
                     [need], evaluations, build)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def refine_config(setup: Setup) -> TableSpec:
    """`--runs` searches with skip dropout 0.0/0.3/0.6, retrained before refinement and at M = 2.

    "Before refinement" is the cell derived with no limit on skip-connects (M = 8).
    Paper: section 4.4.3: 2.79 +- 0.16 % before (2, 3 and 4 skip-connects), 2.65 +- 0.05 % after.
    Command: `pdarts-ray reproduce refine --preset paper`.
    """
    needs = [search_need(setup, skip_dropout=_rates(DROPOUT, len(setup.base["cells"])), seed=s)
             for s in setup.seeds()]
    phases = (("before", 8), ("after", 2))

    def evaluations(store: StoreView) -> list[EvalNeed]:
        out = []
        for need in needs:
            row = store.search(need)
            if row is not None:
                out += [EvalNeed(_genotype_of_m(row, m), f"seed {need.config['seed']}, {label}")
                        for label, m in phases]
        return out

    def build(store: StoreView) -> Rendered:
        errs = {label: [] for label, _ in phases}
        rows = []
        for i, need in enumerate(needs):
            row = store.search(need)
            cells = [f"run {i + 1} (seed {need.config['seed']})"]
            for label, m in phases:
                g = _genotype_of_m(row, m)
                err = _error(store, setup, g)
                errs[label].append(err)
                skips = None if g is None else sum(op == "skip_connect" for op, _ in g["normal"])
                published = paper.REFINE_SKIPS[label]
                cells += [_pub(published[i]) if i < len(published) else "", _f(skips), "", _f(err)]
            rows.append(cells)
        summary = ["mean ± std"]
        means = {}
        for label, _ in phases:
            mean, std = _mean_std(errs[label])
            means[label] = mean
            p_mean, p_std = paper.REFINE_ERROR_PCT[label]
            summary += ["", "", f"{p_mean.text} ± {p_std.text}",
                        "-" if mean is None else f"{mean:.2f} ± {std:.2f}"]
        rows.append(summary)
        extra = ["Before refinement: the cell derived with no limit on skip-connects (M = 8); after: M = 2. "
                 f"Standard deviation over the {len(needs)} searches (n - 1); retrained with {setup.eval_preset}."]
        return Rendered("refine", "Section 4.4.3: before and after architecture refinement", _notes(setup, extra),
                        ["search", "paper skip-connects before", "our skip-connects before", "paper error before (%)",
                         "our error before (%)", "paper skip-connects after", "our skip-connects after",
                         "paper error after (%)", "our error after (%)"], rows,
                        {"groups": ["before refinement", "after (M = 2)"],
                         "series": {"paper": [paper.REFINE_ERROR_PCT[label][0].value for label, _ in phases],
                                    "ours": [means[label] for label, _ in phases]},
                         "ylabel": "mean test error (%)"})

    return TableSpec("refine", "before and after refinement", "pdarts-ray reproduce refine --preset paper",
                     "section 4.4.3", needs, evaluations, build)


def table1_config(setup: Setup) -> TableSpec:
    """The P-DARTS row of Table 1 for the cell found by the preset's own search.

    Test error after retraining, parameters of the paper's evaluation network (C = 36,
    20 cells) and the search cost in days from the search's own stage timings.
    Paper: Table 1: CIFAR-10 2.50 %, 3.4 M, 0.3 GPU-days; CIFAR-100 15.92 %, 3.6 M, 0.3 GPU-days.
    Command: `pdarts-ray reproduce table1 --preset paper` (`--dataset cifar100` for the CIFAR-100 row).
    """
    need = search_need(setup)
    published = paper.TABLE1[setup.dataset]

    def genotype(store: StoreView) -> dict | None:
        row = store.search(need)
        return json.loads(row["genotype"]) if row else None

    def evaluations(store: StoreView) -> list[EvalNeed]:
        g = genotype(store)
        return [EvalNeed(g, "P-DARTS")] if g is not None else []

    def build(store: StoreView) -> Rendered:
        row = store.search(need)
        g = genotype(store)
        err = _error(store, setup, g)
        days = sum(row["stage_seconds"]) / 86400 if row and row["stage_seconds"] else None
        device = row["device"] if row else None
        unit = "GPU-days" if device and device.startswith("cuda") else "days"
        rows = [[f"P-DARTS ({setup.base['dataset']})", _pub(published["error_pct"]), _f(err),
                 _pub(published["params_m"]), _f(_params_m(setup, g)), _pub(published["search_gpu_days"]),
                 _f(days, 4)]]
        extra = [f"Our search cost: the search's stage seconds in {unit} on {device or 'no device yet'}; "
                 f"parameters of the paper's evaluation network ({PAPER_NETWORK}); error from retraining with "
                 f"{setup.eval_preset}. Paper row: {published['error_pct'].source}."]
        return Rendered("table1", "Table 1: P-DARTS", _notes(setup, extra),
                        ["architecture", "paper error (%)", "our error (%)", "paper params (M)", "our params (M)",
                         "paper search cost (GPU-days)", f"our search cost ({unit})"], rows,
                        {"groups": ["test error (%)"], "series": {"paper": [_pv(published["error_pct"])],
                                                                  "ours": [err]},
                         "ylabel": "test error (%)"})

    return TableSpec("table1", "the P-DARTS row of Table 1", "pdarts-ray reproduce table1 --preset paper",
                     "Table 1", [need], evaluations, build)


TABLE_CONFIGS: dict[str, Callable[[Setup], TableSpec]] = {
    "table3": table3_config, "depth": depth_config, "approx": approx_config, "dropout": dropout_config,
    "skip": skip_config, "refine": refine_config, "table1": table1_config,
}


def table_spec(table: str, setup: Setup) -> TableSpec:
    if table not in TABLE_CONFIGS:
        raise UserError(f"unknown table {table!r} (choose from {', '.join(TABLES)})")
    return TABLE_CONFIGS[table](setup)


# ---------------------------------------------------------------- starting what is missing

def _exists(root: str, name: str) -> bool:
    import pyarrow.fs as pafs

    from .results import _filesystem, experiment_path

    fs, base = _filesystem(experiment_path(root, name))
    return fs.get_file_info(base).type != pafs.FileType.NotFound


def sweep_search_keys(sweep: dict) -> set[str]:
    """The search keys a sweep of this family runs: its base config under each seed of its grid."""
    base = sweep["base_config"]
    seeds = sweep["sweep"]["space"].get("seed", {}).get("grid", [base["seed"]])
    return {search_key({**base, "seed": seed}) for seed in seeds}


def interrupted_sweeps(root: str, experiment: str, needs: list[SearchNeed]) -> dict[str, tuple[dict, list[SearchNeed]]]:
    """Family sweeps that stopped before every trial had a row but after Ray Tune saved its
    state, by name: each one's saved setup and the missing searches it would finish if resumed."""
    from .results import experiment_path, read_trials
    from .sweep import _experiment_state_missing, load_setup

    out, taken = {}, set()
    for name in family_experiments(root, experiment):
        path = experiment_path(root, name)
        try:
            sweep = load_setup(path)
        except UserError:  # stopped before it wrote its definition: nothing to continue
            continue
        keys = sweep_search_keys(sweep)
        covered = [n for n in needs if n.key in keys and n.key not in taken]
        if covered and read_trials(root, name).num_rows < len(keys) and not _experiment_state_missing(path):
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
        stem = f"{setup.experiment}.s-{_digest({'rest': rest, 'seeds': seeds})[:10]}"
        name, attempt = stem, 1
        while _exists(root, name):
            attempt += 1
            name = f"{stem}-{attempt}"
        # a local machine runs two searches side by side (each on one thread); a cluster all of them
        concurrent = min(len(seeds), max(1, min(2, os.cpu_count() or 1))) if local else len(seeds)
        definition = {"name": name, "storage": root, "base": {"preset": setup.search_preset, "config": rest},
                      "searcher": "grid", "max_concurrent_trials": concurrent, "gpus_per_trial": "auto",
                      "cpus_per_trial": 1}
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


def evaluate_genotype(eval_config: dict, genotype: dict, run_dir: str, name: str, progress: bool = False,
                      experiment: str | None = None) -> dict:
    """Retrain one genotype in this process, continuing an earlier attempt's run folder if there is one.
    With `experiment` (as a Ray task) it also sets the retraining's Ray gauges every epoch."""
    import sys

    from .config import from_dict
    from .eval_config import EvalConfig
    from .evaluate import RESULT_FILE, AllHooks, EpochLines, EvalRun, check_data
    from .runtime import resolve_device
    from .space import Genotype

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
    from .results import evaluation_row, write_evaluation

    genotype = canonical_genotype(need.genotype)
    key = eval_key(genotype, setup.eval_config)
    write_evaluation(root, setup.experiment, evaluation_row(setup.experiment, key, genotype, setup.eval_preset,
                                                            setup.eval_config, result, need.name))


def run_evaluations(needs: list[EvalNeed], setup: Setup, root: str, use_ray: bool, log,
                    progress: bool = False) -> list[str]:
    """Retrain every missing genotype and store its row; the failures' descriptions."""
    runs_dir = _eval_runs_dir(root, setup.experiment)
    failures = []
    if not use_ray:
        for i, need in enumerate(needs):
            key = eval_key(need.genotype, setup.eval_config)
            log(f"retraining {i + 1}/{len(needs)}: {need.name} ({setup.eval_preset}, {key})")
            try:
                result = evaluate_genotype(setup.eval_config, need.genotype, str(runs_dir / key), need.name,
                                           progress)
            except Exception as err:  # one failed retraining leaves the others to run
                failures.append(f"retraining {need.name}: {type(err).__name__}: {err}")
                continue
            _store_evaluation(root, setup, need, result)
            log(f"retrained {need.name}: error {result['error_pct']:.2f} %, {result['seconds']:.0f} s")
        return failures
    import ray

    gpu = setup.eval_config["device"] != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
    task = ray.remote(evaluate_genotype).options(num_cpus=max(1, setup.eval_config["threads"]),
                                                 num_gpus=1 if gpu else 0, max_retries=1)
    pending = {}
    for need in needs:
        key = eval_key(need.genotype, setup.eval_config)
        pending[task.remote(setup.eval_config, need.genotype, str(runs_dir / key), need.name,
                            experiment=setup.experiment)] = need
    log(f"retraining {len(needs)} cells as Ray tasks ({setup.eval_preset})")
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        need = pending.pop(done[0])
        try:
            result = ray.get(done[0])
        except Exception as err:
            failures.append(f"retraining {need.name}: {str(err).strip().splitlines()[-1][:300]}")
            continue
        _store_evaluation(root, setup, need, result)
        log(f"retrained {need.name}: error {result['error_pct']:.2f} %")
    return failures


@dataclass
class Outcome:
    rendered: Rendered
    experiment: str
    searches_started: int
    evaluations_started: int
    files: list[str] = field(default_factory=list)


def reproduce(table: str, setup: Setup, storage: str | None = None, address: str | None = None, run: bool = True,
              log=lambda line: None, verbose: int = 0, progress: bool = False) -> Outcome:
    """Start what the table lacks in the store (unless `run` is False), then compute it."""
    from .results import storage_root
    from .sweep import Sweep, connect_ray, parse_sweep, resume_sweep, run_sweep

    spec = table_spec(table, setup)
    root = storage_root(storage)
    store = StoreView(root, setup.experiment)
    missing = [n for n in spec.searches if store.search(n) is None]
    unique = list({n.key: n for n in missing}.values())
    started_ray, searches, evaluations = False, 0, 0
    try:
        if run and unique:
            # an interrupted batch continues where it stopped (its trials from their last epoch)
            resumable = interrupted_sweeps(root, setup.experiment, unique)
            resumed = {n.key for _, covered in resumable.values() for n in covered}
            fresh = [n for n in unique if n.key not in resumed]
            sweeps = [parse_sweep(d, "reproduce") for d in search_sweeps(fresh, setup, root, local=address is None)]
            started_ray = connect_ray(address, sweeps[0] if sweeps else
                                      Sweep(**next(iter(resumable.values()))[0]["sweep"]))
            for name, (_, covered) in resumable.items():
                log(f"continuing: {name} ({len(covered)} search{'es' if len(covered) > 1 else ''})")
                resume_sweep(name, root, verbose=verbose)
            for sweep in sweeps:
                log(f"searching: {sweep.name} ({sweep.num_samples * max(1, len(sweep.space.get('seed', {}).get('grid', [0])))}"
                    f" search{'es' if sweep.space else ''})")
                run_sweep(sweep, verbose=verbose)
            searches = len(unique)
            if started_ray and address is None:  # the retrainings run in this process: free the cores
                import ray

                ray.shutdown()
                started_ray = False
            store.refresh()
            failed = [n for n in unique if store.search(n) is None]
            if failed:
                raise ReproduceFailed("; ".join(f"{n.describe()} failed: {store.failures.get(n.key, 'no row stored')}"
                                                for n in failed))
        wanted = [e for e in spec.evaluations(store) if store.evaluation(e.genotype, setup.eval_config) is None]
        wanted = list({eval_key(e.genotype, setup.eval_config): e for e in wanted}.values())
        if run and wanted:
            use_ray = address is not None
            if use_ray and not started_ray:
                import ray

                if not ray.is_initialized():
                    ray.init(address=address)
                    started_ray = True
            failures = run_evaluations(wanted, setup, root, use_ray, log, progress)
            evaluations = len(wanted)
            store.refresh()
            if failures:
                raise ReproduceFailed("; ".join(failures))
    finally:
        if started_ray:
            import ray

            ray.shutdown()
    rendered = spec.build(store)
    if not run:
        still = [n for n in spec.searches if store.search(n) is None]
        rendered.missing = [n.describe() for n in {n.key: n for n in still}.values()]
        rendered.missing += [f"retraining {e.name} ({setup.eval_preset})" for e in spec.evaluations(store)
                             if store.evaluation(e.genotype, setup.eval_config) is None]
    return Outcome(rendered, setup.experiment, searches, evaluations)


# ---------------------------------------------------------------- output

def to_markdown(r: Rendered) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# {r.title}", ""] + [f"{n}  " for n in r.notes] + [""]
    lines.append("| " + " | ".join(cell(c) for c in r.columns) + " |")
    lines.append("|" + "---|" * len(r.columns))
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in r.rows]
    if r.missing:
        lines += ["", "Missing (not run): " + "; ".join(r.missing)]
    return "\n".join(lines) + "\n"


def to_csv(r: Rendered) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(r.columns)
    writer.writerows(r.rows)
    return buf.getvalue()


def rich_table(r: Rendered):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=r.title, caption="\n".join(r.notes), caption_justify="left")
    for c in r.columns:
        table.add_column(c, overflow="fold")
    for row in r.rows:
        table.add_row(*[Text(c) for c in row])
    return table


def write_outputs(r: Rendered, out: Path) -> list[str]:
    """`<table>.md`, `<table>.csv` and the figure (`<table>.png`, `<table>.svg`) in `out`."""
    from .plots import plot_bars

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for suffix, text in (("md", to_markdown(r)), ("csv", to_csv(r))):
        path = out / f"{r.name}.{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        files.append(str(path))
    note = r.notes[1] if len(r.notes) > 1 else None
    figures = plot_bars(r.title, r.figure["groups"], r.figure["series"], r.figure["ylabel"], out / r.name, note=note)
    return files + [str(p) for p in figures]


def default_out(table: str, setup: Setup) -> Path:
    suffix = f"-{setup.dataset}" if setup.preset == "paper" and setup.dataset != "cifar10" else ""
    return Path("pdarts-reproduce") / f"{table}-{setup.preset}{suffix}"
