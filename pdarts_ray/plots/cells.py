"""A genotype's cells as graphs: inputs c_{k-2} and c_{k-1} on the left, the intermediate
nodes, the output c_{k}; every edge labelled and coloured by its op.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

from matplotlib.patches import Circle, FancyArrowPatch
from matplotlib.transforms import Bbox

from ..core.space import Genotype
from .style import (
    INPUT_LABELS,
    OUTPUT_LABEL,
    check_targets,
    op_colour,
    plt,
    prepare_dir,
    save_figure,
    state_label,
    targets,
    tex,
)

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
        ax.add_patch(
            Circle(
                (x, y),
                radius,
                facecolor=styles.get(label, "#eeeeee"),
                edgecolor="#444444",
                linewidth=1.2,
                zorder=3,
            )
        )
        ax.text(x, y, tex(label), ha="center", va="center", fontsize=12, zorder=4)

    fig.tight_layout()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    # arrows stop at the circles: their radius in points, valid as the aspect is equal
    radius_pt = (ax.transData.transform((radius, 0))[0] - ax.transData.transform((0, 0))[0]) * 72 / fig.dpi
    placed = [
        ax.transData.transform_bbox(Bbox.from_extents(x - radius, y - radius, x + radius, y + radius))
        for x, y in pos.values()
    ]
    labelled = []
    for edge in edges:
        src, dst = pos[edge.src], pos[edge.dst]
        rad = _curvature(src, dst, pos, radius)
        concat = edge.op is None
        colour = "#b0b0b0" if concat else op_colour(edge.op)
        ax.add_patch(
            FancyArrowPatch(
                src,
                dst,
                connectionstyle=f"arc3,rad={rad}",
                arrowstyle="-|>",
                mutation_scale=14,
                shrinkA=radius_pt,
                shrinkB=radius_pt + 1,
                color=colour,
                linewidth=1.1 if concat else 1.8,
                linestyle="--" if concat else "-",
                zorder=2,
            )
        )
        if not concat:
            labelled.append((edge, src, dst, rad, colour))
    # Labels go where they collide with nothing drawn so far, trying the middle of the
    # edge first; the nodes' circles count as drawn.
    for edge, src, dst, rad, colour in labelled:
        text = ax.text(
            0,
            0,
            edge.op,
            ha="center",
            va="center",
            fontsize=10,
            color=colour,
            zorder=5,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": colour, "linewidth": 0.6},
        )
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


def plot_genotype(
    genotype: Genotype, out_dir: Path, stem: str = "genotype", name: str | None = None
) -> list[Path]:
    """Draw the normal and the reduction cell as DAGs: `<stem>-normal` and `<stem>-reduce`,
    each as PNG and SVG. Returns the written paths."""
    out_dir = prepare_dir(out_dir)
    stems = {cell: out_dir / f"{stem}-{cell}" for cell in ("normal", "reduce")}
    check_targets([p for s in stems.values() for p in targets(s)])
    written = []
    for cell, cell_stem in stems.items():
        kind = "normal cell" if cell == "normal" else "reduction cell"
        title = f"{name}: {kind}" if name else kind
        written += save_figure(_draw_cell(genotype, cell, title), cell_stem)
    return written
