"""An experiment's folder (a local path or a URI): the saved sweep setup (`sweep.json`)
beside Ray Tune's own state, which is what `--resume` needs."""

from __future__ import annotations

import json
from pathlib import Path

from ..core.checkpoint import write_bytes_atomic
from ..core.claim import Claim, LocalClaimFiles
from ..core.errors import UserError
from ..results import locate
from ..results.files import filesystem

SWEEP_FILE = "sweep.json"


def save_setup(path: str, setup: dict) -> None:
    """Write `sweep.json` whole or not at all: locally a unique temporary file, fsync'ed and
    renamed; on S3 one put (an object appears whole; a move would copy); elsewhere one stream."""
    data = (json.dumps(setup, indent=1) + "\n").encode()
    if "://" not in path:
        write_bytes_atomic(Path(path) / SWEEP_FILE, data)
        return
    import pyarrow.fs as pafs

    from ..results.files import s3_put

    fs, base = filesystem(path)
    if isinstance(fs, pafs.S3FileSystem):
        bucket, _, prefix = base.partition("/")
        s3_put(bucket, f"{prefix.rstrip('/')}/{SWEEP_FILE}".lstrip("/"), data, exclusive=False)
        return
    fs.create_dir(base, recursive=True)
    with fs.open_output_stream(f"{base}/{SWEEP_FILE}") as out:
        out.write(data)


# what run_sweep saves, with the types each value may have (None: the key may be null)
SETUP_KEYS: dict[str, tuple] = {
    "name": (str,),
    "storage": (str,),
    "experiment_path": (str,),
    "sweep": (dict,),
    "base_config": (dict,),
    "gpus_per_trial": (int, float),
    "cpus_per_trial": (int,),
    "max_failures": (int,),
    "worker_env": (dict,),
    "local_runs": (str, type(None)),
    "verbose": (int,),
    "workers_per_trial": (int,),
    "sync_bn": (bool,),
    "version": (str,),
}
# keys that a sweep.json written by these versions may lack (added while the version was current)
MAY_LACK = {"0.1.0": ("verbose", "workers_per_trial", "sync_bn", "version")}


def read_setup(path: str) -> dict:
    """`sweep.json` as saved (no checks beyond being a JSON object)."""
    fs, base = filesystem(path)
    where = f"{path.rstrip('/')}/{SWEEP_FILE}"
    try:
        with fs.open_input_stream(f"{base}/{SWEEP_FILE}") as f:
            text = f.readall().decode()
    except (FileNotFoundError, OSError):
        raise UserError(f"{path}: not a sweep experiment (no {SWEEP_FILE})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{where}: not valid JSON ({getattr(err, 'msg', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a JSON object")
    return data


