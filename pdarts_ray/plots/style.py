"""What every picture shares: headless rendering (the Agg backend is selected before pyplot
is imported), the colour of each op, the labels of a cell's states, and writing a figure
as PNG and SVG. Files are only ever written over files that are themselves pictures: a
target that exists and is not a PNG or SVG is refused.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..core.checkpoint import write_bytes_atomic
from ..core.errors import UserError  # noqa: E402

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


def tex(label: str) -> str:
    return f"${label}$" if label.startswith("c_") else label


# ---------------------------------------------------------------- files


def targets(stem: Path) -> list[Path]:
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


def wrapped_title(title: str, width_inches: float, fontsize: float) -> str:
    """A title broken into lines that fit a figure this wide (about 0.55 of the font size
    per character), so a long one is not cut off at both edges."""
    import textwrap

    return textwrap.fill(title, max(20, int(width_inches * 72 / (0.55 * fontsize))))


def prepare_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    return out_dir


def render(fig) -> dict[str, bytes]:
    """The figure as the bytes of each format, closed afterwards."""
    out = {}
    try:
        for fmt in FORMATS:
            # a fixed hash salt and no date keep a re-rendered SVG byte-identical
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            buffer = io.BytesIO()
            # SVG text stays text (not glyph outlines): searchable and editable
            with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "pdarts-ray"}):
                fig.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
            out[fmt] = buffer.getvalue()
    finally:
        plt.close(fig)
    return out


def render_with_note(fig, note: str | None) -> dict[str, bytes]:
    """`render`, with an optional small note (e.g. "not comparable to the paper's") along
    the bottom edge, the axes laid out above it."""
    if note:
        fig.text(0.01, 0.01, note, fontsize=8, color="#444444", ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
    else:
        fig.tight_layout()
    return render(fig)


def write_pictures(pictures: dict[str, bytes], stem: Path) -> list[Path]:
    """Write rendered pictures as `<stem>.<format>`, each atomically (never half a file)."""
    paths = []
    for fmt, data in pictures.items():
        path = stem.parent / f"{stem.name}.{fmt}"
        write_bytes_atomic(path, data)
        paths.append(path)
    return paths


def save_figure(fig, stem: Path) -> list[Path]:
    """Render every format first, then write them: a failed render leaves the old files."""
    return write_pictures(render(fig), Path(stem))
