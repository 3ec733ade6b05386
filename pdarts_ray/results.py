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
import pyarrow.parquet as pq

from . import __version__
from .checkpoint import read_jsonl
from .config import SearchConfig
from .errors import UserError

DEFAULT_STORAGE = "~/pdarts_results"
STORAGE_ENV = "PDARTS_STORAGE"
FORMAT_VERSION = "1"
_TABLE_KEY = b"pdarts_ray.table"
_FORMAT_KEY = b"pdarts_ray.format"
TRIALS_DIR, EPOCHS_DIR = "trials", "epochs"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,199}$")
STATUSES = ("finished", "failed")
MAX_M = 8


# ---------------------------------------------------------------- schemas

def _arrow_type(annotation: str) -> pa.DataType:
    ann = annotation.replace(" ", "").removesuffix("|None")
    scalar = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "bool": pa.bool_()}
    if ann.startswith("list["):
        return pa.list_(scalar[ann[5:-1]])
    return scalar[ann]


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(SearchConfig))
_TIME = pa.timestamp("us", tz="UTC")

TRIAL_SCHEMA = pa.schema(
    [("experiment", pa.string()), ("trial_id", pa.string()), ("status", pa.string()), ("failure", pa.string()),
     ("seed", pa.int64())]
    + [(f"cfg_{f.name}", _arrow_type(f.type)) for f in dataclasses.fields(SearchConfig)]
    + [("stage_peak_memory_bytes", pa.list_(pa.int64())),
       ("stage_peak_memory_reserved_bytes", pa.list_(pa.int64())),
       ("peak_memory_kind", pa.string()),
       ("stage_seconds", pa.list_(pa.float64())),
       ("stage_skip_connects_before_refinement", pa.list_(pa.int64())),
       ("stage_genotypes", pa.list_(pa.string())),
       ("genotype", pa.string()),
       ("genotypes_by_m", pa.string()),
       ("skip_connects_before_refinement", pa.int64()),
       ("skip_connects_after_refinement", pa.int64()),
       ("best_valid_acc", pa.float64()),
       ("final_valid_acc", pa.float64()),
       ("device", pa.string()),
       ("threads", pa.int64()),
       ("version_pdarts_ray", pa.string()),
       ("version_torch", pa.string()),
       ("version_python", pa.string()),
       ("version_pyarrow", pa.string()),
       ("started", _TIME),
       ("finished", _TIME)])

EPOCH_SCHEMA = pa.schema([
    ("experiment", pa.string()), ("trial_id", pa.string()),
    ("stage", pa.int64()), ("epoch", pa.int64()), ("global_epoch", pa.int64()),
    ("train_loss", pa.float64()), ("train_acc", pa.float64()),
    ("valid_acc", pa.float64()), ("valid_loss", pa.float64()),
    ("skip_dropout", pa.float64()), ("lr", pa.float64()), ("skip_connects_now", pa.int64()),
    ("epoch_seconds", pa.float64()), ("peak_memory_bytes", pa.int64()),
])


# ---------------------------------------------------------------- storage

def storage_root(storage: str | None = None) -> str:
    """The storage root: `storage`, else $PDARTS_STORAGE, else ~/pdarts_results."""
    source = "storage"
    if not storage:
        storage, source = os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE, STORAGE_ENV
    if "://" in storage:
        return storage
    path = os.path.expanduser(storage)
    if not os.path.isabs(path):
        raise UserError(f"{source}: {storage!r} is a relative path; give an absolute path or a URI "
                        "(every worker of a sweep must find the same folder)")
    return os.path.normpath(path)


def experiment_path(storage: str, experiment: str) -> str:
    _check_name(experiment, "experiment name")
    root = storage_root(storage)
    return f"{root.rstrip('/')}/{experiment}" if "://" in root else os.path.join(root, experiment)


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _SAFE_NAME.match(name):
        raise UserError(f"{what} {name!r}: use letters, digits and _ . = + - (not starting with . or -), "
                        "at most 200 characters")


def _filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in path:
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise UserError(f"{path}: unusable storage URI ({str(err).splitlines()[0]})") from None


