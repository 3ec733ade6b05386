"""What the paper's tables share: the reproduce presets, the keys that find a search or a
retraining in the store, the store's view of a reproduce family, and the table record.

A table names the searches it needs (as resolved search configs) and, once those exist,
the retrainings (genotype + evaluation config). Both are found in the store by
deterministic keys, so a table starts only what the store still lacks, tables share
searches and retrainings, and a second run with a complete store starts nothing.
Every search and retraining of one (preset, dataset) belongs to the family experiment
`reproduce-<preset>-<dataset>`; the searches are its sweeps `<family>.s-<hash>`.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from ...core.config import SEARCH_PRESETS, SearchConfig, apply_overrides, identity, to_dict
from ...core.errors import UserError
from ...core.space import skip_count as skip_count  # the tables count skip-connects through here
from .effects import Effect, error_resolution

PRESETS = ("smoke", "tiny", "small", "paper", "study")
PAPER_PRESETS = PRESETS[:4]  # what the paper's tables run at; `study` is the skip-connect study's
# a preset's search and retraining presets where they are not `<preset>` and `eval-<preset>`
PRESET_PAIRS = {"study": ("skip-study", "eval-small")}
DATASETS = ("cifar10", "cifar100")
# what a laptop preset may search and retrain on instead of its own data (`--dataset`)
LAPTOP_DATASETS = ("mnist5k",)
CIFAR_TEST_IMAGES = 10_000
CIFAR_TRAIN_IMAGES = 50_000
DEFAULT_RUNS = 3
# Searches per row of the tables the paper ran once (depth, skip, dropout, table1 and approx's
# approximated row): one, as the paper, except where a preset is sized to tell an effect
# from the spread between seeds.
DEFAULT_REPEATS = {"small": 3, "study": 6}
# config keys that say where or how fast a run ran, not what it computed
SEARCH_RUNTIME_KEYS = ("data_root", "download", "device", "threads", "channels_last", "kernels")
EVAL_RUNTIME_KEYS = (
    "data_root",
    "download",
    "device",
    "threads",
    "channels_last",
    "loader_workers",
    "workers",
    "ray_train",
    "max_failures",
)
NO_DROPOUT = [0.0, 0.0, 0.0]
DROPOUT = [0.0, 0.3, 0.6]  # section 4.4.3's rates for the dropout, skip and refine experiments
GIB = 2**30
PAPER_NETWORK = "C = 36, 20 cells"


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
    repeats: int = 1
    search_overrides: dict = field(default_factory=dict)  # keys every search sets over the preset

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

    def repeat_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.repeats)]

    def label(self, seed: int, text: str) -> str:
        """A retraining's name, with its search's seed where a row has several."""
        return text if self.repeats == 1 else f"seed {seed}, {text}"


def resolve_setup(
    preset: str = "tiny", dataset: str | None = None, runs: int | None = None, repeats: int | None = None
) -> Setup:
    """A preset names a search preset and an evaluation preset together."""
    from ...core.config import resolve
    from ...evaluation.config import EVAL_PRESETS, EvalConfig

    if preset not in PRESETS:
        raise UserError(f"--preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    if dataset is not None and dataset not in DATASETS + LAPTOP_DATASETS:
        raise UserError(f"--dataset: must be one of {', '.join(DATASETS + LAPTOP_DATASETS)}, got {dataset!r}")
    data_overrides = {}
    if preset == "paper":
        if dataset in LAPTOP_DATASETS:
            raise UserError(f"--dataset: {dataset} is for the laptop presets, not --preset paper")
        dataset = dataset or "cifar10"
        search, evaluation = (
            ("paper-c100", "eval-c100") if dataset == "cifar100" else ("paper-c10", "eval-c10")
        )
    else:
        if dataset in DATASETS:
            raise UserError(
                f"--dataset: {dataset} applies to --preset paper (the {preset} preset searches and "
                f"retrains on its own data, or on {', '.join(LAPTOP_DATASETS)})"
            )
        if dataset is not None:
            data_overrides = {"dataset": dataset}
        dataset = "cifar10"
        search, evaluation = PRESET_PAIRS.get(preset, (preset, f"eval-{preset}"))
    if runs is None:
        runs = DEFAULT_RUNS
    if repeats is None:
        repeats = DEFAULT_REPEATS.get(preset, 1)
    for flag, value in (("--runs", runs), ("--repeats", repeats)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"{flag}: must be at least 1, got {value}")
    base = to_dict(resolve(SearchConfig, SEARCH_PRESETS, search))
    eval_config = to_dict(resolve(EvalConfig, EVAL_PRESETS, evaluation))
    base.update(data_overrides)
    eval_config.update(data_overrides)
    return Setup(preset, dataset, search, evaluation, runs, base, eval_config, repeats, data_overrides)


# ---------------------------------------------------------------- keys


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def search_key(config: dict) -> str:
    """What a search computes: its resolved config without the keys that only say where it ran."""
    return digest({k: v for k, v in identity(config).items() if k not in SEARCH_RUNTIME_KEYS})[:16]


def canonical_genotype(genotype: dict | str) -> dict:
    from ...core.space import Genotype

    data = json.loads(genotype) if isinstance(genotype, str) else genotype
    return Genotype.from_dict(data).to_dict()


def eval_key(genotype: dict, eval_config: dict) -> str:
    """A retraining: the genotype, the recipe and the seed."""
    recipe = {k: v for k, v in eval_config.items() if k not in EVAL_RUNTIME_KEYS}
    return (
        "e-"
        + digest({"genotype": canonical_genotype(genotype), "recipe": recipe, "seed": eval_config["seed"]})[
            :20
        ]
    )


@dataclass
class SearchNeed:
    overrides: dict  # keys over the search preset (seed always among them)
    config: dict = field(default_factory=dict)  # resolved

    @property
    def key(self) -> str:
        return search_key(self.config)

    def describe(self) -> str:
        return "search " + ", ".join(f"{k}={fmt_value(v)}" for k, v in self.overrides.items())


@dataclass
class EvalNeed:
    genotype: dict
    name: str


def fmt_value(value) -> str:
    return "/".join(str(v) for v in value) if isinstance(value, list) else str(value)


def search_need(setup: Setup, **overrides) -> SearchNeed:
    overrides = {**setup.search_overrides, **overrides}
    overrides.setdefault("seed", setup.seed)
    values = apply_overrides(SearchConfig, setup.base, overrides, "reproduce")
    return SearchNeed(overrides, to_dict(SearchConfig(**values).validate()))


# ---------------------------------------------------------------- the store's view


def family_experiments(root: str, experiment: str) -> list[str]:
    """The sweeps of one reproduce family, by name."""
    import pyarrow.fs as pafs

    from ..files import filesystem

    fs, base = filesystem(root)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return sorted(
        i.base_name
        for i in infos
        if i.type == pafs.FileType.Directory and i.base_name.startswith(experiment + ".s-")
    )


def row_config(row: dict) -> dict:
    from ..store import CONFIG_KEYS

    return {k: row[f"cfg_{k}"] for k in CONFIG_KEYS}


class StoreView:
    """Finished searches by config key and evaluations by key, read from the store."""

    def __init__(self, root: str, experiment: str):
        self.root, self.experiment = root, experiment
        self.refresh()

    def refresh(self) -> None:
        from ..evaluations import read_evaluations
        from ..store import read_trials

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
        self.evaluations = {
            r["eval_key"]: r for r in read_evaluations(self.root, self.experiment).to_pylist()
        }

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
    effects: list[Effect] = field(default_factory=list)
    # a second figure, a quantity over the epochs: curve_pictures' groups, labels and stage_starts
    curves: dict | None = None


@dataclass
class TableSpec:
    name: str
    title: str
    command: str
    source: str
    searches: list[SearchNeed]
    evaluations: Callable[[StoreView], list[EvalNeed]]
    build: Callable[[StoreView], Rendered]


def fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def published_text(p) -> str:
    """A published number as the paper prints it; empty where the paper has none."""
    return "" if p is None else p.text


def published_value(p) -> float | None:
    return None if p is None else float(p.value)


def error_pct(store: StoreView, setup: Setup, genotype) -> float | None:
    row = store.evaluation(genotype, setup.eval_config)
    return None if row is None else row["error_pct"]


def notes(setup: Setup, extra: list[str]) -> list[str]:
    out = [
        f"preset {setup.preset}: search preset {setup.search_preset} ({setup.base['dataset']}), "
        f"retraining preset {setup.eval_preset}; experiment {setup.experiment}"
    ]
    if not setup.comparable:
        out.append(
            f"The {setup.preset} preset shrinks the search and the retraining to run on a CPU "
            f"({setup.base['dataset']} data, {setup.eval_config['layers']}-cell networks of "
            f"C = {setup.eval_config['channels']}): its numbers are NOT comparable to the paper's."
        )
    elif setup.dataset == "cifar100":
        out.append(
            "The paper's diagnostic experiments (section 4.4) were run on CIFAR-10; "
            "its numbers are shown beside these CIFAR-100 ones for reference only."
        )
    return out + extra


def genotype_of_m(row: dict | None, m: int) -> dict | None:
    if row is None or not row.get("genotypes_by_m"):
        return None
    return json.loads(row["genotypes_by_m"])[str(m)]


def count_dataset(setup: Setup) -> str:
    return setup.base["dataset"] if setup.base["dataset"] in ("cifar10", "cifar100") else "cifar10"


def test_images(eval_config: dict) -> int | None:
    """Images in the test split a retraining is scored on; None for a folder of the user's."""
    from ...core import mnist5k
    from ...core.bundled import digits_test_images, synthetic_test_images

    dataset = eval_config["dataset"]
    if dataset == "digits" and not eval_config.get("data_root"):
        return digits_test_images()
    if dataset == "mnist5k" and not eval_config.get("data_root"):
        return mnist5k.test_images()
    if dataset == "synthetic" and not eval_config.get("data_root"):
        return synthetic_test_images(eval_config["synthetic_size"], eval_config["synthetic_classes"])
    return CIFAR_TEST_IMAGES if dataset in DATASETS else None


