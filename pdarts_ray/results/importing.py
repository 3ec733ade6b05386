"""Importing a finished `pdarts-ray search` run folder into the store as one trial."""

from __future__ import annotations

import os
import re

from ..core.errors import UserError
from ..core.run_folder import CONFIG_FILE, RESULT_FILE, RunFolder
from .files import experiment_path, storage_root
from .store import has_trial, trial_row, write_epochs, write_trial


def import_run(run_dir: str, storage: str, name: str) -> dict:
    """Store a finished `pdarts-ray search` folder as one trial with its epochs.

    The trial id is the folder's name plus a hash of its config and result, so the same
    run imported twice (even from a copy elsewhere) is stored once."""
    import hashlib

    run_dir = os.path.abspath(os.path.expanduser(run_dir))
    folder = RunFolder(run_dir)
    if not folder.started:
        raise UserError(f"{run_dir}: not a search run folder (no {CONFIG_FILE})")
    if not folder.has(RESULT_FILE):
        raise UserError(f"{run_dir}: the search has not finished (no {RESULT_FILE}); resume it first")
    config = folder.read_config()
    result = folder.read_result()
    genotypes = folder.read_genotypes()
    metrics = folder.read_metrics()
    digest = hashlib.sha256()
    for part in (CONFIG_FILE, RESULT_FILE):
        digest.update((folder / part).read_bytes())
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
        started=os.path.getmtime(folder / CONFIG_FILE),
        finished=os.path.getmtime(folder / RESULT_FILE),
    )
    # epochs first: the trial row marks the import complete, and an interrupted import redone
    # only adds epoch parts that the reader deduplicates
    write_epochs(root, name, trial_id, metrics)
    out["stored"] = write_trial(root, name, row)
    return out
