"""Showing a search as it runs: a rich live view on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time

from .hooks import SearchHooks


def _fmt_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


class SearchProgress(SearchHooks):
    """Stage, epoch, loss/accuracy, skip dropout and an ETA.

    The ETA weighs each remaining epoch by its stage's cells x ops (the supernet's size)
    and, after warm-up, by the extra architecture step, calibrated on the epochs done.
    """

    def __init__(
        self,
        cells: list[int],
        ops: list[int],
        epochs: int,
        warmup: int,
        stream=None,
        live: bool | None = None,
    ):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self.cells, self.ops, self.epochs, self.warmup = cells, ops, epochs, warmup
        self.done_units = 0.0
        self.done_seconds = 0.0
        self._progress = None
        self._task = None
        self._stage = 0
        self._last = ""
        self._started = time.perf_counter()

    def _units(self, stage: int, epoch: int) -> float:
        return self.cells[stage - 1] * self.ops[stage - 1] * (2.0 if epoch >= self.warmup else 1.0)

    def _remaining_units(self, stage: int, epoch: int) -> float:
        total = 0.0
        for s in range(stage, len(self.cells) + 1):
            first = epoch + 1 if s == stage else 0
            total += sum(self._units(s, e) for e in range(first, self.epochs))
        return total

    def eta(self, stage: int, epoch: int) -> float | None:
        if self.done_units <= 0:
            return None
        return self._remaining_units(stage, epoch) * self.done_seconds / self.done_units

    # -- hooks
    def on_resume(self, stage, epoch):
        where = f"stage {stage}, epoch {epoch}" if stage else "the start (no checkpoint had been written)"
        print(f"resumed from {where}", file=self.stream, flush=True)

    def on_stage_start(self, stage, num_stages, cells, ops, epochs):
        self._stage = stage
        header = f"stage {stage}/{num_stages}: {cells} cells, {ops} ops per edge, {epochs} epochs"
        if self.live:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            if self._progress is None:
                self._progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    TextColumn("{task.fields[info]}"),
                    console=Console(file=self.stream),
                    transient=False,
                )
                self._progress.start()
            self._progress.console.print(header)
            self._task = self._progress.add_task(f"stage {stage} epoch 0", total=None, info="")
        else:
            print(header, file=self.stream, flush=True)

    def on_batch(self, stage, epoch, step, steps):
        if self._progress is not None:
            self._progress.update(
                self._task, description=f"stage {stage} epoch {epoch}", completed=step, total=steps
            )

    def on_epoch_end(self, metrics, checkpoint):
        stage, epoch = metrics["stage"], metrics["epoch"]
        self.done_units += self._units(stage, epoch)
        self.done_seconds += metrics["epoch_seconds"]
        eta = self.eta(stage, epoch)
        line = (
            f"stage {stage} epoch {epoch + 1}/{self.epochs}  loss {_fmt(metrics['train_loss'])}  "
            f"train {_fmt(metrics['train_acc'])}  valid {_fmt(metrics['valid_acc'])}  "
            f"skip-dropout {_fmt(metrics['skip_dropout'])}  lr {metrics['lr']:.5f}  "
            f"{metrics['epoch_seconds']:.1f}s  ETA {_fmt_duration(eta) if eta is not None else '-'}"
        )
        if self._progress is not None:
            self._progress.update(
                self._task,
                info=f"valid {_fmt(metrics['valid_acc'])}  ETA "
                f"{_fmt_duration(eta) if eta is not None else '-'}",
            )
            self._progress.console.print(line)
        else:
            print(line, file=self.stream, flush=True)

    def on_search_end(self, result):
        self.close()

    def close(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
