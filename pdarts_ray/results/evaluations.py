"""The evaluations table: one row per finished retraining of a genotype, keyed by
`eval_key`, a hash of (genotype, the evaluation config's recipe keys, seed), so the same
retraining is stored once however many tables ask for it.

    <storage>/<experiment>/evaluations/<eval_key>.parquet
"""

from __future__ import annotations

import platform
import time

import pyarrow as pa
import pyarrow.fs as pafs

from ..core.errors import UserError
from ..core.version import VERSION as __version__
from .files import (
    TIMESTAMP,
    check_name,
    experiment_folder,
    experiment_path,
    filesystem,
    put_file,
    read_all,
    rows_to_table,
    to_json,
    to_parquet_bytes,
    utc_time,
)

EVALUATIONS_DIR = "evaluations"
EVAL_SCHEMA = pa.schema(
    [
        ("experiment", pa.string()),
        ("eval_key", pa.string()),
        ("genotype", pa.string()),
        ("genotype_name", pa.string()),
        ("eval_preset", pa.string()),
        ("eval_config", pa.string()),
        ("seed", pa.int64()),
        ("top1", pa.float64()),
        ("top5", pa.float64()),
        ("error_pct", pa.float64()),
        ("test_loss", pa.float64()),
        ("params", pa.int64()),
        ("params_with_aux", pa.int64()),
        ("macs", pa.int64()),
        ("seconds", pa.float64()),
        ("epochs", pa.int64()),
        ("workers", pa.int64()),
        ("device", pa.string()),
        ("threads", pa.int64()),
        ("version_pdarts_ray", pa.string()),
        ("version_torch", pa.string()),
        ("version_python", pa.string()),
        ("version_pyarrow", pa.string()),
        ("finished", TIMESTAMP),
    ]
)


def evaluation_row(
    experiment: str,
    eval_key: str,
    genotype: dict,
    eval_preset: str,
    eval_config: dict,
    result: dict,
    genotype_name: str = "",
    finished: float | None = None,
) -> dict:
    """One finished retraining as a flat row of EVAL_SCHEMA; `result` is the run's result.json."""
    check_name(experiment, "experiment name")
    check_name(eval_key, "evaluation key")
    versions = result.get("versions") or {}
    return {
        "experiment": experiment,
        "eval_key": eval_key,
        "genotype": to_json(genotype),
        "genotype_name": genotype_name,
        "eval_preset": eval_preset,
        "eval_config": to_json(eval_config),
        "seed": eval_config.get("seed"),
        **{
            k: result.get(k)
            for k in (
                "top1",
                "top5",
                "error_pct",
                "test_loss",
                "params",
                "params_with_aux",
                "macs",
                "seconds",
                "epochs",
                "workers",
                "device",
                "threads",
            )
        },
        "version_pdarts_ray": versions.get("pdarts_ray", __version__),
        "version_torch": versions.get("torch"),
        "version_python": versions.get("python", platform.python_version()),
        "version_pyarrow": pa.__version__,
        "finished": utc_time(finished if finished is not None else time.time()),
    }


def write_evaluation(storage: str, experiment: str, row: dict) -> bool:
    """Store an evaluation's row once: False (and nothing written) if its key already has one."""
    if row.get("experiment") != experiment:
        raise UserError(f"evaluation row: experiment {row.get('experiment')!r} is not {experiment!r}")
    check_name(row.get("eval_key"), "evaluation key")
    fs, base = filesystem(experiment_path(storage, experiment))
    data = to_parquet_bytes(rows_to_table([row], EVAL_SCHEMA, f"evaluation {row['eval_key']}"), "evaluations")
    return put_file(fs, f"{base}/{EVALUATIONS_DIR}/{row['eval_key']}.parquet", data, exclusive=True)


def read_evaluations(source: str, experiment: str | None = None, skip_unreadable: bool = False) -> pa.Table:
    """Every evaluation row of an experiment folder (none if it has none yet), ordered by key."""
    folder = experiment_folder(source, experiment)
    fs, base = filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return EVAL_SCHEMA.empty_table()
    _, table = read_all(source, experiment, EVALUATIONS_DIR, "evaluations", EVAL_SCHEMA, skip_unreadable)
    return table.sort_by("eval_key") if table.num_rows else table
