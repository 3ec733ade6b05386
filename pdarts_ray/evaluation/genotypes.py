"""Published genotypes by name (published.py lists them with their sources), and
`load_genotype` for a name, a genotype file or a search run folder (`unfinished_search`
says what a run folder without a genotype is doing).

PDARTS is the cell the paper searched on CIFAR-10 (Figure 3, Tables 1 and 2); DARTS_V2
is DARTS' second-order cell, kept as a calibration point.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from ..core.errors import UserError
from ..core.run_folder import GENOTYPE_FILE, RunFolder
from ..core.space import MAX_GENOTYPE_TEXT, Genotype
from .published import PUBLISHED_CELLS, canonical_name

PUBLISHED: dict[str, Genotype] = {name: cell.genotype for name, cell in PUBLISHED_CELLS.items()}
PDARTS = PUBLISHED["PDARTS"]
DARTS_V2 = PUBLISHED["DARTS_V2"]


def load_genotype(name_or_path: str) -> tuple[str, Genotype]:
    """(a display name, the genotype) for a published name or a file.

    A file holds JSON (a genotype object, or any object with a "genotype" key such as a
    run's result.json) or the official code's `Genotype(normal=[...], ...)` text, parsed
    as data. A folder stands for its genotype file (a search run folder, core/run_folder.py).
    """
    key = name_or_path.strip()
    name = canonical_name(key)
    if name is not None and not Path(key).expanduser().exists():
        return name, PUBLISHED[name]
    path = Path(key).expanduser()
    if path.is_dir():
        path = path / GENOTYPE_FILE
        if not path.is_file():
            state = unfinished_search(Path(key).expanduser())
            raise UserError(
                f"{name_or_path}: "
                + (f"no {GENOTYPE_FILE} yet: {state}" if state else f"a folder without {GENOTYPE_FILE}")
            )
    elif not path.exists():
        raise UserError(
            f"unknown genotype '{name_or_path}' (a published name: {', '.join(PUBLISHED)}; "
            f"or a genotype file)"
        )
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_GENOTYPE_TEXT + 1)
        text = raw.decode()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(
            f"{path}: cannot read genotype file ({getattr(err, 'strerror', None) or err})"
        ) from None
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


def unfinished_search(folder: Path) -> str | None:
    """What a search run folder without a result is doing, as a clause for a message: held
    by a live driver, or stopped (with the command that resumes it). None for a finished
    search and for any other folder."""
    from ..core.claim import CLAIM_FILE, Claim, LocalClaimFiles, describe

    run = RunFolder(folder)
    try:
        config = run.read_config()
    except UserError:
        return None
    if "ops_kept" not in config or run.finished:
        return None
    files = LocalClaimFiles(run / CLAIM_FILE)
    try:
        claim = files.read()
        holder = json.loads(claim[0]) if claim else None
    except (OSError, ValueError):
        holder = None
    # a claim whose lease lapsed or whose process is gone is a driver that was killed
    if isinstance(holder, dict) and Claim(files, "").stale_reason(holder) is None:
        return f"the search is still running: {describe(holder)}"
    resume = f"pdarts-ray search --resume {shlex.quote(str(folder))}"
    return f"the search stopped before it finished; resume it with: {resume}"