def load_setup(path: str) -> dict:
    """`sweep.json`, validated as strictly as a new sweep: its keys and their types, the saved
    definition parsed again, and the base config the trials run checked against it."""
    from ..core.config import SearchConfig, from_dict, preset_versions, to_dict
    from ..core.version import FIRST_VERSION, VERSION, version_key
    from .definition import parse_saved_sweep

    setup = read_setup(path)
    where = f"{path.rstrip('/')}/{SWEEP_FILE}"
    unknown = set(setup) - set(SETUP_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown key '{sorted(unknown)[0]}'")
    written_by = setup.get("version", FIRST_VERSION)
    if not isinstance(written_by, str) or not _is_version(written_by):
        raise UserError(f"{where}: version: expected a version such as {VERSION!r}, got {written_by!r}")
    if version_key(written_by) > version_key(VERSION):
        raise UserError(f"{where}: written by pdarts-ray {written_by}, newer than this {VERSION}")
    for key, types in SETUP_KEYS.items():
        if key not in setup:
            if key in MAY_LACK.get(written_by, ()):
                continue
            raise UserError(f"{where}: missing key '{key}'")
        value = setup[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise UserError(f"{where}: {key}: wrong type ({type(value).__name__})")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in setup["worker_env"].items()):
        raise UserError(f"{where}: worker_env: must map names to strings")
    sweep = parse_saved_sweep(setup["sweep"], where)
    base = to_dict(from_dict(SearchConfig, setup["base_config"], f"{where}: base_config"))
    # what the trials ran with: the definition's base over its preset as it is now, or as it
    # was in an earlier version (an experiment keeps the values it was started with)
    presets = preset_versions(sweep.base["preset"], written_by)
    if base not in [to_dict(sweep.base_config(values)) for values in presets]:
        raise UserError(f"{where}: base_config does not match the sweep's base (edited by hand?)")
    if sweep.name is not None and sweep.name != setup["name"]:
        raise UserError(f"{where}: name {setup['name']!r} differs from the sweep's {sweep.name!r}")
    # a setup saved again (a resumed sweep) keeps the version that started the experiment
    return {**setup, "version": written_by, "sweep": sweep.to_dict()}


def _is_version(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 3 and all(part.isdigit() for part in parts)


def exists(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = filesystem(path)
    return fs.get_file_info(base).type != pafs.FileType.NotFound


def locate_experiment(name_or_path: str, storage: str | None = None) -> str:
    path = locate(name_or_path, storage)
    if not exists(path):
        raise UserError(f"{path}: no such experiment")
    return path


def tune_state_missing(path: str) -> bool:
    import pyarrow.fs as pafs

    fs, base = filesystem(path)
    infos = fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
    return not any(i.base_name.startswith("experiment_state") for i in infos)


# ---------------------------------------------------------------- one driver per experiment


class ObjectClaimFiles:
    """The claim file of an experiment on S3: conditional writes make creating, taking over
    and renewing atomic (If-None-Match on create; If-Match on the version read)."""

    def __init__(self, uri: str):
        fs, path = filesystem(uri)
        self.bucket, self.key = path.split("/", 1)
        self.where = f"s3://{self.bucket}/{self.key}"

    def create(self, data: bytes):
        return self._put(data, IfNoneMatch="*")

    def read(self):
        from botocore.exceptions import ClientError

        from ..results.files import s3_client

        try:
            response = s3_client().get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise UserError(f"{self.where}: cannot read ({str(err).splitlines()[0][:160]})") from None
        return response["Body"].read(), response["ETag"]

    def replace(self, version, data: bytes):
        return self._put(data, IfMatch=version)

    def remove(self, version) -> None:
        from botocore.exceptions import ClientError

        from ..results.files import s3_client

        try:
            s3_client().delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except ClientError:
            pass  # taken over meanwhile, or already gone: not ours to remove

    def _put(self, data: bytes, **condition):
        from botocore.exceptions import ClientError

        from ..results.files import precondition_failed, s3_client

        try:
            return s3_client().put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except ClientError as err:
            if precondition_failed(err) or err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise UserError(f"{self.where}: cannot write ({str(err).splitlines()[0][:160]})") from None


class BestEffortClaimFiles:
    """Other object stores (gs://, ...): no conditional writes through pyarrow, so a claim is
    checked, then written. Two drivers starting within the same moment may both proceed."""

    def __init__(self, uri: str):
        fs, path = filesystem(uri)
        self.fs, self.path, self.where = fs, path, uri

    def create(self, data: bytes):
        import pyarrow.fs as pafs

        if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
            return None
        return self._write(data)

    def read(self):
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = f.readall()
        except (FileNotFoundError, OSError):
            return None
        return data, data

    def replace(self, version, data: bytes):
        current = self.read()
        return self._write(data) if current is not None and current[1] == version else None

    def remove(self, version) -> None:
        current = self.read()
        if current is not None and current[1] == version:
            self.fs.delete_file(self.path)

    def _write(self, data: bytes):
        self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
        with self.fs.open_output_stream(self.path) as out:
            out.write(data)
        return data


CLAIMS_FOLDER = ".claims"


def claim_path(path: str) -> str:
    """Where an experiment's claim lives: `<storage>/.claims/<experiment>.json`, beside the
    experiment folder rather than in it (Ray Tune syncs that folder, and would write over it)."""
    parent, name = (
        path.rstrip("/").rsplit("/", 1) if "://" in path else (str(Path(path).parent), Path(path).name)
    )
    return f"{parent}/{CLAIMS_FOLDER}/{name}.json"


def claim_experiment(path: str, command: str, take_over: bool = False) -> Claim:
    """A claim on an experiment (local path or URI), not yet acquired."""
    where = claim_path(path)
    if "://" not in path:
        return Claim(LocalClaimFiles(Path(where)), command, take_over)
    if path.startswith("s3://"):
        return Claim(ObjectClaimFiles(where), command, take_over)
    return Claim(BestEffortClaimFiles(where), command, take_over)
