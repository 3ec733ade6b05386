"""An experiment's folder (a local path or a URI): the saved sweep setup (`sweep.json`)
beside Ray Tune's own state, which is what `--resume` needs."""
from __future__ import annotations

import json

from ..core.errors import UserError
from ..results import locate
from ..results.files import filesystem

SWEEP_FILE = "sweep.json"


def save_setup(path: str, setup: dict) -> None:
    fs, base = filesystem(path)
    fs.create_dir(base, recursive=True)
    tmp = f"{base}/.{SWEEP_FILE}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write((json.dumps(setup, indent=1) + "\n").encode())
    fs.move(tmp, f"{base}/{SWEEP_FILE}")


def load_setup(path: str) -> dict:
    fs, base = filesystem(path)
    try:
        with fs.open_input_stream(f"{base}/{SWEEP_FILE}") as f:
            return json.loads(f.readall().decode())
    except (FileNotFoundError, OSError):
        raise UserError(f"{path}: not a sweep experiment (no {SWEEP_FILE})") from None


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
