"""The search loop's hooks: what the Ray layer (and the terminal's progress view) see of a
running search."""

from __future__ import annotations

from pathlib import Path


class SearchHooks:
    """Override what you need: the Ray layer reports and checkpoints through these."""

    def on_resume(self, stage: int, epoch: int) -> None:
        """A resumed search continues after `epoch` of `stage` (both from 1), its checkpoint;
        (0, 0): it starts over, having stopped before its first checkpoint."""

    def on_stage_start(self, stage: int, num_stages: int, cells: int, ops: int, epochs: int) -> None: ...

    def on_batch(self, stage: int, epoch: int, step: int, steps: int) -> None: ...

    def on_epoch_end(self, metrics: dict, checkpoint: Path) -> None: ...

    def on_stage_end(self, summary: dict) -> None: ...

    def on_search_end(self, result: dict) -> None: ...


class AllHooks(SearchHooks):
    """Several hooks, called in order (None entries left out)."""

    def __init__(self, *hooks: SearchHooks | None):
        self.hooks = [h for h in hooks if h is not None]

    def on_resume(self, *args) -> None:
        for h in self.hooks:
            h.on_resume(*args)

    def on_stage_start(self, *args) -> None:
        for h in self.hooks:
            h.on_stage_start(*args)

    def on_batch(self, *args) -> None:
        for h in self.hooks:
            h.on_batch(*args)

    def on_epoch_end(self, metrics: dict, checkpoint: Path) -> None:
        for h in self.hooks:
            h.on_epoch_end(metrics, checkpoint)

    def on_stage_end(self, summary: dict) -> None:
        for h in self.hooks:
            h.on_stage_end(summary)

    def on_search_end(self, result: dict) -> None:
        for h in self.hooks:
            h.on_search_end(result)
