"""The search loop's hooks: what the Ray layer (and the terminal's progress view) see of a
running search."""
from __future__ import annotations

from pathlib import Path


class SearchHooks:
    """Override what you need: the Ray layer reports and checkpoints through these."""

    def on_stage_start(self, stage: int, num_stages: int, cells: int, ops: int, epochs: int) -> None: ...

    def on_batch(self, stage: int, epoch: int, step: int, steps: int) -> None: ...

    def on_epoch_end(self, metrics: dict, checkpoint: Path) -> None: ...

    def on_stage_end(self, summary: dict) -> None: ...

    def on_search_end(self, result: dict) -> None: ...
