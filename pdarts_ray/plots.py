"""Pictures of genotypes and search runs, and grouped bar charts (PNG and SVG).

Everything renders headless (the Agg backend is selected before pyplot is imported),
so plots work on machines without a display. Files are only ever written over files
that are themselves pictures: a target that exists and is not a PNG or SVG is refused.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402

from .errors import UserError  # noqa: E402
from .space import NUM_EDGES, NUM_OPS, PRIMITIVES, STEPS, Genotype, edge_input, node_edges  # noqa: E402

FORMATS = ("png", "svg")
DPI = 150

# One colour per primitive, shared by the cell pictures and the alpha trajectories, so
# an op reads the same everywhere; skip_connect gets the loudest one.
OP_COLOURS: dict[str, str] = {
    "none": "#9a9a9a",
    "max_pool_3x3": "#1f77b4",
    "avg_pool_3x3": "#17becf",
    "skip_connect": "#d62728",
    "sep_conv_3x3": "#2ca02c",
    "sep_conv_5x5": "#8c564b",
    "dil_conv_3x3": "#9467bd",
    "dil_conv_5x5": "#ff7f0e",
}
_OTHER_COLOUR = "#333333"

INPUT_LABELS = ("c_{k-2}", "c_{k-1}")
OUTPUT_LABEL = "c_{k}"


def op_colour(op: str) -> str:
    return OP_COLOURS.get(op, _OTHER_COLOUR)


def state_label(j: int) -> str:
    """The label of state j of a cell: c_{k-2}, c_{k-1}, then the intermediate nodes 0, 1, ..."""
    return INPUT_LABELS[j] if j < 2 else str(j - 2)


def _tex(label: str) -> str:
    return f"${label}$" if label.startswith("c_") else label


# ---------------------------------------------------------------- files

def _targets(stem: Path) -> list[Path]:
    return [stem.parent / f"{stem.name}.{fmt}" for fmt in FORMATS]


def _is_picture(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if path.suffix == ".png":
        return head.startswith(b"\x89PNG\r\n\x1a\n")
    return b"<svg" in head


def check_targets(paths: Sequence[Path]) -> None:
    """Refuse before anything is drawn if a target exists and is not a picture."""
    for path in paths:
        if path.is_dir() or (path.exists() and not _is_picture(path)):
            raise UserError(f"{path}: exists and is not a picture; not overwriting it (choose another --out)")


def _prepare_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    return out_dir


def _save(fig, stem: Path) -> list[Path]:
    paths = _targets(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    try:
        for path in paths:
            # a fixed hash salt and no date keep a re-rendered SVG byte-identical
            metadata = {"Date": None} if path.suffix == ".svg" else {"Software": None}
            # SVG text stays text (not glyph outlines): searchable and editable
            with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pdarts-ray"}):
                fig.savefig(path, format=path.suffix[1:], dpi=DPI, metadata=metadata)
    finally:
        plt.close(fig)
    return paths


# ---------------------------------------------------------------- genotype

class Edge(NamedTuple):
    """A drawn edge of a cell: labels of both ends and the op (None for a concat edge)."""

    src: str
    dst: str
    op: str | None


def genotype_edges(genotype: Genotype, cell: str) -> list[Edge]:
    """The edges `plot_genotype` draws for `cell` ("normal" or "reduce"): the op edges in
    gene order, then one concat edge per concatenated state into c_{k}."""
    if cell not in ("normal", "reduce"):
        raise ValueError(f"cell must be 'normal' or 'reduce', got {cell!r}")
    genes = getattr(genotype, cell)
    edges = [Edge(state_label(j), state_label(2 + g // 2), op) for g, (op, j) in enumerate(genes)]
    edges += [Edge(state_label(i), OUTPUT_LABEL, None) for i in getattr(genotype, f"{cell}_concat")]
    return edges


def _layout(steps: int) -> dict[str, tuple[float, float]]:
    """Inputs on the left, one above the other; intermediate nodes zig-zag left to right
    so that the fan of edges out of each input passes between them; output on the right."""
    pos = {INPUT_LABELS[0]: (0.0, 3.0), INPUT_LABELS[1]: (0.0, -3.0)}
    for n in range(steps):
        pos[str(n)] = (3.5 + 3.5 * n, 1.2 if n % 2 == 0 else -1.2)
    pos[OUTPUT_LABEL] = (3.5 * steps + 2.5, 0.0)
    return pos


def _curvature(src: tuple[float, float], dst: tuple[float, float], pos: dict, radius: float) -> float:
    """The smallest arc bend (matplotlib's arc3 `rad`) that keeps an edge clear of every
    other node; straight when the straight line already is."""
    others = [p for p in pos.values() if p != src and p != dst]
    for rad in (0.0, 0.15, -0.15, 0.25, -0.25, 0.35, -0.35, 0.5, -0.5):
        curve = [_bezier(src, dst, rad, t / 40) for t in range(1, 40)]
        if all(math.dist(c, o) > 1.6 * radius for c in curve for o in others):
            return rad
    return 0.3


def _bezier(a, b, rad: float, t: float) -> tuple[float, float]:
    """A point of matplotlib's arc3 curve (a quadratic Bezier) in data coordinates;
    valid because the axes keep an equal aspect ratio."""
    (x1, y1), (x2, y2) = a, b
    cx, cy = (x1 + x2) / 2 + rad * (y2 - y1), (y1 + y2) / 2 - rad * (x2 - x1)
    u = 1 - t
    return (u * u * x1 + 2 * u * t * cx + t * t * x2, u * u * y1 + 2 * u * t * cy + t * t * y2)


def _overlaps(a, b, pad: float = 2.0) -> bool:
    return not (a.x1 + pad < b.x0 or b.x1 + pad < a.x0 or a.y1 + pad < b.y0 or b.y1 + pad < a.y0)


def _draw_cell(genotype: Genotype, cell: str, title: str):
    edges = genotype_edges(genotype, cell)
    pos = _layout(len(getattr(genotype, cell)) // 2)
    radius = 0.55
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    fig, ax = plt.subplots(figsize=(12, 6.2))
    ax.set_xlim(min(xs) - 0.8, max(xs) + 0.8)
    ax.set_ylim(min(ys) - 1.4, max(ys) + 1.0)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=13)

    styles = {INPUT_LABELS[0]: "#cfe3f7", INPUT_LABELS[1]: "#cfe3f7", OUTPUT_LABEL: "#fde2b8"}
    for label, (x, y) in pos.items():
        ax.add_patch(Circle((x, y), radius, facecolor=styles.get(label, "#eeeeee"), edgecolor="#444444",
                            linewidth=1.2, zorder=3))
        ax.text(x, y, _tex(label), ha="center", va="center", fontsize=12, zorder=4)

    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # arrows stop at the circles: their radius in points, valid as the aspect is equal
    radius_pt = (ax.transData.transform((radius, 0))[0] - ax.transData.transform((0, 0))[0]) * 72 / fig.dpi
    placed = [ax.transData.transform_bbox(
        matplotlib.transforms.Bbox.from_extents(x - radius, y - radius, x + radius, y + radius))
        for x, y in pos.values()]
    labelled = []
    for edge in edges:
        src, dst = pos[edge.src], pos[edge.dst]
        rad = _curvature(src, dst, pos, radius)
        concat = edge.op is None
        colour = "#b0b0b0" if concat else op_colour(edge.op)
        ax.add_patch(FancyArrowPatch(
            src, dst, connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>", mutation_scale=14,
            shrinkA=radius_pt, shrinkB=radius_pt + 1,
            color=colour, linewidth=1.1 if concat else 1.8, linestyle="--" if concat else "-", zorder=2))
        if not concat:
            labelled.append((edge, src, dst, rad, colour))
    # Labels go where they collide with nothing drawn so far, trying the middle of the
    # edge first; the nodes' circles count as drawn.
    for edge, src, dst, rad, colour in labelled:
        text = ax.text(0, 0, edge.op, ha="center", va="center", fontsize=10, color=colour, zorder=5,
                       bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": colour,
                             "linewidth": 0.6})
        best = None
        for t in (0.5, 0.4, 0.6, 0.3, 0.7, 0.45, 0.55, 0.35, 0.65, 0.25, 0.75, 0.2, 0.8):
            text.set_position(_bezier(src, dst, rad, t))
            box = text.get_window_extent(renderer)
            hits = sum(_overlaps(box, other) for other in placed)
            if best is None or hits < best[0]:
                best = (hits, t, box)
            if hits == 0:
                break
        text.set_position(_bezier(src, dst, rad, best[1]))
        placed.append(best[2])
    return fig


def plot_genotype(genotype: Genotype, out_dir: Path, stem: str = "genotype", name: str | None = None) -> list[Path]:
    """Draw the normal and the reduction cell as DAGs: `<stem>-normal` and `<stem>-reduce`,
    each as PNG and SVG. Returns the written paths."""
    out_dir = _prepare_dir(out_dir)
    stems = {cell: out_dir / f"{stem}-{cell}" for cell in ("normal", "reduce")}
    check_targets([p for s in stems.values() for p in _targets(s)])
    written = []
    for cell, cell_stem in stems.items():
        kind = "normal cell" if cell == "normal" else "reduction cell"
        title = f"{name}: {kind}" if name else kind
        written += _save(_draw_cell(genotype, cell, title), cell_stem)
    return written


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


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read {what} ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: {what} is not valid JSON ({err.msg} at line {err.lineno})") from None


def load_run(run_dir: Path) -> RunData:
    """Read a search run folder; an unfinished run's current-stage switches are rebuilt
    the way the search builds them (the first stage's from the config, later ones by
    pruning the previous stage's final alphas)."""
    from .checkpoint import read_jsonl
    from .config import SearchConfig, from_dict

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: not a folder")
    config_path = run_dir / "config.json"
    if not config_path.is_file() or not (run_dir / "alpha_trajectory.jsonl").is_file() and not (
            run_dir / "metrics.jsonl").is_file():
        raise UserError(f"{run_dir}: not a search run folder (no config.json and metrics.jsonl)")
    data = _read_json(config_path, "config")
    try:
        cfg = from_dict(SearchConfig, data, str(config_path))
    except UserError as err:
        raise UserError(f"{run_dir}: not a search run folder ({err})") from None
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    trajectory = read_jsonl(run_dir / "alpha_trajectory.jsonl")
    if not metrics and not trajectory:
        raise UserError(f"{run_dir}: the search has not finished an epoch yet; nothing to plot")
    alphas = _read_json(run_dir / "alphas.json", "alphas") if (run_dir / "alphas.json").is_file() else {}
    primitives = tuple(alphas.get("primitives", PRIMITIVES))
    result_path = run_dir / "result.json"
    result = _read_json(result_path, "result") if result_path.is_file() else None

    switches: dict[int, dict] = {}
    stages = sorted({int(r["stage"]) for r in trajectory})
    for stage in stages:
        saved = alphas.get(f"stage{stage}")
        if saved is not None:
            switches[stage] = {cell: saved[cell]["switches"] for cell in ("normal", "reduce")}
        elif stage == 1:
            from .search import initial_switches

            switches[stage] = initial_switches(cfg)
        else:
            switches[stage] = _pruned(alphas, stage, cfg, run_dir)
    run = RunData(run_dir, data, metrics, trajectory, switches, primitives, result)
    _check_trajectory(run)
    return run


def _pruned(alphas: dict, stage: int, cfg, run_dir: Path) -> dict:
    from .space import CellState, prune_switches

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
            if (not isinstance(values, list) or len(values) != NUM_EDGES
                    or any(len(v) != sum(sw) for v, sw in zip(values, mask))):
                raise UserError(f"{run.run_dir / 'alpha_trajectory.jsonl'}: stage {row['stage']} epoch "
                                f"{row['epoch']} {cell} alphas do not match the stage's ops")


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
                    ax.plot(xs, ys, color=op_colour(op), linewidth=1.4, marker="." if len(xs) < 12 else None,
                            markersize=4)
            _stage_decor(ax, run)
            ax.set_title(f"edge {edge}: ${state_label(edge_input(edge))}$ → {node}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.tick_params(labelsize=8)
            if col == 0:
                ax.set_ylabel(f"node {node}\nsoftmax(α)", fontsize=9)
            if node == STEPS - 1 or col >= node + 1:
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_xlabel("epoch (all stages)", fontsize=8)
    handles = [plt.Line2D([], [], color=op_colour(op), linewidth=2, label=op)
               for op in run.primitives if op in used_ops]
    # the legend fills the empty corner above the triangle of edge panels
    corner = axes[0][STEPS]
    corner.set_visible(True)
    corner.axis("off")
    corner.legend(handles=handles, loc="center", ncol=2, fontsize=10, frameon=False, title="op")
    kind = "normal cell" if cell == "normal" else "reduction cell"
    fig.suptitle(f"{_run_name(run)}: {kind} architecture weights per edge "
                 f"(dotted: stage boundary, shaded: warm-up)", fontsize=12)
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
        top.axhline(limit, color="#555555", linestyle="--", linewidth=1, label=f"M = {limit} (after refinement)")
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
    ax.set_title(f"{_run_name(run)}: peak memory per stage\n{_MEMORY_KINDS.get(kind, kind)}"
                 + (f"  ({detail})" if detail else ""), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


RUN_FIGURES = ("alphas-normal", "alphas-reduce", "skip-connects", "memory")


def plot_run(run_dir: Path, out_dir: Path) -> list[Path]:
    """Draw a search run (finished or not): the alpha trajectories of both cell types,
    the skip-connect count and skip-dropout rate over epochs, and peak memory per stage."""
    run = load_run(Path(run_dir))
    out_dir = _prepare_dir(out_dir)
    stems = {name: out_dir / name for name in RUN_FIGURES}
    check_targets([p for s in stems.values() for p in _targets(s)])
    written = []
    if run.trajectory:
        written += _save(_plot_alphas(run, "normal"), stems["alphas-normal"])
        written += _save(_plot_alphas(run, "reduce"), stems["alphas-reduce"])
    if run.metrics:
        written += _save(_plot_skips(run), stems["skip-connects"])
        if stage_memory(run)[0]:
            written += _save(_plot_memory(run), stems["memory"])
    return written


# ---------------------------------------------------------------- bars

_PAPER_COLOURS = ("#8c8c8c", "#b8b8b8", "#5e5e5e")
_OUR_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def series_colours(names: list[str]) -> list[str]:
    """The paper's series (named "paper ...") in greys and ours in colours, each in order,
    so every bar says at a glance whose number it is."""
    paper = [n for n in names if n.startswith("paper")]
    ours = [n for n in names if not n.startswith("paper")]
    colour = {n: _PAPER_COLOURS[i % len(_PAPER_COLOURS)] for i, n in enumerate(paper)}
    colour.update({n: _OUR_COLOURS[i % len(_OUR_COLOURS)] for i, n in enumerate(ours)})
    return [colour[n] for n in names]


def plot_bars(title: str, groups: list[str], series: dict[str, list[float | None]], ylabel: str,
              out_stem: Path, note: str | None = None) -> list[Path]:
    """Grouped bars, one group per entry of `groups` and one bar per series (e.g. "paper"
    and "ours"); a None value leaves its bar out. Writes `<out_stem>.png` and `.svg`."""
    if not groups or not series:
        raise ValueError("plot_bars: need at least one group and one series")
    for name, values in series.items():
        if len(values) != len(groups):
            raise ValueError(f"plot_bars: series {name!r} has {len(values)} values for {len(groups)} groups")
    out_stem = Path(out_stem)
    check_targets(_targets(out_stem))
    n = len(series)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(5.5, 1.1 * len(groups) * max(n, 2) * 0.6 + 2), 4.8))
    top = bottom = 0.0
    colours = series_colours(list(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        kept = [(x, float(v)) for x, v in zip(xs, values) if v is not None and math.isfinite(float(v))]
        if not kept:
            ax.bar([], [], width, label=name, color=colours[i])
            continue
        bx, by = zip(*kept)
        bars = ax.bar(bx, by, width, label=name, color=colours[i])
        ax.bar_label(bars, labels=[f"{v:.4g}" for v in by], fontsize=8, padding=2)
        top, bottom = max(top, *by), min(bottom, *by)
    ax.set_xticks(range(len(groups)), groups, fontsize=9)
    ax.set_ylabel(ylabel)
    if top == bottom == 0.0:
        top = 1.0
    span = top - bottom
    ax.set_ylim(bottom - 0.12 * span if bottom < 0 else 0.0, top + 0.12 * span if top > 0 else 0.0)
    ax.axhline(0, color="#333333", linewidth=0.8)
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="#444444", ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    return _save(fig, out_stem)
