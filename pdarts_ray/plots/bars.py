"""Grouped bar charts of the paper's tables: the paper's series in greys, ours in colours."""

from __future__ import annotations

import math
from pathlib import Path

from .style import check_targets, plt, render_with_note, targets, wrapped_title, write_pictures

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


def plot_bars(
    title: str,
    groups: list[str],
    series: dict[str, list[float | None]],
    ylabel: str,
    out_stem: Path,
    note: str | None = None,
) -> list[Path]:
    """Grouped bars, one group per entry of `groups` and one bar per series (e.g. "paper"
    and "ours"); a None value leaves its bar out. Writes `<out_stem>.png` and `.svg`."""
    out_stem = Path(out_stem)
    check_targets(targets(out_stem))
    return write_pictures(bar_pictures(title, groups, series, ylabel, note), out_stem)


def bar_pictures(
    title: str, groups: list[str], series: dict[str, list[float | None]], ylabel: str, note: str | None = None
) -> dict[str, bytes]:
    """`plot_bars`' figure, rendered (format -> bytes) but not written."""
    if not groups or not series:
        raise ValueError("plot_bars: need at least one group and one series")
    for name, values in series.items():
        if len(values) != len(groups):
            raise ValueError(f"plot_bars: series {name!r} has {len(values)} values for {len(groups)} groups")
    n = len(series)
    width = 0.8 / n
    width_inches = max(5.5, 1.1 * len(groups) * max(n, 2) * 0.6 + 2)
    fig, ax = plt.subplots(figsize=(width_inches, 4.8))
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
    ax.set_title(wrapped_title(title, width_inches, 12), fontsize=12)
    ax.legend(fontsize=9, frameon=False)
    ax.grid(True, axis="y", alpha=0.3)
    return render_with_note(fig, note)
