"""A computed table as Markdown, CSV, a rich table for the terminal, and files with its figure."""

from __future__ import annotations

from pathlib import Path

from ...core.errors import UserError
from .common import Rendered, Setup
from .effects import EFFECT_COLUMNS, EFFECTS_NOTE, record_cells

# ---------------------------------------------------------------- output


def to_markdown(r: Rendered) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def table(columns: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)] + [
            "| " + " | ".join(cell(c) for c in row) + " |" for row in rows
        ]

    lines = [f"# {r.title}", ""] + [f"{n}  " for n in r.notes] + [""] + table(r.columns, r.rows)
    if r.effects:
        lines += ["", "## Effects", "", EFFECTS_NOTE, ""] + table(
            EFFECT_COLUMNS, [e.cells() for e in r.effects]
        )
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


def rich_effects(records: list[dict]):
    """The effects' table of an outcome's records (ReproduceResult.effects)."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Effects", caption=EFFECTS_NOTE, caption_justify="left")
    for c in EFFECT_COLUMNS:
        table.add_column(c, overflow="fold")
    for record in records:
        table.add_row(*[Text(c) for c in record_cells(record)])
    return table


def write_outputs(r: Rendered, out: Path) -> list[str]:
    """`<table>.md`, `<table>.csv` and the figure (`<table>.png`, `<table>.svg`) in `out`, and
    where the table has one, its curves (`<table>-curves.png`, `.svg`). All are made before
    any is written, and each is replaced atomically: a failure leaves the old files."""
    from ...core.checkpoint import write_bytes_atomic
    from ...plots.bars import bar_pictures
    from ...plots.curves import curve_pictures
    from ...plots.style import check_targets, targets, write_pictures

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} exists and is not a folder")
    stems = [out / r.name] + ([out / f"{r.name}-curves"] if r.curves else [])
    for stem in stems:
        check_targets(targets(stem))
    texts = {f"{r.name}.md": to_markdown(r).encode(), f"{r.name}.csv": to_csv(r).encode()}
    note = r.notes[1] if len(r.notes) > 1 else None
    pictures = [bar_pictures(r.title, r.figure["groups"], r.figure["series"], r.figure["ylabel"], note)]
    if r.curves:
        c = r.curves
        pictures.append(
            curve_pictures(c["title"], c["groups"], c["xlabel"], c["ylabel"], c["stage_starts"], note)
        )
    files = []
    for name, data in texts.items():
        write_bytes_atomic(out / name, data)
        files.append(str(out / name))
    for stem, rendered in zip(stems, pictures):
        files += [str(p) for p in write_pictures(rendered, stem)]
    return files


def default_out(table: str, setup: Setup) -> Path:
    suffix = f"-{setup.dataset}" if setup.preset == "paper" and setup.dataset != "cifar10" else ""
    return Path("pdarts-reproduce") / f"{table}-{setup.preset}{suffix}"