def _listing(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """Plain files of a folder, hidden (temporary) names excluded; none if it is missing."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted((i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")),
                  key=lambda i: i.base_name)


def _to_bytes(table: pa.Table, kind: str) -> bytes:
    meta = {_TABLE_KEY: kind.encode(), _FORMAT_KEY: FORMAT_VERSION.encode()}
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    return sink.getvalue().to_pybytes()


def _put(fs: pafs.FileSystem, path: str, data: bytes, exclusive: bool) -> bool:
    """Write under a hidden name, then move into place. `exclusive`: never replace an existing
    file; False if there is one."""
    local = isinstance(fs, pafs.LocalFileSystem)
    folder, name = os.path.split(path) if local else path.rsplit("/", 1)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    fs.create_dir(folder, recursive=True)
    if not local:  # object stores: a new object appears whole; checking first is the best there is
        if exclusive and fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        with fs.open_output_stream(tmp) as out:
            out.write(data)
        fs.move(tmp, path)
        return True
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            # a hard link fails atomically if the target exists: two writers cannot both win
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links
            if os.path.exists(path):
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_file(fs: pafs.FileSystem, path: str, kind: str, schema: pa.Schema) -> pa.Table:
    """One of our files, checked and conformed to the current schema."""
    try:
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: not a readable Parquet file, possibly half-written "
                        f"({str(err).splitlines()[0][:120]})") from None
    meta = table.schema.metadata or {}
    if meta.get(_TABLE_KEY) != kind.encode():
        raise UserError(f"{path}: not a pdarts-ray {kind} file (foreign Parquet file in the results store)")
    if meta.get(_FORMAT_KEY) != FORMAT_VERSION.encode():
        raise UserError(f"{path}: results format {meta.get(_FORMAT_KEY, b'?').decode()}, "
                        f"this version reads format {FORMAT_VERSION}")
    columns = []
    for field in schema:
        if field.name not in table.column_names:
            # written before this column existed (e.g. a config key added later)
            columns.append(pa.nulls(table.num_rows, field.type))
            continue
        column = table.column(field.name)
        if column.type != field.type:
            raise UserError(f"{path}: column {field.name} has type {column.type}, expected {field.type}")
        columns.append(column)
    unknown = set(table.column_names) - set(schema.names)
    if unknown:
        raise UserError(f"{path}: unknown columns {', '.join(sorted(unknown))} (written by a newer pdarts-ray?)")
    return pa.Table.from_arrays(columns, schema=schema)


def _experiment_folder(source: str, experiment: str | None) -> str:
    if experiment is not None:
        return experiment_path(source, experiment)
    if "://" in source:
        return source.rstrip("/")
    return os.path.abspath(os.path.expanduser(source))


def _read_all(source: str, experiment: str | None, sub: str, kind: str, schema: pa.Schema):
    folder = _experiment_folder(source, experiment)
    fs, base = _filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise UserError(f"{folder}: no such experiment")
    infos = _listing(fs, f"{base}/{sub}")
    tables = [_read_file(fs, i.path, kind, schema) for i in infos if i.base_name.endswith(".parquet")]
    return infos, (pa.concat_tables(tables) if tables else schema.empty_table())


# ---------------------------------------------------------------- trials

def _json(obj) -> str | None:
    return None if obj is None else json.dumps(obj, separators=(",", ":"))


def _time(t: float | None):
    return None if t is None else dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)


def skip_count(genotype: dict | None) -> int | None:
    """Skip-connects in a genotype's normal cell (the number M limits)."""
    if genotype is None:
        return None
    return sum(gene[0] == "skip_connect" for gene in genotype["normal"])


def trial_row(experiment: str, trial_id: str, status: str, config: dict, result: dict | None = None,
              genotypes: dict | None = None, failure: str | None = None,
              started: float | None = None, finished: float | None = None) -> dict:
    """One trial as a flat row of TRIAL_SCHEMA. `config` is a resolved SearchConfig (to_dict),
    `result` the search's result.json, `genotypes` its genotypes.json."""
    _check_name(experiment, "experiment name")
    _check_name(trial_id, "trial id")
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
        "experiment": experiment, "trial_id": trial_id, "status": status, "failure": failure,
        "seed": config.get("seed"),
        **{f"cfg_{k}": config.get(k) for k in CONFIG_KEYS},
        "stage_peak_memory_bytes": result.get("peak_memory_bytes"),
        "stage_peak_memory_reserved_bytes": result.get("peak_memory_reserved_bytes"),
        "peak_memory_kind": result.get("peak_memory_kind"),
        "stage_seconds": result.get("stage_seconds"),
        "stage_skip_connects_before_refinement": result.get("stage_skip_connects_before_refinement"),
        "stage_genotypes": [_json(genotypes[k]) for k in stages] if stages else None,
        "genotype": _json(final),
        "genotypes_by_m": _json(genotypes.get("final_by_M")),
        "skip_connects_before_refinement": result.get("skip_connects_before_refinement"),
        "skip_connects_after_refinement": skip_count(final),
        "best_valid_acc": result.get("best_valid_acc"),
        "final_valid_acc": result.get("final_valid_acc"),
        "device": result.get("device"),
        "threads": result.get("threads"),
        "version_pdarts_ray": versions.get("pdarts_ray", __version__),
        "version_torch": versions.get("torch", getattr(torch, "__version__", None)),
        "version_python": versions.get("python", platform.python_version()),
        "version_pyarrow": pa.__version__,
        "started": _time(started),
        "finished": _time(finished),
    }
    return row


