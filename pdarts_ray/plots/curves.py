"""A quantity over the epochs of a search, one thin line per run and a thick line for the
mean of each group of runs, with each stage's start marked: how a table's end-of-stage
figures were reached."""

from __future__ import annotations

import math

from .bars import series_colours
from .style import plt, render_with_note, wrapped_title


def mean_curve(runs: list[list[float | None]]) -> list[float | None]:
    """The mean over runs at each epoch, of the runs that have a value there."""
    length = max((len(r) for r in runs), default=0)
    out: list[float | None] = []
    for i in range(length):
        values = [float(r[i]) for r in runs if i < len(r) and r[i] is not None and math.isfinite(float(r[i]))]
        out.append(sum(values) / len(values) if values else None)
    return out


def _segments(values: list[float | None]) -> list[tuple[list[int], list[float]]]:
    """Runs of consecutive known values (x from 1), so a missing epoch breaks the line."""
    out, xs, ys = [], [], []
    for i, v in enumerate(values):
        if v is None or not math.isfinite(float(v)):
            if xs:
                out.append((xs, ys))
            xs, ys = [], []
            continue
        xs.append(i + 1)
        ys.append(float(v))
    if xs:
        out.append((xs, ys))
    return out


def curve_pictures(
    title: str,
    groups: dict[str, list[list[float | None]]],
    xlabel: str,
    ylabel: str,
    stage_starts: list[int],
    note: str | None = None,
) -> dict[str, bytes]:
    """One colour per group (e.g. a setting), a thin line per run in it (e.g. a seed) and a
    thick line for their mean; x is the epoch counted from 1 across stages, and a dashed
    line marks the first epoch of every stage after the first. Rendered (format -> bytes)."""
    if not groups or not any(groups.values()):
        raise ValueError("curve_pictures: need at least one run")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for colour, (name, runs) in zip(series_colours(list(groups)), groups.items()):
        for run in runs:
            for xs, ys in _segments(run):
                ax.plot(xs, ys, color=colour, linewidth=0.8, alpha=0.35)
        mean_segments = _segments(mean_curve(runs))
        for k, (xs, ys) in enumerate(mean_segments):
            ax.plot(
                xs, ys, color=colour, linewidth=2.2, label=f"{name} (mean of {len(runs)})" if k == 0 else None
            )
        if not mean_segments:
            ax.plot([], [], color=colour, linewidth=2.2, label=f"{name} (none yet)")
    for start in stage_starts[1:]:
        ax.axvline(start - 0.5, color="#555555", linewidth=0.8, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(wrapped_title(title, 7.5, 11), fontsize=11)
    ax.legend(fontsize=9, frameon=False)
    ax.grid(True, alpha=0.3)
    return render_with_note(fig, note)
