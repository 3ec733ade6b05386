"""The results store: one Parquet row per finished or failed search trial, plus per-epoch metrics.

Layout under a storage root (a local folder or a URI that pyarrow understands):

    <storage>/<experiment>/trials/<trial_id>.parquet          one row, written once
    <storage>/<experiment>/epochs/<trial_id>-<ns>-<rand>.parquet   per-epoch rows, one part per write

Every file is written under a hidden temporary name and then moved into place, so a
reader sees whole files or nothing; readers skip hidden names and take the union. Ray
Tune keeps its own files next to `trials/` and `epochs/`; those are never read here.
Both tables have a fixed schema (config columns come from SearchConfig's fields), so
files of different trials and different writers always concatenate.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import platform
import re
import sys
import time
import uuid

import pyarrow as pa
import pyarrow.fs as pafs

from ..core.config import SearchConfig
from ..core.errors import UserError
from ..core.rows import CONFIG_PREFIX, EPOCH_ROW, TRIAL_ROW, Row
from ..core.space import skip_count
from ..core.version import VERSION as __version__
from .files import (
    SAFE_NAME,
    TIMESTAMP,
    check_name,
    experiment_folder,
    experiment_path,
    filesystem,
    listing,
    put_file,
    read_all,
    read_or_skip,
    rows_to_table,
    storage_root,
    to_json,
    to_parquet_bytes,
    utc_time,
)

TRIALS_DIR, EPOCHS_DIR = "trials", "epochs"
STATUSES = ("finished", "failed")
MAX_M = 8


# ---------------------------------------------------------------- schemas

_SCALARS = {
    "int": pa.int64(),
    "float": pa.float64(),
    "str": pa.string(),
    "bool": pa.bool_(),
    "timestamp": TIMESTAMP,
}


def arrow_type(kind: str) -> pa.DataType:
    """The Parquet column type of a row column's kind (core/rows.py)."""
    if kind.startswith("list["):
        return pa.list_(_SCALARS[kind[5:-1]])
    return _SCALARS[kind]


def schema_of(row: Row) -> pa.Schema:
    return pa.schema([(c.name, arrow_type(c.kind)) for c in row])


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(SearchConfig))
STORE_KEYS = (TRIAL_ROW["experiment"], TRIAL_ROW["trial_id"])  # what the store adds to an epoch row
TRIAL_SCHEMA = schema_of(TRIAL_ROW)
EPOCH_SCHEMA = schema_of(Row(*STORE_KEYS, *EPOCH_ROW))