def _trial_file(storage: str, experiment: str, trial_id: str) -> tuple[pafs.FileSystem, str]:
    _check_name(trial_id, "trial id")
    fs, base = _filesystem(experiment_path(storage, experiment))
    return fs, f"{base}/{TRIALS_DIR}/{trial_id}.parquet"


def _table(rows: list[dict], schema: pa.Schema, what: str) -> pa.Table:
    for row in rows:
        unknown = set(row) - set(schema.names)
        if unknown:
            raise UserError(f"{what}: unknown columns {', '.join(sorted(unknown))}")
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise UserError(f"{what}: {str(err).splitlines()[0]}") from None


def write_trial(storage: str, experiment: str, row: dict) -> bool:
    """Store a trial's row once: False (and nothing written) if the trial already has one."""
    if row.get("experiment") != experiment:
        raise UserError(f"trial row: experiment {row.get('experiment')!r} is not {experiment!r}")
    fs, path = _trial_file(storage, experiment, row.get("trial_id"))
    data = _to_bytes(_table([row], TRIAL_SCHEMA, f"trial {row['trial_id']}"), "trials")
    return _put(fs, path, data, exclusive=True)


def has_trial(storage: str, experiment: str, trial_id: str) -> bool:
    fs, path = _trial_file(storage, experiment, trial_id)
    return fs.get_file_info(path).type == pafs.FileType.File


def read_trials(source: str, experiment: str | None = None) -> pa.Table:
    """Every trial row of an experiment (`source` a storage root and `experiment` its name, or
    `source` the experiment's folder), ordered by trial id."""
    _, table = _read_all(source, experiment, TRIALS_DIR, "trials", TRIAL_SCHEMA)
    return table.sort_by("trial_id") if table.num_rows else table


# ---------------------------------------------------------------- epochs

def write_epochs(storage: str, experiment: str, trial_id: str, rows: list[dict]) -> None:
    """Add metrics.jsonl rows of a trial as a new part file. Keys outside EPOCH_SCHEMA (what a
    reporter adds around the metrics) are dropped; later parts win over earlier ones."""
    _check_name(trial_id, "trial id")
    if not rows:
        return
    keep = set(EPOCH_SCHEMA.names)
    clean = []
    for r in rows:
        if r.get("stage") is None or r.get("epoch") is None:
            raise UserError(f"trial {trial_id}: an epoch row needs stage and epoch")
        clean.append({**{k: v for k, v in r.items() if k in keep}, "experiment": experiment, "trial_id": trial_id})
    fs, base = _filesystem(experiment_path(storage, experiment))
    # time first, so that a name sort is write order; the random tail keeps names unique
    name = f"{trial_id}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    data = _to_bytes(_table(clean, EPOCH_SCHEMA, f"trial {trial_id} epochs"), "epochs")
    _put(fs, f"{base}/{EPOCHS_DIR}/{name}", data, exclusive=True)


def _part_order(name: str) -> str:
    return name.rsplit("-", 2)[-2] if name.count("-") >= 2 else ""


