"""`pdarts-ray genotype derive` and `genotype prune` (`genotype params` is evaluation's)."""

from __future__ import annotations

from ..core.errors import UserError
from .common import Parser, add_common_flags, emit, format_cell


def _read_state(path: str):
    from ..core.run_folder import read_json
    from ..core.space import PRIMITIVES, CellState

    data = read_json(path)
    if "primitives" in data and list(data["primitives"]) != list(PRIMITIVES):
        raise UserError(f"{path}: primitives differ from pdarts-ray's ({', '.join(PRIMITIVES)})")
    try:
        return CellState.from_dict(data.get("normal"), "normal"), CellState.from_dict(
            data.get("reduce"), "reduce"
        )
    except ValueError as err:
        raise UserError(f"{path}: {err}") from None


def cmd_genotype_derive(args) -> int:
    from ..core.space import derive

    normal, reduce = _read_state(args.state)
    if args.skip_connects is not None and not 0 <= args.skip_connects <= 8:
        raise UserError(f"--skip-connects: must be in 0..8, got {args.skip_connects}")
    genotype = derive(normal, reduce, args.skip_connects).to_dict()
    emit(
        args,
        genotype,
        f"normal: {format_cell(genotype['normal'])}\nreduce: {format_cell(genotype['reduce'])}",
    )
    return 0


def cmd_genotype_prune(args) -> int:
    from ..core.space import prune_switches

    normal, reduce = _read_state(args.state)
    out = {}
    for name, cell in (("normal", normal), ("reduce", reduce)):
        n_on = sum(cell.switches[0])
        if not 0 <= args.drop < n_on:
            raise UserError(
                f"--drop: {name} edges have {n_on} ops on; can drop 0..{n_on - 1}, got {args.drop}"
            )
        out[f"switches_{name}"] = prune_switches(cell.switches, cell.alphas, args.drop, args.last_stage)
    text = "\n".join(
        f"{k}:\n" + "\n".join("  " + "".join("x" if v else "." for v in row) for row in rows)
        for k, rows in out.items()
    )
    emit(args, out, text)
    return 0


def cmd_genotype_list(args) -> int:
    from ..evaluation.published import CELLS

    rows = [
        {
            "name": c.name,
            "method": c.method,
            "source": c.source,
            "params": c.params_authors_code,
            "published_error_pct": c.error_pct,
            "published_params_m": c.params_m,
            "reported_in": c.reported_in,
        }
        for c in CELLS
    ]
    text = "\n".join(
        f"{r['name']:<10} {r['params'] / 1e6:5.2f} M  {r['published_error_pct']:>12} %  {r['method']}"
        for r in rows
    )
    emit(args, rows, "name       params (C=36, 20 cells)  CIFAR-10 error as published\n" + text)
    return 0


def register(sub, groups) -> None:
    g = sub.add_parser("genotype", help="derive, prune and inspect genotypes")
    gsub = g.add_subparsers(dest="genotype_command", metavar="COMMAND", parser_class=Parser)
    p = gsub.add_parser("derive", help="the genotype of a final-stage state (switches + alphas)")
    p.add_argument("state", metavar="STATE.json")
    p.add_argument(
        "--skip-connects", type=int, metavar="M", help="refine the normal cell to at most M skip-connects"
    )
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_derive)
    p = gsub.add_parser("prune", help="drop the weakest ops of every edge (between stages)")
    p.add_argument("state", metavar="STATE.json")
    p.add_argument("--drop", type=int, required=True, metavar="N", help="ops to drop per edge")
    p.add_argument("--last-stage", action="store_true", help="`none` goes first and counts as a drop")
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_prune)
    p = gsub.add_parser("list", help="the published cells known by name, with their sources")
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_list)
    groups["genotype"] = gsub