def column_table(row: Row) -> str:
    """A row's columns as the Markdown table docs/results.md shows; the config's as one line."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    configs = [c for c in row if c.name.startswith(CONFIG_PREFIX)]
    examples = ", ".join(f"`{c.name}`: {_type_text(c.kind)}" for c in configs if c.name in CONFIG_EXAMPLES)
    for c in row:
        if configs and c is configs[0]:
            lines.append(f"| `{CONFIG_PREFIX}<key>` | per key | {c.meaning} ({examples}, ...) |")
        elif c not in configs:
            lines.append(f"| `{c.name}` | {_type_text(c.kind)} | {c.meaning} |")
    return "\n".join(lines) + "\n"


CONFIG_EXAMPLES = ("cfg_cells", "cfg_skip_dropout")


def _type_text(kind: str) -> str:
    return str(arrow_type(kind)).replace("item: ", "")


def trial_row(
    experiment: str,
    trial_id: str,
    status: str,
    config: dict,
    result: dict | None = None,
    genotypes: dict | None = None,
    failure: str | None = None,
    started: float | None = None,
    finished: float | None = None,
    workers: int | None = None,
) -> dict:
    """One trial as a flat row of TRIAL_SCHEMA. `config` is a resolved SearchConfig (to_dict),
    `result` the search's result.json, `genotypes` its genotypes.json."""
    check_name(experiment, "experiment name")
    check_name(trial_id, "trial id")
    if status not in STATUSES:
        raise UserError(f"trial {trial_id}: status must be one of {', '.join(STATUSES)}, got {status!r}")
    if status == "finished" and result is None:
        raise UserError(f"trial {trial_id}: a finished trial needs its result")
    unknown = set(config) - set(CONFIG_KEYS)
    if unknown:
        raise UserError(f"trial {trial_id}: unknown config keys {', '.join(sorted(unknown))}")
    result = result or {}
    genotypes = genotypes or {}
    stages = sorted((k for k in genotypes if re.fullmatch(r"stage\d+", k)), key=lambda k: int(k[5:]))
    final = result.get("genotype")
    versions = result.get("versions") or {}
    torch = sys.modules.get("torch")  # a failed trial has no result.json; name what ran it if known
    row = {
        "experiment": experiment,
        "trial_id": trial_id,
        "status": status,
        "failure": failure,
        "seed": config.get("seed"),
        **{f"{CONFIG_PREFIX}{k}": config.get(k) for k in CONFIG_KEYS},
        "stage_peak_memory_bytes": result.get("peak_memory_bytes"),
        "stage_peak_memory_reserved_bytes": result.get("peak_memory_reserved_bytes"),
        "peak_memory_kind": result.get("peak_memory_kind"),
        "stage_seconds": result.get("stage_seconds"),
        "stage_skip_connects_before_refinement": result.get("stage_skip_connects_before_refinement"),
        "stage_genotypes": [to_json(genotypes[k]) for k in stages] if stages else None,
        "genotype": to_json(final),
        "genotypes_by_m": to_json(genotypes.get("final_by_M")),
        "skip_connects_before_refinement": result.get("skip_connects_before_refinement"),
        "skip_connects_after_refinement": skip_count(final),
        "best_valid_acc": result.get("best_valid_acc"),
        "final_valid_acc": result.get("final_valid_acc"),
        "device": result.get("device"),
        "threads": result.get("threads"),
        "workers": result.get("workers", workers),
        "version_pdarts_ray": versions.get("pdarts_ray", __version__),
        "version_torch": versions.get("torch", getattr(torch, "__version__", None)),
        "version_python": versions.get("python", platform.python_version()),
        "version_pyarrow": pa.__version__,
        "started": utc_time(started),
        "finished": utc_time(finished),
    }
    return TRIAL_ROW.make(**row)


def _trial_file(storage: str, experiment: str, trial_id: str) -> tuple[pafs.FileSystem, str]:
    check_name(trial_id, "trial id")
    fs, base = filesystem(experiment_path(storage, experiment))
    return fs, f"{base}/{TRIALS_DIR}/{trial_id}.parquet"


def write_trial(storage: str, experiment: str, row: dict) -> bool:
    """Store a trial's row once: False (and nothing written) if the trial already has one."""
    if row.get("experiment") != experiment:
        raise UserError(f"trial row: experiment {row.get('experiment')!r} is not {experiment!r}")
    fs, path = _trial_file(storage, experiment, row.get("trial_id"))
    data = to_parquet_bytes(rows_to_table([row], TRIAL_SCHEMA, f"trial {row['trial_id']}"), "trials")
    return put_file(fs, path, data, exclusive=True)


def has_trial(storage: str, experiment: str, trial_id: str) -> bool:
    fs, path = _trial_file(storage, experiment, trial_id)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_trials(source: str, experiment: str | None = None, skip_unreadable: bool = False) -> pa.Table:
    """Every trial row of an experiment (`source` a storage root and `experiment` its name, or
    `source` the experiment's folder), ordered by trial id."""
    _, table = read_all(source, experiment, TRIALS_DIR, "trials", TRIAL_SCHEMA, skip_unreadable)
    return table.sort_by("trial_id") if table.num_rows else table


# ---------------------------------------------------------------- epochs


def write_epochs(storage: str, experiment: str, trial_id: str, rows: list[dict]) -> None:
    """Add metrics.jsonl rows of a trial as a new part file. Keys outside EPOCH_SCHEMA (what a
    reporter adds around the metrics) are dropped; later parts win over earlier ones."""
    check_name(trial_id, "trial id")
    if not rows:
        return
    keep = set(EPOCH_SCHEMA.names)
    clean = []
    for r in rows:
        if r.get("stage") is None or r.get("epoch") is None:
            raise UserError(f"trial {trial_id}: an epoch row needs stage and epoch")
        clean.append(
            {**{k: v for k, v in r.items() if k in keep}, "experiment": experiment, "trial_id": trial_id}
        )
    fs, base = filesystem(experiment_path(storage, experiment))
    # time first, so that a name sort is write order; the random tail keeps names unique
    name = f"{trial_id}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    data = to_parquet_bytes(rows_to_table(clean, EPOCH_SCHEMA, f"trial {trial_id} epochs"), "epochs")
    put_file(fs, f"{base}/{EPOCHS_DIR}/{name}", data, exclusive=True)