def read_epochs(source: str, experiment: str | None = None) -> pa.Table:
    """Every epoch row once per (trial_id, stage, epoch): a restarted trial reports some epochs
    again, and the last written part wins. Ordered by trial, stage, epoch."""
    folder = _experiment_folder(source, experiment)
    fs, base = _filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise UserError(f"{folder}: no such experiment")
    infos = [i for i in _listing(fs, f"{base}/{EPOCHS_DIR}") if i.base_name.endswith(".parquet")]
    infos.sort(key=lambda i: (_part_order(i.base_name), i.base_name))
    latest: dict[tuple, dict] = {}
    for info in infos:
        for row in _read_file(fs, info.path, "epochs", EPOCH_SCHEMA).to_pylist():
            latest[(row["trial_id"], row["stage"], row["epoch"])] = row
    rows = [latest[k] for k in sorted(latest)]
    return pa.Table.from_pylist(rows, schema=EPOCH_SCHEMA)


# ---------------------------------------------------------------- experiments

def list_experiments(storage: str) -> list[dict]:
    """Experiments under a storage root: name, path, trials, finished, failed, last_change (ISO UTC)."""
    root = storage_root(storage)
    fs, base = _filesystem(root)
    out = []
    for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
        if info.type != pafs.FileType.Directory or not _SAFE_NAME.match(info.base_name):
            continue
        subs = {i.base_name for i in fs.get_file_info(pafs.FileSelector(info.path))
                if i.type == pafs.FileType.Directory}
        if not subs & {TRIALS_DIR, EPOCHS_DIR}:
            continue  # some other folder (Ray Tune's own experiment without our tables, say)
        folder = experiment_path(root, info.base_name)
        trial_infos, trials = _read_all(folder, None, TRIALS_DIR, "trials", TRIAL_SCHEMA)
        epoch_infos = _listing(fs, f"{info.path}/{EPOCHS_DIR}")
        status = trials.column("status").to_pylist()
        mtimes = [i.mtime for i in trial_infos + epoch_infos if i.mtime is not None]
        out.append({"name": info.base_name, "path": folder, "trials": len(status),
                    "finished": status.count("finished"), "failed": status.count("failed"),
                    "last_change": max(mtimes).astimezone(dt.timezone.utc).isoformat(timespec="seconds")
                    if mtimes else None})
    return sorted(out, key=lambda e: e["name"])


def locate(name_or_path: str, storage: str | None = None) -> str:
    """An experiment folder from a name (in the storage root) or a path/URI."""
    if "://" in name_or_path or os.sep in name_or_path or "/" in name_or_path or name_or_path.startswith("~"):
        return _experiment_folder(name_or_path, None)
    return experiment_path(storage_root(storage), name_or_path)


# ---------------------------------------------------------------- importing a run folder

def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def import_run(run_dir: str, storage: str, name: str) -> dict:
    """Store a finished `pdarts-ray search` folder as one trial with its epochs.

    The trial id is the folder's name plus a hash of its config and result, so the same
    run imported twice (even from a copy elsewhere) is stored once."""
    import hashlib

    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    if not os.path.isfile(os.path.join(run_dir, "config.json")):
        raise UserError(f"{run_dir}: not a search run folder (no config.json)")
    if not os.path.isfile(os.path.join(run_dir, "result.json")):
        raise UserError(f"{run_dir}: the search has not finished (no result.json); resume it first")
    config = _read_json(os.path.join(run_dir, "config.json"))
    result = _read_json(os.path.join(run_dir, "result.json"))
    genotypes = _read_json(os.path.join(run_dir, "genotypes.json"))
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    metrics = read_jsonl(metrics_path)
    digest = hashlib.sha256()
    for part in ("config.json", "result.json"):
        with open(os.path.join(run_dir, part), "rb") as f:
            digest.update(f.read())
    stem = re.sub(r"[^A-Za-z0-9_.=+-]", "_", os.path.basename(run_dir.rstrip(os.sep))).lstrip("._-=+")[:80]
    trial_id = f"{stem or 'run'}-{digest.hexdigest()[:12]}"
    root = storage_root(storage)
    out = {"experiment": name, "trial_id": trial_id, "path": experiment_path(root, name), "stored": False,
           "epochs": len(metrics)}
    if has_trial(root, name, trial_id):
        return out
    row = trial_row(name, trial_id, "finished", config, result, genotypes,
                    started=os.path.getmtime(os.path.join(run_dir, "config.json")),
                    finished=os.path.getmtime(os.path.join(run_dir, "result.json")))
    # epochs first: the trial row marks the import complete, and an interrupted import redone
    # only adds epoch parts that the reader deduplicates
    write_epochs(root, name, trial_id, metrics)
    out["stored"] = write_trial(root, name, row)
    return out


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
        for m in (ms if ms is not None else sorted(int(k) for k in by_m)):
            if str(m) not in by_m:
                raise UserError(f"trial {row['trial_id']}: no genotype stored for M = {m}")
            genotype = by_m[str(m)]
            base = {k: v for k, v in row.items() if k != "genotypes_by_m"}
            out.append({**base, "M": m, "genotype": _json(genotype),
                        "skip_connects_after_refinement": skip_count(genotype)})
    return out


