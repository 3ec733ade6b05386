"""The package's import graph, read from the code, and its picture.

    python docs/package_graph.py            # writes docs/package-graph.png

`import_graph()` is what tests/test_architecture.py checks: every import statement of
every module (module level or inside a function), as edges between modules.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pdarts_ray"
LAYERS = ("core", "evaluation", "plots", "results", "experiments", "distributed", "api", "cli")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of the package."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: set[str]) -> tuple[set[str], set[str]]:
    """(modules of the package it imports, top-level names of other distributions it imports)."""
    inside, outside = set(), set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != module:
                    inside.add(target)
            else:
                outside.add(target.split(".")[0])
    return inside, outside


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    found = modules(root)
    return {m: imports_of(m, p, set(found))[0] for m, p in found.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_graph(graph: dict[str, set[str]]) -> dict[tuple[str, str], int]:
    """Imports between layers, counted."""
    edges: dict[tuple[str, str], int] = {}
    for src, targets in graph.items():
        for dst in targets:
            a, b = layer(src), layer(dst)
            if a != b:
                edges[(a, b)] = edges.get((a, b), 0) + 1
    return edges


def draw(out: Path) -> Path:
    """The layers as a column of boxes, bottom up, each with its modules and line count; an
    arrow for every pair of layers with imports between them (width: how many)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    graph = import_graph()
    found = modules()
    lines = {name: len(path.read_text().splitlines()) for name, path in found.items()}
    height, gap, width = 1.3, 0.9, 6.0
    y = {name: i * (height + gap) for i, name in enumerate(LAYERS)}
    fig, ax = plt.subplots(figsize=(9, 11))
    for (a, b), n in sorted(layer_graph(graph).items()):
        if "top" in (a, b):
            continue
        distance = LAYERS.index(a) - LAYERS.index(b)
        if distance == 1:  # neighbours: straight down the middle
            start, end, rad = (0, y[a]), (0, y[b] + height), 0.0
        else:  # farther: an arc on the right, wider the farther it goes
            start, end, rad = (
                (width / 2, y[a] + height / 2),
                (width / 2, y[b] + height / 2),
                -0.12 - 0.05 * distance,
            )
        ax.add_patch(
            FancyArrowPatch(
                start,
                end,
                arrowstyle="-|>",
                mutation_scale=14,
                color="#777777",
                lw=0.6 + 0.12 * n,
                connectionstyle=f"arc3,rad={rad}",
            )
        )
    for name in LAYERS:
        members = sorted(m for m in graph if layer(m) == name)
        short = [
            m.split(".", 2)[2]
            if m.count(".") > 1
            else "__init__"
            if found[m].name == "__init__.py"
            else m.rsplit(".", 1)[1]
            for m in members
        ]
        ax.add_patch(
            FancyBboxPatch(
                (-width / 2, y[name]), width, height, boxstyle="round,pad=0.05", fc="#eef3fb", ec="#4c72b0"
            )
        )
        ax.text(
            0,
            y[name] + height - 0.25,
            f"{name}: {len(members)} modules, {sum(lines[m] for m in members)} lines",
            ha="center",
            va="center",
            fontsize=10,
            weight="bold",
        )
        wrapped, line = [], ""
        for word in ", ".join(short).split(" "):
            if len(line) + len(word) > 80:
                wrapped.append(line)
                line = ""
            line += word + " "
        wrapped.append(line)
        ax.text(
            0,
            y[name] + (height - 0.45) / 2,
            "\n".join(wrapped),
            ha="center",
            va="center",
            fontsize=6.5,
            color="#333333",
        )
    ax.set_xlim(-width / 2 - 0.5, width / 2 + 3.5)
    ax.set_ylim(-0.5, y[LAYERS[-1]] + height + 0.5)
    ax.axis("off")
    ax.set_title(
        "pdarts_ray: layers and the imports between them (arrows point to what is imported;\n"
        "the wider the arrow, the more import statements)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


if __name__ == "__main__":
    print(draw(ROOT / "docs" / "package-graph.png"))
