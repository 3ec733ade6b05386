"""The results store's files: where they live (a local folder or a URI that pyarrow
understands), how a table becomes a file and back, and how a file is put in place.

Every file is written under a hidden temporary name and then moved into place, so a
reader sees whole files or nothing; readers skip hidden names and take the union. Each
file carries its table's kind and the format version in its schema metadata, and is
conformed to the current schema when read (columns added later read as nulls).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import uuid

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..core.errors import UserError

DEFAULT_STORAGE = "~/pdarts_results"
STORAGE_ENV = "PDARTS_STORAGE"
FORMAT_VERSION = "1"
_TABLE_KEY = b"pdarts_ray.table"
_FORMAT_KEY = b"pdarts_ray.format"
TIMESTAMP = pa.timestamp("us", tz="UTC")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,199}$")


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
        raise UserError(
            f"{source}: {storage!r} is a relative path; give an absolute path or a URI "
            "(every worker of a sweep must find the same folder)"
        )
    return os.path.normpath(path)


def experiment_path(storage: str, experiment: str) -> str:
    check_name(experiment, "experiment name")
    root = storage_root(storage)
    return f"{root.rstrip('/')}/{experiment}" if "://" in root else os.path.join(root, experiment)


def check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise UserError(
            f"{what} {name!r}: use letters, digits and _ . = + - (not starting with . or -), "
            "at most 200 characters"
        )


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    if "://" not in path:
        return pafs.LocalFileSystem(), path
    try:
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise UserError(f"{path}: unusable storage URI ({str(err).splitlines()[0]})") from None


def listing(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    """Plain files of a folder, hidden (temporary) names excluded; none if it is missing."""
    infos = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return sorted(
        (i for i in infos if i.type == pafs.FileType.File and not i.base_name.startswith(".")),
        key=lambda i: i.base_name,
    )


def to_parquet_bytes(table: pa.Table, kind: str) -> bytes:
    meta = {_TABLE_KEY: kind.encode(), _FORMAT_KEY: FORMAT_VERSION.encode()}
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(meta), sink)
    return sink.getvalue().to_pybytes()


def s3_client():
    """A boto3 S3 client configured as the AWS tools are (credentials, region, and the
    endpoint from AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL, as pyarrow reads them too)."""
    import boto3

    return boto3.client("s3")


def precondition_failed(err) -> bool:
    code = getattr(err, "response", {}).get("Error", {}).get("Code")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def s3_put(bucket: str, key: str, data: bytes, exclusive: bool) -> bool:
    """Put an object; with `exclusive` only if none exists (If-None-Match), False if one does."""
    from botocore.exceptions import ClientError

    try:
        s3_client().put_object(
            Bucket=bucket, Key=key, Body=data, **({"IfNoneMatch": "*"} if exclusive else {})
        )
    except ClientError as err:
        if exclusive and precondition_failed(err):
            return False
        raise UserError(f"s3://{bucket}/{key}: cannot write ({str(err).splitlines()[0][:160]})") from None
    return True


def put_file(fs: pafs.FileSystem, path: str, data: bytes, exclusive: bool) -> bool:
    """Write under a hidden name, then move into place. `exclusive`: never replace an existing
    file; False if there is one."""
    local = isinstance(fs, pafs.LocalFileSystem)
    folder, name = os.path.split(path) if local else path.rsplit("/", 1)
    if isinstance(fs, pafs.S3FileSystem):  # a conditional put: exactly once, even between racing writers
        bucket, key = path.split("/", 1)
        return s3_put(bucket, key, data, exclusive)
    tmp = f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"
    fs.create_dir(folder, recursive=True)
    if not local:  # other object stores: a new object appears whole; checking first is the best there is
        if exclusive and fs.get_file_info(path).type != pafs.FileType.NotFound:
            return False
        with fs.open_output_stream(path) as out:
            out.write(data)
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


def read_file(fs: pafs.FileSystem, path: str, kind: str, schema: pa.Schema) -> pa.Table:
    """One of our files, checked and conformed to the current schema."""
    try:
        with fs.open_input_file(path) as f:
            table = pq.read_table(f)
    except (pa.ArrowException, OSError) as err:
        raise UserError(
            f"{path}: not a readable Parquet file, possibly half-written ({str(err).splitlines()[0][:120]})"
        ) from None
    meta = table.schema.metadata or {}
    if meta.get(_TABLE_KEY) != kind.encode():
        raise UserError(f"{path}: not a pdarts-ray {kind} file (foreign Parquet file in the results store)")
    if meta.get(_FORMAT_KEY) != FORMAT_VERSION.encode():
        raise UserError(
            f"{path}: results format {meta.get(_FORMAT_KEY, b'?').decode()}, "
            f"this version reads format {FORMAT_VERSION}"
        )
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
        raise UserError(
            f"{path}: unknown columns {', '.join(sorted(unknown))} (written by a newer pdarts-ray?)"
        )
    return pa.Table.from_arrays(columns, schema=schema)


def experiment_folder(source: str, experiment: str | None) -> str:
    if experiment is not None:
        return experiment_path(source, experiment)
    if "://" in source:
        return source.rstrip("/")
    return os.path.abspath(os.path.expanduser(source))


def read_all(
    source: str, experiment: str | None, sub: str, kind: str, schema: pa.Schema, skip_unreadable: bool = False
):
    folder = experiment_folder(source, experiment)
    fs, base = filesystem(folder)
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise UserError(f"{folder}: no such experiment")
    infos = listing(fs, f"{base}/{sub}")
    tables = [
        t
        for i in infos
        if i.base_name.endswith(".parquet")
        if (t := read_or_skip(fs, i.path, kind, schema, skip_unreadable)) is not None
    ]
    return infos, (pa.concat_tables(tables) if tables else schema.empty_table())


def read_or_skip(fs: pafs.FileSystem, path: str, kind: str, schema: pa.Schema, skip_unreadable: bool):
    """`read_file`, or with `skip_unreadable` None and a warning naming the file (views of the store
    show what they can; what computes from the store refuses instead)."""
    try:
        return read_file(fs, path, kind, schema)
    except UserError as err:
        if not skip_unreadable:
            raise
        print(f"warning: skipped {err}", file=sys.stderr)
        return None


def to_json(obj) -> str | None:
    return None if obj is None else json.dumps(obj, separators=(",", ":"))


def utc_time(t: float | None):
    return None if t is None else dt.datetime.fromtimestamp(t, tz=dt.UTC)


def rows_to_table(rows: list[dict], schema: pa.Schema, what: str) -> pa.Table:
    for row in rows:
        unknown = set(row) - set(schema.names)
        if unknown:
            raise UserError(f"{what}: unknown columns {', '.join(sorted(unknown))}")
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise UserError(f"{what}: {str(err).splitlines()[0]}") from None