def _part_order(name: str) -> str:
    return name.rsplit("-", 2)[-2] if name.count("-") >= 2 else ""


def read_epochs(source: str, experiment: str | None = None, skip_unreadable: bool = False) -> pa.Table:
    """Every epoch row once per (trial_id, stage, epoch): a restarted trial reports some epochs
    again, and the last written part wins. Ordered by trial, stage, epoch."""
    folder = experiment_folder(source, experiment)
    fs, base = filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise UserError(f"{folder}: no such experiment")
    infos = [i for i in listing(fs, f"{base}/{EPOCHS_DIR}") if i.base_name.endswith(".parquet")]
    infos.sort(key=lambda i: (_part_order(i.base_name), i.base_name))
    latest: dict[tuple, dict] = {}
    for info in infos:
        table = read_or_skip(fs, info.path, "epochs", EPOCH_SCHEMA, skip_unreadable)
        for row in table.to_pylist() if table is not None else []:
            latest[(row["trial_id"], row["stage"], row["epoch"])] = row
    rows = [latest[k] for k in sorted(latest)]
    return pa.Table.from_pylist(rows, schema=EPOCH_SCHEMA)


# ---------------------------------------------------------------- experiments


def list_experiments(storage: str) -> list[dict]:
    """Experiments under a storage root: name, path, trials, finished, failed, last_change (ISO UTC)."""
    root = storage_root(storage)
    fs, base = filesystem(root)
    out = []
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not SAFE_NAME.match(info.base_name):
            continue
        subs = {
            i.base_name
            for i in fs.get_file_info(pafs.FileSelector(info.path))
            if i.type == pafs.FileType.Directory
        }
        if not subs & {TRIALS_DIR, EPOCHS_DIR}:
            continue  # some other folder (Ray Tune's own experiment without our tables, say)
        folder = experiment_path(root, info.base_name)
        trial_infos, trials = read_all(folder, None, TRIALS_DIR, "trials", TRIAL_SCHEMA, skip_unreadable=True)
        epoch_infos = listing(fs, f"{info.path}/{EPOCHS_DIR}")
        status = trials.column("status").to_pylist()
        mtimes = [i.mtime for i in trial_infos + epoch_infos if i.mtime is not None]
        out.append(
            {
                "name": info.base_name,
                "path": folder,
                "trials": len(status),
                "finished": status.count("finished"),
                "failed": status.count("failed"),
                "last_change": max(mtimes).astimezone(dt.UTC).isoformat(timespec="seconds")
                if mtimes
                else None,
            }
        )
    return sorted(out, key=lambda e: e["name"])


def locate(name_or_path: str, storage: str | None = None) -> str:
    """An experiment folder from a name (in the storage root) or a path/URI."""
    if "://" in name_or_path or os.sep in name_or_path or "/" in name_or_path or name_or_path.startswith("~"):
        return experiment_folder(name_or_path, None)
    return experiment_path(storage_root(storage), name_or_path)


# ---------------------------------------------------------------- M expansion


def expand_m(trials: pa.Table | list[dict], ms: list[int] | None = None) -> list[dict]:
    """One row per (trial, M) from each trial's stored genotypes for every M: the trial's
    columns with `M`, that M's `genotype` (JSON) and `skip_connects_after_refinement`.
    Trials without stored genotypes (failed ones) give no rows."""
    rows = trials.to_pylist() if isinstance(trials, pa.Table) else list(trials)
    for m in ms or []:
        if not 0 <= m <= MAX_M:
            raise UserError(f"M must be in 0..{MAX_M}, got {m}")
    out = []
    for row in rows:
        if not row.get("genotypes_by_m"):
            continue
        by_m = json.loads(row["genotypes_by_m"])
        for m in ms if ms is not None else sorted(int(k) for k in by_m):
            if str(m) not in by_m:
                raise UserError(f"trial {row['trial_id']}: no genotype stored for M = {m}")
            genotype = by_m[str(m)]
            base = {k: v for k, v in row.items() if k != "genotypes_by_m"}
            out.append(
                {
                    **base,
                    "M": m,
                    "genotype": to_json(genotype),
                    "skip_connects_after_refinement": skip_count(genotype),
                }
            )
    return out
