"""The rows' one definition (core/rows.py) and what is derived from it: the store's Parquet
schemas, which stay those of format 1, and the run folder's file names, which stored runs have."""

import dataclasses

import pyarrow as pa
import pytest

from pdarts_ray.core.config import SearchConfig
from pdarts_ray.core.rows import EPOCH_ROW, TRIAL_ROW
from pdarts_ray.results.files import FORMAT_VERSION
from pdarts_ray.results.store import EPOCH_SCHEMA, TRIAL_SCHEMA, arrow_type

INT, FLOAT, STR = pa.int64(), pa.float64(), pa.string()
UTC = pa.timestamp("us", tz="UTC")

EPOCH_COLUMNS = [
    ("experiment", STR),
    ("trial_id", STR),
    ("stage", INT),
    ("epoch", INT),
    ("global_epoch", INT),
    ("train_loss", FLOAT),
    ("train_acc", FLOAT),
    ("valid_acc", FLOAT),
    ("valid_loss", FLOAT),
    ("skip_dropout", FLOAT),
    ("lr", FLOAT),
    ("skip_connects_now", INT),
    ("skip_weight_now", FLOAT),  # since 0.2.0: rows written before read it as null
    ("epoch_seconds", FLOAT),
    ("peak_memory_bytes", INT),
]
TRIAL_HEAD = [("experiment", STR), ("trial_id", STR), ("status", STR), ("failure", STR), ("seed", INT)]
TRIAL_TAIL = [
    ("stage_peak_memory_bytes", pa.list_(INT)),
    ("stage_peak_memory_reserved_bytes", pa.list_(INT)),
    ("peak_memory_kind", STR),
    ("stage_seconds", pa.list_(FLOAT)),
    ("stage_skip_connects_before_refinement", pa.list_(INT)),
    ("stage_genotypes", pa.list_(STR)),
    ("genotype", STR),
    ("genotypes_by_m", STR),
    ("skip_connects_before_refinement", INT),
    ("skip_connects_after_refinement", INT),
    ("best_valid_acc", FLOAT),
    ("final_valid_acc", FLOAT),
    ("device", STR),
    ("threads", INT),
    ("workers", INT),
    ("version_pdarts_ray", STR),
    ("version_torch", STR),
    ("version_python", STR),
    ("version_pyarrow", STR),
    ("started", UTC),
    ("finished", UTC),
]
# the config columns format 1 has; a config key added later adds its column (older rows read null)
CONFIG_COLUMNS = {
    "cfg_dataset": STR,
    "cfg_data_root": STR,
    "cfg_download": pa.bool_(),
    "cfg_image_size": INT,
    "cfg_synthetic_size": INT,
    "cfg_synthetic_classes": INT,
    "cfg_cells": pa.list_(INT),
    "cfg_ops_kept": pa.list_(INT),
    "cfg_space_seed": INT,
    "cfg_skip_dropout": pa.list_(FLOAT),
    "cfg_skip_connects": INT,
    "cfg_epochs": INT,
    "cfg_warmup_epochs": INT,
    "cfg_batch_size": INT,
    "cfg_channels": INT,
    "cfg_seed": INT,
    "cfg_device": STR,
    "cfg_threads": INT,
    "cfg_lr": FLOAT,
    "cfg_lr_min": FLOAT,
    "cfg_lr_step_offset": INT,
    "cfg_momentum": FLOAT,
    "cfg_weight_decay": FLOAT,
    "cfg_arch_lr": FLOAT,
    "cfg_arch_weight_decay": FLOAT,
    "cfg_arch_beta1": FLOAT,
    "cfg_arch_beta2": FLOAT,
    "cfg_grad_clip": FLOAT,
    "cfg_train_portion": FLOAT,
    "cfg_valid_every": INT,
    "cfg_valid_last_epochs": INT,
    "cfg_channels_last": STR,
    "cfg_kernels": STR,
    "cfg_dtype": STR,
    "cfg_compile": pa.bool_(),
}


def test_the_store_format_is_still_1():
    assert FORMAT_VERSION == "1"


def test_the_epoch_schema_is_format_1s():
    assert [(f.name, f.type) for f in EPOCH_SCHEMA] == EPOCH_COLUMNS


def test_the_trial_schema_is_format_1s():
    fields = [(f.name, f.type) for f in TRIAL_SCHEMA]
    head, tail = fields[: len(TRIAL_HEAD)], fields[len(fields) - len(TRIAL_TAIL) :]
    assert head == TRIAL_HEAD and tail == TRIAL_TAIL
    config = fields[len(TRIAL_HEAD) : len(fields) - len(TRIAL_TAIL)]
    assert [name for name, _ in config] == [f"cfg_{f.name}" for f in dataclasses.fields(SearchConfig)]
    assert {name: kind for name, kind in config if name in CONFIG_COLUMNS} == CONFIG_COLUMNS


def test_a_row_is_made_with_exactly_its_columns_in_order():
    values = {name: 0 for name in reversed(EPOCH_ROW.names)}
    assert list(EPOCH_ROW.make(**values)) == list(EPOCH_ROW.names)
    with pytest.raises(ValueError, match="missing"):
        EPOCH_ROW.make(**{k: v for k, v in values.items() if k != "lr"})
    with pytest.raises(ValueError, match="unknown"):
        EPOCH_ROW.make(**values, surprise=1)


def test_every_kind_has_a_parquet_type():
    assert {c.kind for c in TRIAL_ROW} | {c.kind for c in EPOCH_ROW} <= {
        "int",
        "float",
        "str",
        "bool",
        "timestamp",
        "list[int]",
        "list[float]",
        "list[str]",
    }
    assert arrow_type("list[float]") == pa.list_(FLOAT)


def test_the_run_folder_names_are_those_of_stored_runs():
    from pdarts_ray.core import run_folder as rf

    assert (
        rf.CONFIG_FILE,
        rf.METRICS_FILE,
        rf.TRAJECTORY_FILE,
        rf.ALPHAS_FILE,
        rf.GENOTYPES_FILE,
        rf.GENOTYPE_FILE,
        rf.RESULT_FILE,
        rf.WEIGHTS_FILE,
        rf.CHECKPOINT_DIR,
    ) == (
        "config.json",
        "metrics.jsonl",
        "alpha_trajectory.jsonl",
        "alphas.json",
        "genotypes.json",
        "genotype.json",
        "result.json",
        "weights.pt",
        "checkpoints",
    )


def test_skip_count_reads_a_genotype_or_its_json():
    from pdarts_ray.core.space import skip_count
    from pdarts_ray.evaluation.genotypes import PDARTS

    assert skip_count(PDARTS) == skip_count(PDARTS.to_dict()) == PDARTS.skip_count() == 2
    assert skip_count(None) is None


def test_epoch_rows_stored_before_the_skip_weight_read_it_as_null():
    from helpers.paths import ROOT

    from pdarts_ray.results import read_epochs

    store = ROOT / "benchmarks" / "results" / "store"
    rows = read_epochs(str(store), "reproduce-small-digits.s-0e3f292aac").to_pylist()
    assert rows and all(r["skip_weight_now"] is None and r["skip_connects_now"] is not None for r in rows)
