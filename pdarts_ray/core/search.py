"""The progressive search: stages of growing depth over a shrinking op space.

Every stage builds a fresh supernet (new weights, new alphas, new optimisers) over
the switch masks the previous stage left; only the masks carry over. Within a
stage: warm-up epochs train weights only; afterwards every train batch is preceded
by an architecture step on the next valid batch (first order). At the end of a
stage its genotype is derived and the op space is pruned for the next stage; after
the last stage the final genotype is derived for every M (skip-connects kept).

Each finished epoch appends a metrics line, then writes a checkpoint holding all
state needed to continue bit for bit (weights, alphas, optimiser states, masks,
random states, the finished stages' results).
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import torch

from .claim import CLAIM_FILE, claim_folder
from .config import SearchConfig, from_dict, to_dict
from .data import DeviceImages, ImageData, load_dataset
from .errors import UserError
from .hooks import SearchHooks
from .memory import PeakMemory
from .parallel import Ranks
from .rows import EPOCH_ROW
from .run_folder import CONFIG_FILE, RESULT_FILE, RunFolder
from .runtime import cpu_threads, derived_seed, memory_format, pin_threads, resolve_device
from .space import (
    NUM_EDGES,
    NUM_OPS,
    PRIMITIVES,
    CellState,
    check_switches,
    derive,
    derive_all_m,
    full_switches,
    prune_switches,
    skip_weight,
)
from .stage import Stage, StagePlan
from .version import VERSION as __version__

# ---------------------------------------------------------------- the search


def validates(cfg: SearchConfig, epoch: int) -> bool:
    """Whether a stage's `epoch` ends with validation: always its last; then either its last
    `valid_last_epochs` (the official code's cadence) or every `valid_every`-th."""
    if epoch == cfg.epochs - 1:
        return True
    if cfg.valid_last_epochs:
        return epoch >= cfg.epochs - cfg.valid_last_epochs
    return (epoch + 1) % cfg.valid_every == 0


def step_path(cfg: SearchConfig, device: torch.device, ranks: Ranks) -> dict:
    """Which implementation of the supernet step ran: what a timing or a memory figure of the
    run belongs to."""
    kernels = (
        "reference" if ranks.sync_bn else cfg.kernels
    )  # as Stage: global BatchNorm needs the reference ops
    return {
        "kernels": kernels,
        "dtype": cfg.dtype,
        "compiled": cfg.compile,
        "channels_last": memory_format(cfg.channels_last, device, cfg.image_size) == torch.channels_last,
    }


def plan_stages(cfg: SearchConfig) -> list[StagePlan]:
    n = cfg.num_stages
    return [StagePlan(i, cfg.cells[i], cfg.ops_kept[i], cfg.skip_dropout[i], i == n - 1) for i in range(n)]


def initial_switches(cfg: SearchConfig) -> dict:
    """All 8 ops, or (ops_kept[0] < 8) a random subset per edge and cell type, drawn from
    `space_seed` (default: the run's seed): the paper's randomly sampled op spaces."""
    if cfg.ops_kept[0] == NUM_OPS:
        return {"normal": full_switches(), "reduce": full_switches()}
    space_seed = cfg.seed if cfg.space_seed is None else cfg.space_seed
    g = torch.Generator().manual_seed(derived_seed(space_seed, 0))
    out = {}
    for name in ("normal", "reduce"):
        rows = []
        for _ in range(NUM_EDGES):
            keep = set(torch.randperm(NUM_OPS, generator=g)[: cfg.ops_kept[0]].tolist())
            rows.append([k in keep for k in range(NUM_OPS)])
        out[name] = rows
    return out


class ProgressiveSearch:
    """A P-DARTS search writing its run folder; `run()` starts or continues it."""

    def __init__(
        self, cfg: SearchConfig, run_dir: Path, hooks: SearchHooks | None = None, ranks: Ranks | None = None
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(run_dir)
        self.hooks = hooks or SearchHooks()
        self.checkpoints = self.folder.checkpoints
        # data-parallel workers (none: this process alone); rank 0 alone writes the run folder
        self.ranks = ranks or Ranks()

    # -- folder handling
    @classmethod
    def create(cls, cfg: SearchConfig, run_dir: Path, hooks: SearchHooks | None = None) -> ProgressiveSearch:
        run_dir = Path(run_dir)
        check_out_dir(run_dir)
        resolved = to_dict(cfg)
        resolved["threads"] = cpu_threads(cfg.threads)  # pinned, so a resume computes the same bits
        RunFolder(run_dir).write_config(resolved)
        return cls(from_dict(SearchConfig, resolved, str(run_dir / CONFIG_FILE)), run_dir, hooks)

    @classmethod
    def open(cls, run_dir: Path, hooks: SearchHooks | None = None) -> ProgressiveSearch:
        folder = RunFolder(run_dir)
        if not folder.started:
            raise UserError(f"{run_dir}: not a search run folder (no {CONFIG_FILE})")
        if folder.finished:
            raise UserError(f"{run_dir}: this search has already finished ({RESULT_FILE} exists)")
        return cls(from_dict(SearchConfig, folder.read_config(), str(folder / CONFIG_FILE)), run_dir, hooks)

    # -- the loop
    def run(
        self,
        resume: bool = False,
        data: ImageData | None = None,
        checkpoint: dict | None = None,
        device: torch.device | None = None,
    ) -> dict:
        """Start, or with `resume` continue from the run folder's newest checkpoint, or from
        `checkpoint` (a loaded checkpoint from elsewhere, e.g. one Ray Train restored). `device`
        overrides the config's (a Ray Train worker's own GPU)."""
        cfg = self.cfg
        device = device or resolve_device(cfg.device)
        pin_threads(cfg.threads, device, "--set threads=1", "this search")
        plans = plan_stages(cfg)
        start = {
            "stage": 0,
            "epoch": 0,
            "stages": [],
            "switches": initial_switches(cfg),
            "stage_state": None,
            "elapsed": 0.0,
            "peak": 0,
            "peak_reserved": 0,
        }
        if checkpoint is None and resume:
            if self.checkpoints.latest_path() is None:  # stopped before its first checkpoint: start over
                self._forget_unsaved_epochs()
                self.hooks.on_resume(0, 0)
            else:
                checkpoint = self._load_checkpoint(plans)
        if checkpoint is not None:
            start = self._resume_point(checkpoint, plans)
            self.hooks.on_resume(checkpoint["stage"] + 1, checkpoint["epoch"] + 1)
        data = data or load_search_data(cfg)
        images = DeviceImages(
            data.train_x,
            data.train_y,
            data.mean,
            data.std,
            device,
            memory_format(cfg.channels_last, device, cfg.image_size),
        )
        split = int(math.floor(cfg.train_portion * len(images)))
        if split < 1 or split >= len(images):
            raise UserError(f"{cfg.dataset}: {len(images)} training images are too few to split for search")
        train_idx = torch.arange(0, split, device=device)
        valid_idx = torch.arange(split, len(images), device=device)
        stages = list(start["stages"])
        switches = start["switches"]
        for plan in plans[start["stage"] :]:
            resuming = plan.index == start["stage"] and start["stage_state"] is not None
            summary, switches = self._run_stage(
                plan,
                switches,
                data.num_classes,
                device,
                images,
                train_idx,
                valid_idx,
                stages,
                first_epoch=start["epoch"] if resuming else 0,
                stage_state=start["stage_state"] if resuming else None,
                elapsed=start["elapsed"] if resuming else 0.0,
                peaks=(start["peak"], start["peak_reserved"]) if resuming else (0, 0),
            )
            stages.append(summary)
        return self._finish(stages, device)

    def _run_stage(
        self,
        plan: StagePlan,
        switches,
        num_classes,
        device,
        images,
        train_idx,
        valid_idx,
        stages: list,
        first_epoch: int,
        stage_state,
        elapsed: float,
        peaks,
    ):
        cfg = self.cfg
        stage = Stage(cfg, plan, switches, num_classes, device, self.ranks)
        if stage_state is not None:
            stage.load_state_dict(stage_state)
        self.hooks.on_stage_start(plan.index + 1, len(cfg.cells), plan.cells, plan.ops, cfg.epochs)
        memory = PeakMemory(device).start()
        peak, peak_reserved = peaks
        for epoch in range(first_epoch, cfg.epochs):
            t0 = time.perf_counter()
            metrics = stage.train_epoch(epoch, images, train_idx, valid_idx, self.hooks)
            last_epoch = epoch == cfg.epochs - 1
            valid_acc = valid_loss = None
            if validates(cfg, epoch):
                valid_acc, valid_loss = stage.validate(images, valid_idx)
            cells = stage.cell_states()
            peak = max(peak, int(self.ranks.max_value(memory.peak())))
            peak_reserved = max(peak_reserved, int(self.ranks.max_value(memory.peak_reserved() or 0)))
            epoch_seconds = time.perf_counter() - t0
            elapsed += epoch_seconds
            row = EPOCH_ROW.make(
                stage=plan.index + 1,
                epoch=epoch,
                global_epoch=plan.index * cfg.epochs + epoch,
                **metrics,
                valid_acc=valid_acc,
                valid_loss=valid_loss,
                skip_connects_now=derive(cells["normal"], cells["reduce"]).skip_count(),
                skip_weight_now=skip_weight(cells["normal"]),
                epoch_seconds=epoch_seconds,
                peak_memory_bytes=peak,
            )
            summary, next_switches = None, None
            if last_epoch:
                summary, next_switches = self._end_of_stage(plan, cells, peak, peak_reserved, elapsed)
            position = {
                "stage": plan.index,
                "epoch": epoch,
                "stage_done": last_epoch,
                "stages": stages + ([summary] if summary else []),
            }
            if last_epoch:
                state = {**position, "switches": next_switches}
            else:
                state = {
                    **position,
                    "switches": switches,
                    "stage_state": stage.state_dict(),
                    "elapsed": elapsed,
                    "peak": peak,
                    "peak_reserved": peak_reserved,
                }
            if self.ranks.active:  # every rank's random streams, so that each continues its own
                state["rng_ranks"] = self.ranks.gather(None if last_epoch else stage.rng_state())
                state["workers"], state["sync_bn"] = self.ranks.world, self.ranks.sync_bn
            checkpoint = None
            if self.ranks.leader:
                self.folder.append_metrics(row)
                self.folder.append_trajectory(
                    {
                        "stage": plan.index + 1,
                        "epoch": epoch,
                        "normal": cells["normal"].alphas,
                        "reduce": cells["reduce"].alphas,
                    },
                )
                checkpoint = self.checkpoints.save(state)
            self.hooks.on_epoch_end(row, checkpoint)
        memory.stop()
        if self.ranks.leader:
            self.folder.write_stages(stages + [summary], PRIMITIVES)
        self.hooks.on_stage_end(summary)
        return summary, next_switches

    def _end_of_stage(self, plan: StagePlan, cells: dict, peak: int, peak_reserved: int, elapsed: float):
        cfg = self.cfg
        unrefined = derive(cells["normal"], cells["reduce"])
        summary = {
            "stage": plan.index + 1,
            "cells": plan.cells,
            "ops_kept": plan.ops,
            "skip_dropout": plan.skip_dropout_rate,
            "normal": cells["normal"].to_dict(),
            "reduce": cells["reduce"].to_dict(),
            "genotype": derive(cells["normal"], cells["reduce"], cfg.skip_connects).to_dict(),
            "skip_connects_before_refinement": unrefined.skip_count(),
            "peak_memory_bytes": int(peak),
            "peak_memory_reserved_bytes": int(peak_reserved) or None,
            "seconds": elapsed,
        }
        if plan.last:
            return summary, None
        drop = plan.ops - cfg.ops_kept[plan.index + 1]
        next_switches = {
            name: prune_switches(cells[name].switches, cells[name].alphas, drop, last_stage=False)
            for name in ("normal", "reduce")
        }
        return summary, next_switches

    def _finish(self, stages: list[dict], device: torch.device) -> dict:
        cfg = self.cfg
        if not self.ranks.leader:  # rank 0 writes the result; the others only end with it
            self.hooks.on_search_end({})
            return {}
        last = stages[-1]
        normal = CellState.from_dict(last["normal"], "normal")
        reduce = CellState.from_dict(last["reduce"], "reduce")
        by_m = derive_all_m(normal, reduce)
        final = by_m[str(cfg.skip_connects)]
        self.folder.write_stages(stages, PRIMITIVES, {m: g.to_dict() for m, g in by_m.items()})
        self.folder.write_genotype(final.to_dict())
        metrics = self.folder.read_metrics()
        valid = [m["valid_acc"] for m in metrics if m.get("valid_acc") is not None]
        result = {
            "genotype": final.to_dict(),
            "skip_connects": cfg.skip_connects,
            "skip_connects_before_refinement": derive(normal, reduce).skip_count(),
            "peak_memory_bytes": [s["peak_memory_bytes"] for s in stages],
            "peak_memory_reserved_bytes": [s["peak_memory_reserved_bytes"] for s in stages],
            "peak_memory_kind": PeakMemory(device).kind,
            "stage_seconds": [s["seconds"] for s in stages],
            "stage_skip_connects_before_refinement": [s["skip_connects_before_refinement"] for s in stages],
            "best_valid_acc": max(valid) if valid else None,
            "final_valid_acc": valid[-1] if valid else None,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "workers": self.ranks.world,
            "sync_bn": self.ranks.sync_bn,
            "step_path": step_path(cfg, device, self.ranks),
            "versions": {
                "pdarts_ray": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        self.folder.write_result(result)
        self.hooks.on_search_end(result)
        return result

    # -- resume
    def _resume_point(self, ckpt: dict, plans: list[StagePlan]) -> dict:
        try:
            check_search_checkpoint(ckpt, len(plans), self.cfg.epochs)
        except ValueError as err:
            raise UserError(f"{self.checkpoints.folder}: {err}") from None
        stage, epoch, done = ckpt["stage"], ckpt["epoch"], ckpt["stage_done"]
        stages, switches = list(ckpt["stages"]), ckpt["switches"]
        keep = lambda r: (r.get("stage", 0) - 1, r.get("epoch", 0)) <= (stage, epoch)  # noqa: E731
        if self.ranks.leader:
            self.folder.keep_epochs(keep)
        if done:
            return {
                "stage": stage + 1,
                "epoch": 0,
                "stages": stages,
                "switches": switches,
                "stage_state": None,
                "elapsed": 0.0,
                "peak": 0,
                "peak_reserved": 0,
            }
        stage_state = ckpt["stage_state"]
        if self.ranks.active:  # this rank's own random streams
            stage_state = {**stage_state, "rng": ckpt["rng_ranks"][self.ranks.rank]}
        return {
            "stage": stage,
            "epoch": epoch + 1,
            "stages": stages,
            "switches": switches,
            "stage_state": stage_state,
            "elapsed": float(ckpt["elapsed"]),
            "peak": int(ckpt["peak"]),
            "peak_reserved": int(ckpt["peak_reserved"]),
        }

    def _forget_unsaved_epochs(self) -> None:
        if self.ranks.leader:
            self.folder.keep_epochs(lambda row: False)

    def _load_checkpoint(self, plans: list[StagePlan]) -> dict:
        """The newest checkpoint that is a whole search checkpoint of this run; one that is
        not (unreadable, or with parts missing or wrong) falls back to the one before."""
        return self.checkpoints.load(
            validate=lambda c: check_search_checkpoint(c, len(plans), self.cfg.epochs)
        )


def check_same_workers(ckpt: dict, workers: int, sync_bn: bool, where) -> None:
    """A search continues with the data parallelism it started with (its random streams are per rank)."""
    ran = int(ckpt.get("workers", 1)), bool(ckpt.get("sync_bn", False))
    if ran != (workers, sync_bn and workers > 1):
        how = lambda n, s: f"{n} worker{'s' if n > 1 else ''}{' with sync_bn' if s else ''}"  # noqa: E731
        raise UserError(
            f"{where}: the search ran with {how(*ran)}; resume it with the same "
            f"(--workers {ran[0]}{'' if ran[1] or ran[0] == 1 else ' --no-sync-bn'}), not "
            f"{how(workers, sync_bn and workers > 1)}"
        )


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_search_checkpoint(ckpt, num_stages: int, epochs: int) -> None:
    """Raise ValueError unless `ckpt` holds everything a resume reads, of the right kinds."""
    if not isinstance(ckpt, dict):
        raise ValueError("checkpoint is not a search checkpoint")
    for key, kind in (
        ("stage", _is_int),
        ("epoch", _is_int),
        ("stage_done", lambda v: isinstance(v, bool)),
        ("stages", lambda v: isinstance(v, list) and all(isinstance(s, dict) for s in v)),
        ("switches", lambda v: v is None or isinstance(v, dict)),
    ):
        if key not in ckpt or not kind(ckpt[key]):
            raise ValueError(f"checkpoint is not a search checkpoint ({key} missing or wrong)")
    if not 0 <= ckpt["stage"] < num_stages or not 0 <= ckpt["epoch"] < epochs:
        raise ValueError(
            f"checkpoint does not match {CONFIG_FILE} (stage {ckpt['stage']}, epoch {ckpt['epoch']})"
        )
    if len(ckpt["stages"]) != ckpt["stage"] + (1 if ckpt["stage_done"] else 0):
        raise ValueError("checkpoint is not a search checkpoint (stages do not match its position)")
    # the last stage's end leaves no switches to prune (None): the search only ends
    last_stage_done = ckpt["stage_done"] and ckpt["stage"] == num_stages - 1
    if not last_stage_done:
        if ckpt["switches"] is None:
            raise ValueError("checkpoint is not a search checkpoint (switches missing or wrong)")
        for cell in ("normal", "reduce"):
            check_switches(ckpt["switches"].get(cell), f"checkpoint switches.{cell}")
    if ckpt["stage_done"]:
        return
    state = ckpt.get("stage_state")
    if not isinstance(state, dict) or any(
        not isinstance(state.get(k), dict) for k in ("model", "opt_w", "opt_a", "rng")
    ):
        raise ValueError("checkpoint is not a search checkpoint (stage_state missing or wrong)")
    for key in ("elapsed", "peak", "peak_reserved"):
        if isinstance(ckpt.get(key), bool) or not isinstance(ckpt.get(key), (int, float)):
            raise ValueError(f"checkpoint is not a search checkpoint ({key} missing or wrong)")


def load_search_data(cfg: SearchConfig) -> ImageData:
    return load_dataset(
        cfg.dataset, cfg.data_root, cfg.image_size, cfg.download, cfg.synthetic_size, cfg.synthetic_classes
    )


def check_out_dir(run_dir: Path) -> None:
    """A new run folder: missing or empty (a driver's claim aside)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(p.name != CLAIM_FILE for p in run_dir.iterdir())):
        raise UserError(f"{run_dir}: output folder exists and is not empty (choose another --out)")


def run_search(
    cfg: SearchConfig, run_dir: Path, hooks: SearchHooks | None = None, take_over: bool = False
) -> dict:
    """A new search in `run_dir`, which it claims for its duration (one driver per run folder).
    Bad input (folder, device, data) fails before anything is written."""
    check_out_dir(run_dir)
    resolve_device(cfg.device)
    data = load_search_data(cfg)
    with claim_folder(run_dir, "pdarts-ray search", take_over):
        return ProgressiveSearch.create(cfg, run_dir, hooks).run(data=data)


def resume_search(run_dir: Path, hooks: SearchHooks | None = None, take_over: bool = False) -> dict:
    search = ProgressiveSearch.open(run_dir, hooks)
    with claim_folder(run_dir, "pdarts-ray search --resume", take_over):
        return search.run(resume=True)
