"""Importing a finished `pdarts-ray search` run folder into the store as one trial."""

from __future__ import annotations

import json
import os
import re

from ..core.checkpoint import read_jsonl
from ..core.errors import UserError
from .files import experiment_path, storage_root
from .store import has_trial, trial_row, write_epochs, write_trial

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
    out = {
        "experiment": name,
        "trial_id": trial_id,
        "path": experiment_path(root, name),
        "stored": False,
        "epochs": len(metrics),
    }
    if has_trial(root, name, trial_id):
        return out
    row = trial_row(
        name,
        trial_id,
        "finished",
        config,
        result,
        genotypes,
        started=os.path.getmtime(os.path.join(run_dir, "config.json")),
        finished=os.path.getmtime(os.path.join(run_dir, "result.json")),
    )
    # epochs first: the trial row marks the import complete, and an interrupted import redone
    # only adds epoch parts that the reader deduplicates
    write_epochs(root, name, trial_id, metrics)
    out["stored"] = write_trial(root, name, row)
    return out