# ---------------------------------------------------------------- evaluations

EVALUATIONS_DIR = "evaluations"

# One row per finished retraining of a genotype. `eval_key` is a hash of (genotype, the
# evaluation config's recipe keys, seed), so the same retraining is stored once however
# many tables ask for it.
EVAL_SCHEMA = pa.schema([
    ("experiment", pa.string()), ("eval_key", pa.string()),
    ("genotype", pa.string()), ("genotype_name", pa.string()),
    ("eval_preset", pa.string()), ("eval_config", pa.string()), ("seed", pa.int64()),
    ("top1", pa.float64()), ("top5", pa.float64()), ("error_pct", pa.float64()), ("test_loss", pa.float64()),
    ("params", pa.int64()), ("params_with_aux", pa.int64()), ("macs", pa.int64()),
    ("seconds", pa.float64()), ("epochs", pa.int64()), ("workers", pa.int64()),
    ("device", pa.string()), ("threads", pa.int64()),
    ("version_pdarts_ray", pa.string()), ("version_torch", pa.string()), ("version_python", pa.string()),
    ("version_pyarrow", pa.string()),
    ("finished", _TIME),
])


def evaluation_row(experiment: str, eval_key: str, genotype: dict, eval_preset: str, eval_config: dict,
                   result: dict, genotype_name: str = "", finished: float | None = None) -> dict:
    """One finished retraining as a flat row of EVAL_SCHEMA; `result` is the run's result.json."""
    _check_name(experiment, "experiment name")
    _check_name(eval_key, "evaluation key")
    versions = result.get("versions") or {}
    return {
        "experiment": experiment, "eval_key": eval_key, "genotype": _json(genotype), "genotype_name": genotype_name,
        "eval_preset": eval_preset, "eval_config": _json(eval_config), "seed": eval_config.get("seed"),
        **{k: result.get(k) for k in ("top1", "top5", "error_pct", "test_loss", "params", "params_with_aux", "macs",
                                      "seconds", "epochs", "workers", "device", "threads")},
        "version_pdarts_ray": versions.get("pdarts_ray", __version__),
        "version_torch": versions.get("torch"),
        "version_python": versions.get("python", platform.python_version()),
        "version_pyarrow": pa.__version__,
        "finished": _time(finished if finished is not None else time.time()),
    }


def write_evaluation(storage: str, experiment: str, row: dict) -> bool:
    """Store an evaluation's row once: False (and nothing written) if its key already has one."""
    if row.get("experiment") != experiment:
        raise UserError(f"evaluation row: experiment {row.get('experiment')!r} is not {experiment!r}")
    _check_name(row.get("eval_key"), "evaluation key")
    fs, base = _filesystem(experiment_path(storage, experiment))
    data = _to_bytes(_table([row], EVAL_SCHEMA, f"evaluation {row['eval_key']}"), "evaluations")
    return _put(fs, f"{base}/{EVALUATIONS_DIR}/{row['eval_key']}.parquet", data, exclusive=True)


def read_evaluations(source: str, experiment: str | None = None) -> pa.Table:
    """Every evaluation row of an experiment folder (none if it has none yet), ordered by key."""
    folder = _experiment_folder(source, experiment)
    fs, base = _filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        return EVAL_SCHEMA.empty_table()
    _, table = _read_all(source, experiment, EVALUATIONS_DIR, "evaluations", EVAL_SCHEMA)
    return table.sort_by("eval_key") if table.num_rows else table
