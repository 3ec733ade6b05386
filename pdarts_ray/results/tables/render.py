"""A computed table as Markdown, CSV, a rich table for the terminal, and files with its figure.
"""
from __future__ import annotations

import os
from pathlib import Path

from .common import Rendered, Setup

# ---------------------------------------------------------------- output

def to_markdown(r: Rendered) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"# {r.title}", ""] + [f"{n}  " for n in r.notes] + [""]
    lines.append("| " + " | ".join(cell(c) for c in r.columns) + " |")
    lines.append("|" + "---|" * len(r.columns))
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in r.rows]
    if r.missing:
        lines += ["", "Missing (not run): " + "; ".join(r.missing)]
    return "\n".join(lines) + "\n"


def to_csv(r: Rendered) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(r.columns)
    writer.writerows(r.rows)
    return buf.getvalue()


def rich_table(r: Rendered):
    from rich.table import Table
    from rich.text import Text

    table = Table(title=r.title, caption="\n".join(r.notes), caption_justify="left")
    for c in r.columns:
        table.add_column(c, overflow="fold")
    for row in r.rows:
        table.add_row(*[Text(c) for c in row])
    return table


def write_outputs(r: Rendered, out: Path) -> list[str]:
    """`<table>.md`, `<table>.csv` and the figure (`<table>.png`, `<table>.svg`) in `out`."""
    from ...plots import plot_bars

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for suffix, text in (("md", to_markdown(r)), ("csv", to_csv(r))):
        path = out / f"{r.name}.{suffix}"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        files.append(str(path))
    note = r.notes[1] if len(r.notes) > 1 else None
    figures = plot_bars(r.title, r.figure["groups"], r.figure["series"], r.figure["ylabel"], out / r.name, note=note)
    return files + [str(p) for p in figures]


def default_out(table: str, setup: Setup) -> Path:
    suffix = f"-{setup.dataset}" if setup.preset == "paper" and setup.dataset != "cifar10" else ""
    return Path("pdarts-reproduce") / f"{table}-{setup.preset}{suffix}"
