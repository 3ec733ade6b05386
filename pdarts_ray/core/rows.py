"""The rows a search produces, each defined once: the epoch row (a line of `metrics.jsonl`, a
row of the results store's epochs table, a report to Ray Tune, a step of MLflow metrics)
and the trial row (a row of the store's trials table).

A column has a name, a kind and a meaning. Kinds are "int", "float", "str", "bool",
"timestamp" and "list[int]", "list[float]", "list[str]"; a value of any column may be
null. The store's Parquet schemas and the column tables of docs/results.md are derived
from these.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import SearchConfig

CONFIG_PREFIX = "cfg_"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    meaning: str = ""


class Row:
    """Columns in order; `make` builds a row with exactly these keys, in this order."""

    def __init__(self, *columns: Column):
        self.columns = columns
        self.names = tuple(c.name for c in columns)

    def __iter__(self):
        return iter(self.columns)

    def __getitem__(self, name: str) -> Column:
        return self.columns[self.names.index(name)]

    def make(self, **values) -> dict:
        if set(values) != set(self.names):
            extra, missing = set(values) - set(self.names), set(self.names) - set(values)
            raise ValueError(f"row: unknown {sorted(extra)}, missing {sorted(missing)}")
        return {name: values[name] for name in self.names}


EPOCH_ROW = Row(
    Column("stage", "int", "search stage, from 1"),
    Column("epoch", "int", "epoch within the stage, from 0"),
    Column("global_epoch", "int", "epoch counted across the stages, from 0"),
    Column("train_loss", "float", "mean training loss of the epoch"),
    Column("train_acc", "float", "training accuracy of the epoch (fraction)"),
    Column("valid_acc", "float", "accuracy on the valid half (null where the epoch was not validated)"),
    Column("valid_loss", "float", "mean loss on the valid half (null where not validated)"),
    Column("skip_dropout", "float", "the skip-dropout rate of the epoch"),
    Column("lr", "float", "the weights' learning rate of the epoch"),
    Column("skip_connects_now", "int", "skip-connects in the normal cell the alphas derive after the epoch"),
    Column(
        "skip_weight_now",
        "float",
        "mean softmax weight of skip_connect on the normal cell's edges that hold it, after the epoch",
    ),
    Column("epoch_seconds", "float", "seconds the epoch took"),
    Column("peak_memory_bytes", "int", "peak memory of the stage so far, bytes"),
)


def _config_kind(annotation: str) -> str:
    return annotation.replace(" ", "").removesuffix("|None")


CONFIG_COLUMNS = tuple(
    Column(
        f"{CONFIG_PREFIX}{f.name}",
        _config_kind(f.type),
        "the resolved search config, one column per key of the Configuration table",
    )
    for f in dataclasses.fields(SearchConfig)
)

TRIAL_ROW = Row(
    Column("experiment", "str", "the experiment's name"),
    Column("trial_id", "str", "the trial's id within the experiment"),
    Column("status", "str", "`finished` or `failed`"),
    Column("failure", "str", "why a failed trial failed (null when finished)"),
    Column("seed", "int", "the search seed (also in `cfg_seed`)"),
    *CONFIG_COLUMNS,
    Column("stage_peak_memory_bytes", "list[int]", "peak memory per stage, as in `result.json`"),
    Column("stage_peak_memory_reserved_bytes", "list[int]", "reserved peak memory per stage (CUDA)"),
    Column("peak_memory_kind", "str", "what the peak measures (`cuda_max_allocated`, `cpu_peak_rss`)"),
    Column("stage_seconds", "list[float]", "search seconds per stage"),
    Column("stage_skip_connects_before_refinement", "list[int]", "per stage"),
    Column("stage_genotypes", "list[str]", "per stage, the genotype (JSON) at the configured M"),
    Column("genotype", "str", "the final genotype (JSON) at the configured M"),
    Column("genotypes_by_m", "str", 'JSON `{"0": G, ..., "8": G}`: the final genotype for every M'),
    Column("skip_connects_before_refinement", "int", "skip-connects of the final normal cell, unrefined"),
    Column("skip_connects_after_refinement", "int", "skip-connects of the normal cell in `genotype`"),
    Column("best_valid_acc", "float", "the best valid accuracy over all epochs"),
    Column("final_valid_acc", "float", "the valid accuracy of the last validated epoch"),
    Column("device", "str", "where it ran"),
    Column("threads", "int", "CPU threads of the search"),
    Column("workers", "int", "data-parallel workers (null in rows stored before the column existed)"),
    Column("version_pdarts_ray", "str", "the pdarts-ray version that ran the search"),
    Column("version_torch", "str", "the PyTorch version"),
    Column("version_python", "str", "the Python version"),
    Column("version_pyarrow", "str", "the pyarrow version that wrote the row"),
    Column("started", "timestamp", "when the search started"),
    Column("finished", "timestamp", "when it finished or failed"),
)