def resolution(setup: Setup, errors: list[float | None]) -> float | None:
    """The smallest error difference the setup's test split resolves at `errors` (None: unknown)."""
    return error_resolution(test_images(setup.eval_config), errors)


def train_images(config: dict) -> int | None:
    """Images in the training split a search (or retraining) config reads; None for a folder
    of the user's."""
    from ...core import mnist5k
    from ...core.bundled import DIGITS_IMAGES, digits_test_images

    dataset = config["dataset"]
    if config.get("data_root") and dataset not in DATASETS:
        return None
    if dataset == "digits":
        return DIGITS_IMAGES - digits_test_images()
    if dataset == "mnist5k":
        return mnist5k.train_images()
    if dataset == "synthetic":
        return config["synthetic_size"]
    return CIFAR_TRAIN_IMAGES if dataset in DATASETS else None


def split_note(setup: Setup, errors: list[float | None]) -> list[str]:
    """What the test split resolves, at the errors a table measured."""
    n = test_images(setup.eval_config)
    if n is None:
        return [
            "The test split's size is not known here (a dataset of the user's): no error effect is "
            "judged against it."
        ]
    known = [e for e in errors if e is not None]
    resolution = error_resolution(n, known) if known else None
    at = (
        ""
        if resolution is None
        else f"; at the mean error measured ({statistics.fmean(known):.2f} %) it resolves differences "
        f"of {resolution:.2f} % (one binomial standard error)"
    )
    return [
        f"Errors are measured on a test split of {n} images (one image = {100 / n:.2f} %){at}. An error "
        "effect the paper gives as smaller than that is not resolvable here."
    ]


