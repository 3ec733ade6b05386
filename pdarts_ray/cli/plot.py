"""The `plot genotype` and `plot run` commands (registered through cli.COMMAND_MODULES).

Both take several arguments (a shell glob of run folders). Each is drawn on its own: a bad
one is one `error:` line on stderr naming it, the others are still drawn, and the exit code
is then 2. File names derive from each argument (a run folder's name, a file's stem, a
published name) and take parent folders' names where two arguments' would be equal, so
that no argument's pictures replace another's.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..core.errors import UserError
from .common import add_common_flags, emit

_STEM = re.compile(r"[A-Za-z0-9_.-]+")


def _clean(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", part).strip("-.")


def _sources(args: list[str], published: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(argument, the names its stem is made of, innermost last) for each distinct argument:
    a published genotype's lower-cased name; else the path's folders and its own stem."""
    from ..evaluation.published import canonical_name

    seen, out = set(), []
    for arg in args:
        name = canonical_name(arg.strip()) if published else None
        path = Path(arg.strip()).expanduser()
        if name is not None and not path.exists():
            key, parts = name, (name.lower(),)
        else:
            path = Path(os.path.abspath(path))  # `.` and `..` named, symlinks kept as given
            key, parts = str(path), (*path.parent.parts[1:], path.stem if path.is_file() else path.name)
        if key not in seen:  # the same genotype or run given twice is drawn once
            seen.add(key)
            out.append((arg, tuple(p for p in map(_clean, parts) if p)))
    return out


def unique_stems(parts: list[tuple[str, ...]], fallback: str) -> list[str]:
    """The shortest tail of each argument's names that no other argument shares (a/run and
    b/run: a-run, b-run); numbered where even whole paths are equal once cleaned."""
    depth = [1] * len(parts)
    while True:
        stems = ["-".join(p[-d:]) or fallback for p, d in zip(parts, depth)]
        longer = [i for i, s in enumerate(stems) if stems.count(s) > 1 and depth[i] < len(parts[i])]
        if not longer:
            break
        for i in longer:
            depth[i] += 1
    taken, out = set(stems), []
    for i, stem in enumerate(stems):
        n, unique = 1, stem
        while stem in stems[:i] and unique in taken:
            n += 1
            unique = f"{stem}-{n}"
        taken.add(unique)
        out.append(unique)
    return out


def _draw_each(args, jobs, draw) -> int:
    """Draw every (argument, stem); a failing one is reported and the rest still drawn."""
    written, failed = [], 0
    for arg, stem in jobs:
        try:
            written += draw(arg, stem)
        except UserError as err:
            failed += 1
            message = str(err)
            named = arg.strip().rstrip("/") in message
            print(f"error: {message if named else f'{arg}: {message}'}", file=sys.stderr)
    if written or not failed:
        emit(args, [str(p) for p in written], "\n".join(map(str, written)) or None)
    return 2 if failed else 0


def cmd_plot_genotype(args) -> int:
    from ..evaluation.genotypes import PUBLISHED, load_genotype
    from ..plots import plot_genotype
    from ..plots.style import prepare_dir

    sources = _sources(args.genotype, published=True)
    if args.stem is not None:
        if len(sources) > 1:
            raise UserError("--stem: only with one GENOTYPE (several are named after themselves)")
        if not _STEM.fullmatch(args.stem):
            raise UserError(f"--stem: only letters, digits, '_', '-' and '.' are allowed, got '{args.stem}'")
    stems = [args.stem] if args.stem else unique_stems([parts for _, parts in sources], "genotype")
    out = prepare_dir(Path(args.out))

    def draw(arg: str, stem: str) -> list[Path]:
        name, genotype = load_genotype(arg)
        folder = Path(os.path.abspath(Path(arg.strip()).expanduser()))
        # a run folder's pictures carry the run's name, not that of its genotype.json
        title = name if name in PUBLISHED else folder.name if folder.is_dir() else Path(name).name
        return plot_genotype(genotype, out, stem, name=title)

    return _draw_each(args, zip([a for a, _ in sources], stems), draw)


def cmd_plot_run(args) -> int:
    from ..evaluation.genotypes import unfinished_search
    from ..plots import plot_run
    from ..plots.style import prepare_dir

    sources = _sources(args.run_dir, published=False)
    out = prepare_dir(Path(args.out)) if args.out else None
    # in a shared --out folder each run's files carry its name; in RUN_DIR/plots they need not
    stems = unique_stems([parts for _, parts in sources], "run") if out else [""] * len(sources)

    def draw(arg: str, stem: str) -> list[Path]:
        paths = plot_run(Path(arg), out or Path(arg) / "plots", prefix=stem)
        state = unfinished_search(Path(arg))
        if state and not args.quiet:
            print(f"note: {arg}: {state}", file=sys.stderr)
        return paths

    return _draw_each(args, zip([a for a, _ in sources], stems), draw)


def _usage(parser) -> int:
    parser.print_help()
    return 2


def register(sub, groups) -> None:
    plot = sub.add_parser("plot", help="draw genotypes and search runs (PNG and SVG)")
    psub = plot.add_subparsers(dest="plot_command", metavar="COMMAND", parser_class=type(plot))
    groups["plot"] = psub
    plot.set_defaults(func=lambda args: _usage(plot))

    p = psub.add_parser(
        "genotype",
        help="draw the normal and reduction cells of genotypes",
        description="Draw both cells of each GENOTYPE as graphs: inputs c_{k-2} and c_{k-1}, "
        "intermediate nodes "
        "0..3, output c_{k}; every edge labelled with its op. "
        "Writes <stem>-normal and "
        "<stem>-reduce, each as .png and .svg; the stem is a run folder's name, a file's stem or a "
        "published name, lengthened by parent folders where two GENOTYPEs would share it. A bad "
        "GENOTYPE is one error line; the others are still drawn (exit code 2).",
    )
    p.add_argument(
        "genotype",
        metavar="GENOTYPE",
        nargs="+",
        help="a published cell by name (pdarts-ray genotype list), a genotype file, or a search run folder",
    )
    p.add_argument(
        "--out", metavar="DIR", default=".", help="folder for the pictures (default: the current one)"
    )
    p.add_argument(
        "--stem",
        help="file-name stem, with one GENOTYPE (default: the run folder's name, the published "
        "name lower-cased, e.g. pdarts, or the file's stem)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_plot_genotype)

    p = psub.add_parser(
        "run",
        help="draw search runs: alphas, skip-connects, skip dropout, memory",
        description="Draw search run folders, finished or still running: architecture weights per edge over "
        "the epochs of all stages (alphas-normal, alphas-reduce), the derived normal cell's "
        "skip-connect count and the skip-dropout rate (skip-connects), and peak memory per stage "
        "(memory); each as .png and .svg. A bad RUN_DIR is one error line; the others are still "
        "drawn (exit code 2).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", nargs="+", help="a search run folder")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="one folder for every run's pictures, named "
        "<run-name>-alphas-normal.png, ... (default: each RUN_DIR/plots, "
        "named alphas-normal.png, ...)",
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_plot_run)
