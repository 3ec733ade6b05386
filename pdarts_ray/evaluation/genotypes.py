"""Published genotypes by name, and `load_genotype` for a name or a genotype file.

PDARTS is the cell the paper searched on CIFAR-10 (Figure 3, Tables 1 and 2); DARTS_V2
is DARTS' second-order cell, kept as a calibration point. Genes are (op, input index)
with input 0 = c_{k-2}, 1 = c_{k-1}, 2 + n = node n; both cells concatenate nodes 2..5.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..core.errors import UserError
from ..core.space import MAX_GENOTYPE_TEXT, Genotype

PDARTS = Genotype(
    normal=(("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)),
    reduce=(("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)),
)

DARTS_V2 = Genotype(
    normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
    reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
)

PUBLISHED: dict[str, Genotype] = {"PDARTS": PDARTS, "DARTS_V2": DARTS_V2}


def load_genotype(name_or_path: str) -> tuple[str, Genotype]:
    """(a display name, the genotype) for a published name or a file.

    A file holds JSON (a genotype object, or any object with a "genotype" key such as a
    run's result.json) or the official code's `Genotype(normal=[...], ...)` text, parsed
    as data. A folder stands for its genotype.json (a search run folder).
    """
    key = name_or_path.strip()
    for name, genotype in PUBLISHED.items():
        if key.upper() == name:
            return name, genotype
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
