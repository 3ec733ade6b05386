"""Crash-safe files: atomic writes, and a checkpoint folder that keeps the previous one.

A write goes to a temporary file in the same folder, is flushed and fsync'ed, then
renamed over the target, so a reader sees the old file or the new one, never half
of one. Checkpoints are numbered; the newest two are kept, and a newest one that
cannot be read falls back to the one before it with a warning.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .errors import UserError

CHECKPOINT_FORMAT = "pdarts-ray-checkpoint"
_NAME = re.compile(r"^ckpt-(\d{6})\.pt$")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1) + "\n").encode())


def append_jsonl(path: Path, row: dict) -> None:
    """Append one line and fsync: a killed writer leaves at most a partial last line."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Complete JSON lines of a file; a torn last line (a killed writer) is ignored."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return rows
    for line in lines:
        if not line.endswith("\n"):
            break
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in rows).encode())


class CheckpointDir:
    """Numbered checkpoints in one folder; the newest two are kept."""

    def __init__(self, folder: Path, keep: int = 2):
        self.folder = Path(folder)
        self.keep = keep

    def _existing(self) -> list[tuple[int, Path]]:
        if not self.folder.is_dir():
            return []
        found = []
        for p in self.folder.iterdir():
            m = _NAME.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
        return sorted(found)

    def save(self, state: dict) -> Path:
        existing = self._existing()
        number = existing[-1][0] + 1 if existing else 1
        buf = io.BytesIO()
        torch.save({"format": CHECKPOINT_FORMAT, **state}, buf)
        path = self.folder / f"ckpt-{number:06d}.pt"
        write_bytes_atomic(path, buf.getvalue())
        for _, old in existing[: max(0, len(existing) + 1 - self.keep)]:
            try:
                old.unlink()
            except OSError:
                pass
        return path

    def latest_path(self) -> Path | None:
        existing = self._existing()
        return existing[-1][1] if existing else None

    def load(
        self, warn: Callable[[str], None] | None = None, validate: Callable[[dict], None] | None = None
    ) -> dict:
        """The newest readable checkpoint; a corrupt newest one (or one `validate` rejects with a
        ValueError) falls back to the previous."""
        existing = self._existing()
        if not existing:
            raise UserError(f"{self.folder}: no checkpoint to resume from")
        warn = warn or (lambda msg: print(msg, file=sys.stderr))
        for i, (_, path) in enumerate(reversed(existing)):
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
                if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
                    raise ValueError("not a pdarts-ray checkpoint")
                if validate is not None:
                    validate(state)
                return state
            except Exception as err:  # any unreadable file: try the one before
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                if i + 1 < len(existing):
                    warn(
                        f"warning: {path.name} is unreadable ({reason[:120]}); using the previous checkpoint"
                    )
                else:
                    raise UserError(
                        f"{path}: unreadable checkpoint ({reason[:120]}) and no earlier one"
                    ) from None
        raise AssertionError("unreachable")