def params_m(setup: Setup, genotype) -> float | None:
    """Parameters (millions) of the paper's evaluation network built from `genotype`."""
    if genotype is None:
        return None
    from ...core.space import Genotype
    from ...evaluation.counting import genotype_cost

    return (
        genotype_cost(Genotype.from_dict(canonical_genotype(genotype)), count_dataset(setup))["params"] / 1e6
    )


def rates(values: list[float], stages: int) -> list[float]:
    """The paper's three-stage rates fitted to the preset's stage count."""
    return (values + [values[-1]] * stages)[:stages]


def spread(values: list[float | None], digits: int = 2) -> str:
    """One seed's value as it is; several as mean ± standard deviation (n - 1); - while any is missing."""
    if len(values) == 1:
        return fmt(values[0], digits)
    mean, std = mean_std(values)
    return "-" if mean is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def seeds_note(setup: Setup) -> list[str]:
    """The note a table whose rows span several seeds carries; none for one seed."""
    if setup.repeats == 1:
        return []
    return [
        f"Searches with seeds {', '.join(map(str, setup.repeat_seeds()))}: mean ± standard deviation (n - 1)."
    ]


def per_seed(values: list[float | None], digits: int = 2) -> str:
    return " / ".join(fmt(v, digits) for v in values)


def mean_or_none(values: list[float | None]) -> float | None:
    return mean_std(values)[0]


def deep_inputs(genotype: dict | None) -> int | None:
    """Genes of the normal cell that read an intermediate node rather than a cell input."""
    return None if genotype is None else sum(node >= 2 for _, node in genotype["normal"])


def genes_changed(a: dict | None, b: dict | None) -> int | None:
    """Genes of the normal cell (of 8) that differ between two cells, each node's pair unordered."""
    if a is None or b is None:
        return None
    changed = 0
    for i in range(0, len(a["normal"]), 2):
        left = [tuple(g) for g in a["normal"][i : i + 2]]
        for gene in (tuple(g) for g in b["normal"][i : i + 2]):
            if gene in left:
                left.remove(gene)
            else:
                changed += 1
    return changed


def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
    if not values or any(v is None for v in values):
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
