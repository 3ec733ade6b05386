"""The `plot genotype` and `plot run` commands (registered through cli.COMMAND_MODULES)."""
from __future__ import annotations

import re
from pathlib import Path

from ..core.errors import UserError
from .common import add_common_flags, emit


def _default_stem(name: str, published: bool) -> str:
    """A published genotype's name lower-cased (pdarts); a file's own stem (genotype)."""
    stem = name.lower() if published else Path(name).stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "genotype"


def cmd_plot_genotype(args) -> int:
    from ..evaluation.genotypes import PUBLISHED, load_genotype
    from ..plots import plot_genotype

    name, genotype = load_genotype(args.genotype)
    stem = args.stem or _default_stem(name, name in PUBLISHED)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", stem):
        raise UserError(f"--stem: only letters, digits, '_', '-' and '.' are allowed, got '{stem}'")
    title = name if name in PUBLISHED else Path(name).name
    paths = plot_genotype(genotype, Path(args.out), stem, name=title)
    emit(args, [str(p) for p in paths], "\n".join(map(str, paths)))
    return 0


def cmd_plot_run(args) -> int:
    from ..plots import plot_run

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / "plots"
    paths = plot_run(run_dir, out)
    emit(args, [str(p) for p in paths], "\n".join(map(str, paths)))
    return 0


def _usage(parser) -> int:
    parser.print_help()
    return 2


def register(sub, groups) -> None:
    plot = sub.add_parser("plot", help="draw genotypes and search runs (PNG and SVG)")
    psub = plot.add_subparsers(dest="plot_command", metavar="COMMAND", parser_class=type(plot))
    groups["plot"] = psub
    plot.set_defaults(func=lambda args: _usage(plot))

    p = psub.add_parser(
        "genotype", help="draw the normal and reduction cells of a genotype",
        description="Draw both cells as graphs: inputs c_{k-2} and c_{k-1}, intermediate nodes 0..3, output "
                    "c_{k}; every edge labelled with its op. Writes <stem>-normal and <stem>-reduce, "
                    "each as .png and .svg.")
    p.add_argument("genotype", metavar="GENOTYPE",
                   help="a published cell by name (pdarts-ray genotype list), a genotype file, or a search run folder")
    p.add_argument("--out", metavar="DIR", default=".", help="folder for the pictures (default: the current one)")
    p.add_argument("--stem", help="file-name stem (default: the genotype's name, e.g. pdarts, or the file's stem)")
    add_common_flags(p)
    p.set_defaults(func=cmd_plot_genotype)

    p = psub.add_parser(
        "run", help="draw a search run: alphas, skip-connects, skip dropout, memory",
        description="Draw a search run folder, finished or still running: architecture weights per edge over "
                    "the epochs of all stages (alphas-normal, alphas-reduce), the derived normal cell's "
                    "skip-connect count and the skip-dropout rate (skip-connects), and peak memory per stage "
                    "(memory); each as .png and .svg.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search run folder")
    p.add_argument("--out", metavar="DIR", help="folder for the pictures (default: RUN_DIR/plots)")
    add_common_flags(p)
    p.set_defaults(func=cmd_plot_run)
