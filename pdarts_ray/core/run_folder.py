"""A run folder: the names of its files, and their reading and writing.

A search writes `config.json` (its resolved config), one line per finished epoch in
`metrics.jsonl` and in `alpha_trajectory.jsonl` (that epoch's alphas), `alphas.json` and
`genotypes.json` after every stage (at the end `genotypes.json` gains the final cells for
every M), then `genotype.json` and `result.json`. A retraining writes `config.json`,
`genotype.json` (with the genotype's name), `metrics.jsonl`, then `weights.pt` and
`result.json`. Both keep their checkpoints in `checkpoints/`. The names are those of every
stored run, so a folder written by any version reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .checkpoint import (
    CheckpointDir,
    append_jsonl,
    read_jsonl,
    rewrite_jsonl,
    write_bytes_atomic,
    write_json_atomic,
)
from .errors import UserError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TRAJECTORY_FILE = "alpha_trajectory.jsonl"
ALPHAS_FILE = "alphas.json"
GENOTYPES_FILE = "genotypes.json"
GENOTYPE_FILE = "genotype.json"
RESULT_FILE = "result.json"
WEIGHTS_FILE = "weights.pt"
CHECKPOINT_DIR = "checkpoints"
EPOCH_FILES = (METRICS_FILE, TRAJECTORY_FILE)  # one line per finished epoch


def read_json(path: Path) -> dict:
    """A JSON object from a file, or a UserError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


class RunFolder:
    """A search's or a retraining's run folder."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.checkpoints = CheckpointDir(self.path / CHECKPOINT_DIR)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    @property
    def started(self) -> bool:
        """Whether a run was created here (its config is written first)."""
        return self.has(CONFIG_FILE)

    @property
    def finished(self) -> bool:
        """Whether the run here has finished (its result is written last)."""
        return (self.path / RESULT_FILE).exists()

    # -- whole files
    def read_config(self) -> dict:
        return read_json(self.path / CONFIG_FILE)

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path / CONFIG_FILE, config)

    def read_result(self) -> dict:
        return read_json(self.path / RESULT_FILE)

    def write_result(self, result: dict) -> None:
        write_json_atomic(self.path / RESULT_FILE, result)

    def read_genotype(self) -> dict:
        return read_json(self.path / GENOTYPE_FILE)

    def write_genotype(self, genotype: dict) -> None:
        write_json_atomic(self.path / GENOTYPE_FILE, genotype)

    def read_genotypes(self) -> dict:
        """Every stage's genotype (`stage1`, ...) and, once finished, `final_by_M`."""
        return read_json(self.path / GENOTYPES_FILE)

    def read_alphas(self) -> dict:
        """`primitives` and every finished stage's cells (`stage1`: {normal, reduce}); none yet: {}."""
        return read_json(self.path / ALPHAS_FILE) if self.has(ALPHAS_FILE) else {}

    def write_stages(self, stages: list[dict], primitives, final_by_m: dict | None = None) -> None:
        """alphas.json and genotypes.json from the finished stages' summaries."""
        write_json_atomic(
            self.path / ALPHAS_FILE,
            {
                "primitives": list(primitives),
                **{f"stage{s['stage']}": {"normal": s["normal"], "reduce": s["reduce"]} for s in stages},
            },
        )
        genotypes = {f"stage{s['stage']}": s["genotype"] for s in stages}
        if final_by_m is not None:
            genotypes["final_by_M"] = final_by_m
        write_json_atomic(self.path / GENOTYPES_FILE, genotypes)

    def write_weights(self, data: bytes) -> None:
        write_bytes_atomic(self.path / WEIGHTS_FILE, data)

    # -- one line per epoch
    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.path / METRICS_FILE)

    def read_trajectory(self) -> list[dict]:
        return read_jsonl(self.path / TRAJECTORY_FILE)

    def append_metrics(self, row: dict) -> None:
        append_jsonl(self.path / METRICS_FILE, row)

    def append_trajectory(self, row: dict) -> None:
        append_jsonl(self.path / TRAJECTORY_FILE, row)

    def keep_epochs(self, keep: Callable[[dict], bool], files: tuple[str, ...] = EPOCH_FILES) -> None:
        """Rewrite the per-epoch files with the lines `keep` accepts: a resumed run writes the
        epochs after its checkpoint again."""
        for name in files:
            rewrite_jsonl(self.path / name, [r for r in read_jsonl(self.path / name) if keep(r)])
