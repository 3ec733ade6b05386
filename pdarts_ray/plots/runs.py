"""A search run folder, finished or still running, in pictures: the alphas of every edge over
the epochs of all stages, the derived normal cell's skip-connect count with the skip-dropout
rate, and peak memory per stage.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import UserError
from ..core.run_folder import CONFIG_FILE, METRICS_FILE, TRAJECTORY_FILE, RunFolder
from ..core.space import NUM_EDGES, NUM_OPS, PRIMITIVES, STEPS, edge_input, node_edges
from .style import check_targets, op_colour, plt, prepare_dir, save_figure, state_label, targets

# ---------------------------------------------------------------- run


@dataclass
class RunData:
    """What a search run folder holds so far (a finished or an unfinished run)."""

    run_dir: Path
    config: dict
    metrics: list[dict]
    trajectory: list[dict]
    switches: dict[int, dict[str, list[list[bool]]]]  # stage -> cell -> 14x8 mask
    primitives: tuple[str, ...]
    result: dict | None

    @property
    def epochs(self) -> int:
        return int(self.config["epochs"])

    @property
    def stages(self) -> list[int]:
        return sorted({int(r["stage"]) for r in self.trajectory} | {int(m["stage"]) for m in self.metrics})

    def global_epoch(self, row: dict) -> int:
        return (int(row["stage"]) - 1) * self.epochs + int(row["epoch"])


def load_run(run_dir: Path) -> RunData:
    """Read a search run folder; an unfinished run's current-stage switches are rebuilt
    the way the search builds them (the first stage's from the config, later ones by
    pruning the previous stage's final alphas)."""
    from ..core.config import SearchConfig, from_dict
    from ..evaluation.genotypes import unfinished_search

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder")
    folder = RunFolder(run_dir)
    if not folder.started or not folder.has(TRAJECTORY_FILE) and not folder.has(METRICS_FILE):
        raise UserError(f"{run_dir}: not a search run folder (no {CONFIG_FILE} and {METRICS_FILE})")
    data = folder.read_config()
    try:
        cfg = from_dict(SearchConfig, data, str(folder / CONFIG_FILE))
    except UserError as err:
        raise UserError(f"{run_dir}: not a search run folder ({err})") from None
    metrics = folder.read_metrics()
    trajectory = folder.read_trajectory()
    if not metrics and not trajectory:
        state = unfinished_search(run_dir)
        raise UserError(
            f"{run_dir}: nothing to plot yet (no epoch has finished)" + (f"; {state}" if state else "")
        )
    alphas = folder.read_alphas()
    primitives = tuple(alphas.get("primitives", PRIMITIVES))
    result = folder.read_result() if folder.finished else None

    switches: dict[int, dict] = {}
    stages = sorted({int(r["stage"]) for r in trajectory})
    for stage in stages:
        saved = alphas.get(f"stage{stage}")
        if saved is not None:
            switches[stage] = {cell: saved[cell]["switches"] for cell in ("normal", "reduce")}
        elif stage == 1:
            from ..core.search import initial_switches

            switches[stage] = initial_switches(cfg)
        else:
            switches[stage] = _pruned(alphas, stage, cfg, run_dir)
    run = RunData(run_dir, data, metrics, trajectory, switches, primitives, result)
    _check_trajectory(run)
    return run


def _pruned(alphas: dict, stage: int, cfg, run_dir: Path) -> dict:
    from ..core.space import CellState, prune_switches

    before = alphas.get(f"stage{stage - 1}")
    if before is None:
        raise UserError(f"{run_dir}: alphas.json lacks stage{stage - 1}, so stage {stage}'s ops are unknown")
    drop = cfg.ops_kept[stage - 2] - cfg.ops_kept[stage - 1]
    out = {}
    for cell in ("normal", "reduce"):
        try:
            state = CellState.from_dict(before[cell], f"alphas.json stage{stage - 1}.{cell}")
        except ValueError as err:
            raise UserError(f"{run_dir}: {err}") from None
        out[cell] = prune_switches(state.switches, state.alphas, drop, last_stage=False)
    return out


def _check_trajectory(run: RunData) -> None:
    for row in run.trajectory:
        for cell in ("normal", "reduce"):
            mask = run.switches[int(row["stage"])][cell]
            values = row.get(cell)
            if (
                not isinstance(values, list)
                or len(values) != NUM_EDGES
                or any(len(v) != sum(sw) for v, sw in zip(values, mask))
            ):
                raise UserError(
                    f"{run.run_dir / 'alpha_trajectory.jsonl'}: stage {row['stage']} epoch "
                    f"{row['epoch']} {cell} alphas do not match the stage's ops"
                )


def _softmax(row: Sequence[float]) -> list[float]:
    top = max(row)
    exps = [math.exp(v - top) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def alpha_series(run: RunData, cell: str) -> dict[int, dict[str, list[tuple[int, float]]]]:
    """Per edge, per op: (global epoch, softmax weight) points, from the stage's kept ops.

    A stage's alpha columns are its switched-on ops in ascending primitive index, so the
    same column number means different ops in different stages."""
    series: dict[int, dict[str, list[tuple[int, float]]]] = {e: {} for e in range(NUM_EDGES)}
    for row in run.trajectory:
        mask = run.switches[int(row["stage"])][cell]
        x = run.global_epoch(row)
        for e, (values, sw) in enumerate(zip(row[cell], mask)):
            ops = [run.primitives[k] for k in range(NUM_OPS) if sw[k]]
            for op, p in zip(ops, _softmax(values)):
                series[e].setdefault(op, []).append((x, p))
    return series


def _split_by_gaps(points: list[tuple[int, float]], boundaries: set[int]):
    """Runs of points that do not cross a stage boundary (alphas restart every stage)."""
    runs, current = [], []
    for x, y in sorted(points):
        if current and x in boundaries:
            runs.append(current)
            current = []
        current.append((x, y))
    if current:
        runs.append(current)
    return runs


def _stage_decor(ax, run: RunData, shade_warmup: bool = True) -> None:
    warmup = int(run.config.get("warmup_epochs", 0))
    for stage in run.stages:
        start = (stage - 1) * run.epochs
        if stage > 1:
            ax.axvline(start - 0.5, color="#555555", linewidth=0.8, linestyle=":")
        if shade_warmup and warmup:
            ax.axvspan(start - 0.5, start + warmup - 0.5, color="#000000", alpha=0.05, linewidth=0)


def _plot_alphas(run: RunData, cell: str):
    series = alpha_series(run, cell)
    boundaries = {(s - 1) * run.epochs for s in run.stages}
    fig, axes = plt.subplots(STEPS, STEPS + 1, figsize=(16, 11), sharex=True, sharey=True)
    used_ops: list[str] = []
    for node in range(STEPS):
        for col in range(STEPS + 1):
            ax = axes[node][col]
            if col >= node + 2:
                ax.set_visible(False)
                continue
            edge = node_edges(node)[col]
            for op in run.primitives:
                points = series[edge].get(op)
                if not points:
                    continue
                if op not in used_ops:
                    used_ops.append(op)
                for segment in _split_by_gaps(points, boundaries):
                    xs, ys = zip(*segment)
                    ax.plot(
                        xs,
                        ys,
                        color=op_colour(op),
                        linewidth=1.4,
                        marker="." if len(xs) < 12 else None,
                        markersize=4,
                    )
            _stage_decor(ax, run)
            ax.set_title(f"edge {edge}: ${state_label(edge_input(edge))}$ → {node}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=8)
            if col == 0:
                ax.set_ylabel(f"node {node}\nsoftmax(α)", fontsize=9)
            if node == STEPS - 1 or col >= node + 1:
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_xlabel("epoch (all stages)", fontsize=8)
    handles = [
        plt.Line2D([], [], color=op_colour(op), linewidth=2, label=op)
        for op in run.primitives
        if op in used_ops
    ]
    # the legend fills the empty corner above the triangle of edge panels
    corner = axes[0][STEPS]
    corner.set_visible(True)
    corner.axis("off")
    corner.legend(handles=handles, loc="center", ncol=2, fontsize=10, frameon=False, title="op")
    kind = "normal cell" if cell == "normal" else "reduction cell"
    fig.suptitle(
        f"{_run_name(run)}: {kind} architecture weights per edge (dotted: stage boundary, shaded: warm-up)",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def _run_name(run: RunData) -> str:
    return run.run_dir.resolve().name


def _plot_skips(run: RunData):
    rows = sorted(run.metrics, key=run.global_epoch)
    xs = [run.global_epoch(m) for m in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    counts = [m.get("skip_connects_now") for m in rows]
    points = [(x, c) for x, c in zip(xs, counts) if c is not None]
    boundaries = {(s - 1) * run.epochs for s in run.stages}
    # lines break at stage boundaries: every stage starts from fresh alphas and its own rate
    for segment in _split_by_gaps(points, boundaries):
        top.plot(*zip(*segment), color=op_colour("skip_connect"), marker="o", markersize=4, linewidth=1.5)
    limit = run.config.get("skip_connects")
    if limit is not None:
        top.axhline(
            limit, color="#555555", linestyle="--", linewidth=1, label=f"M = {limit} (after refinement)"
        )
        top.legend(loc="upper left", fontsize=9, frameon=False)
    top.set_ylabel("skip-connects in the\nderived normal cell")
    top.set_ylim(-0.3, 8.3)
    top.yaxis.get_major_locator().set_params(integer=True)
    rates = [(x, m.get("skip_dropout")) for x, m in zip(xs, rows) if m.get("skip_dropout") is not None]
    for segment in _split_by_gaps(rates, boundaries):
        bottom.plot(*zip(*segment), color="#444444", marker="o", markersize=4, linewidth=1.5)
    bottom.set_ylabel("skip-connect dropout rate")
    bottom.set_xlabel("epoch (all stages)")
    bottom.set_ylim(-0.03, max([r for _, r in rates] + [0.1]) * 1.15)
    for ax in (top, bottom):
        _stage_decor(ax, run)
        ax.grid(True, alpha=0.3)
    _stage_ticks(top, run)
    top.set_title(f"{_run_name(run)}: skip-connects and skip-connect dropout", fontsize=12)
    fig.tight_layout()
    return fig


def _stage_ticks(ax, run: RunData) -> None:
    """Stage names above the plot, centred on each stage's epochs."""
    sec = ax.secondary_xaxis("top")
    sec.set_xticks([(s - 1) * run.epochs + (run.epochs - 1) / 2 for s in run.stages])
    sec.set_xticklabels([f"stage {s}" for s in run.stages], fontsize=9)
    sec.tick_params(length=0)


def stage_memory(run: RunData) -> tuple[list[float], list[str], str]:
    """Peak memory per stage in MiB, the stage labels, and what was measured."""
    if run.result and isinstance(run.result.get("peak_memory_bytes"), list):
        peaks = [float(b) for b in run.result["peak_memory_bytes"]]
        labels = [f"stage {s}" for s in range(1, len(peaks) + 1)]
        kind = run.result.get("peak_memory_kind", "")
    else:
        by_stage: dict[int, float] = {}
        finished = {int(m["stage"]) for m in run.metrics if int(m["epoch"]) == run.epochs - 1}
        for m in run.metrics:
            if m.get("peak_memory_bytes") is not None:
                stage = int(m["stage"])
                by_stage[stage] = max(by_stage.get(stage, 0.0), float(m["peak_memory_bytes"]))
        peaks = [by_stage[s] for s in sorted(by_stage)]
        labels = [f"stage {s}" + ("" if s in finished else "\n(so far)") for s in sorted(by_stage)]
        kind = ""
    return [p / 2**20 for p in peaks], labels, kind


_MEMORY_KINDS = {"cuda_max_allocated": "CUDA max allocated", "cpu_peak_rss": "peak resident set (CPU)"}


def _plot_memory(run: RunData):
    mib, labels, kind = stage_memory(run)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    bars = ax.bar(range(len(mib)), mib, color="#4c72b0", width=0.6)
    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in mib], fontsize=9, padding=2)
    ax.set_xticks(range(len(mib)), labels)
    ax.set_ylabel("peak memory (MiB)")
    ax.set_ylim(0, max(mib + [1.0]) * 1.15)
    cells = run.config.get("cells", [])
    ops = run.config.get("ops_kept", [])
    detail = ", ".join(f"{c} cells/{o} ops" for c, o in zip(cells, ops))
    ax.set_title(
        f"{_run_name(run)}: peak memory per stage\n{_MEMORY_KINDS.get(kind, kind)}"
        + (f"  ({detail})" if detail else ""),
        fontsize=10,
    )
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


RUN_FIGURES = ("alphas-normal", "alphas-reduce", "skip-connects", "memory")


def plot_run(run_dir: Path, out_dir: Path, prefix: str = "") -> list[Path]:
    """Draw a search run (finished or not): the alpha trajectories of both cell types,
    the skip-connect count and skip-dropout rate over epochs, and peak memory per stage.
    With `prefix`, the files are `<prefix>-alphas-normal.png`, ...: several runs' pictures
    side by side in one folder."""
    run = load_run(Path(run_dir))
    out_dir = prepare_dir(out_dir)
    stems = {name: out_dir / (f"{prefix}-{name}" if prefix else name) for name in RUN_FIGURES}
    check_targets([p for s in stems.values() for p in targets(s)])
    written = []
    if run.trajectory:
        written += save_figure(_plot_alphas(run, "normal"), stems["alphas-normal"])
        written += save_figure(_plot_alphas(run, "reduce"), stems["alphas-reduce"])
    if run.metrics:
        written += save_figure(_plot_skips(run), stems["skip-connects"])
        if stage_memory(run)[0]:
            written += save_figure(_plot_memory(run), stems["memory"])
    return written
