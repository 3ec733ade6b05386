"""Published genotypes by name (published.py lists them with their sources), and
`load_genotype` for a name or a genotype file.

PDARTS is the cell the paper searched on CIFAR-10 (Figure 3, Tables 1 and 2); DARTS_V2
is DARTS' second-order cell, kept as a calibration point.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError
from ..core.space import MAX_GENOTYPE_TEXT, Genotype
from .published import PUBLISHED_CELLS, canonical_name

PUBLISHED: dict[str, Genotype] = {name: cell.genotype for name, cell in PUBLISHED_CELLS.items()}
PDARTS = PUBLISHED["PDARTS"]
DARTS_V2 = PUBLISHED["DARTS_V2"]


def load_genotype(name_or_path: str) -> tuple[str, Genotype]:
    """(a display name, the genotype) for a published name or a file.

    A file holds JSON (a genotype object, or any object with a "genotype" key such as a
    run's result.json) or the official code's `Genotype(normal=[...], ...)` text, parsed
    as data. A folder stands for its genotype.json (a search run folder).
    """
    key = name_or_path.strip()
    name = canonical_name(key)
    if name is not None and not Path(key).expanduser().exists():
        return name, PUBLISHED[name]
    path = Path(key).expanduser()
    if path.is_dir():
        path = path / "genotype.json"
        if not path.is_file():
            raise UserError(f"{name_or_path}: a folder without genotype.json")
    elif not path.exists():
        raise UserError(f"unknown genotype '{name_or_path}' (a published name: {', '.join(PUBLISHED)}; "
                        f"or a genotype file)")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_GENOTYPE_TEXT + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: cannot read genotype file ({getattr(err, 'strerror', None) or err})") from None
    if len(raw) > MAX_GENOTYPE_TEXT:
        raise UserError(f"{path}: more than {MAX_GENOTYPE_TEXT} bytes; not a genotype file")
    try:
        return str(path), _parse(text)
    except (ValueError, TypeError) as err:
        raise UserError(f"{path}: {str(err).splitlines()[0]}") from None


def _parse(text: str) -> Genotype:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as err:
            raise ValueError(f"genotype: invalid JSON ({err.msg} at line {err.lineno})") from None
        if isinstance(data, dict) and "normal" not in data and isinstance(data.get("genotype"), dict):
            data = data["genotype"]
        return Genotype.from_dict(data)
    return Genotype.parse(stripped)
