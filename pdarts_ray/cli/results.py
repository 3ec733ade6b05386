"""The `results` commands: import a search run folder, list experiments, show one."""

from __future__ import annotations

import csv
import datetime as dt
import json
import sys

from .common import Parser, add_common_flags, emit, print_table

FORMATS = ("table", "csv", "markdown", "json")
_OP_SHORT = {
    "skip_connect": "skip",
    "sep_conv_3x3": "sep3",
    "sep_conv_5x5": "sep5",
    "dil_conv_3x3": "dil3",
    "dil_conv_5x5": "dil5",
    "max_pool_3x3": "max",
    "avg_pool_3x3": "avg",
}


# ---------------------------------------------------------------- formatting


def _plain(value):
    """A JSON-able value: timestamps as ISO 8601."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(_plain(value))
    return str(_plain(value))


def cell_summary(genotype_json: str | None, cell: str = "normal") -> str:
    """Op counts of a cell, strongest-looking first: `sep3x3 skipx2 dil5x2 avg`."""
    if not genotype_json:
        return "-"
    counts: dict[str, int] = {}
    for op, _ in json.loads(genotype_json)[cell]:
        counts[_OP_SHORT.get(op, op)] = counts.get(_OP_SHORT.get(op, op), 0) + 1
    return " ".join(f"{op}x{n}" if n > 1 else op for op, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _fmt(value, spec: str = "") -> str:
    if value is None:
        return "-"
    return format(value, spec) if spec else str(value)


def _per_stage(values, scale: float = 1.0, spec: str = ".0f") -> str:
    if not values:
        return "-"
    return "/".join("-" if v is None else format(v / scale, spec) for v in values)


def _differing(rows: list[dict], skip: tuple[str, ...] = ()) -> list[str]:
    """Config columns whose values differ between trials: what a sweep varied."""
    keys = [k for k in (rows[0] if rows else {}) if k.startswith("cfg_") and k[4:] not in skip]
    return [k for k in keys if len({json.dumps(r[k]) for r in rows}) > 1]


def _render(title: str, columns: list[str], rows: list[list[str]], fmt: str) -> None:
    if fmt == "markdown":
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        print(f"**{title}**\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for r in rows:
            print("| " + " | ".join(esc(c) for c in r) + " |")
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(title))
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        table.add_row(*(escape(c) for c in r))  # a value such as "[x]" is text, not markup
    print_table(table)


def _raw(rows: list[dict], fmt: str) -> None:
    """Every column, machine-readable."""
    if fmt == "json":
        print(json.dumps([{k: _plain(v) for k, v in r.items()} for r in rows], indent=1))
        return
    if not rows:
        return
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(list(rows[0]))
    for r in rows:
        writer.writerow([_cell(v) for v in r.values()])


# ---------------------------------------------------------------- commands


def cmd_results_import(args) -> int:
    from ..results import import_run, storage_root

    out = import_run(args.run_dir, storage_root(args.storage), args.name)
    emit(
        args,
        out,
        f"{'stored' if out['stored'] else 'already stored'}: {args.run_dir} as trial "
        f"{out['trial_id']} of {out['path']} ({out['epochs']} epochs)",
    )
    return 0


def cmd_results_list(args) -> int:
    from ..results import list_experiments, storage_root

    root = storage_root(args.storage)
    experiments = list_experiments(root)
    if args.json or args.quiet:
        emit(args, experiments)
        return 0
    if not experiments:
        print(f"no experiments in {root}")
        return 0
    _render(
        f"experiments in {root}",
        ["name", "trials", "finished", "failed", "last change (UTC)"],
        [
            [e["name"], str(e["trials"]), str(e["finished"]), str(e["failed"]), e["last_change"] or "-"]
            for e in experiments
        ],
        "table",
    )
    return 0


def cmd_results_show(args) -> int:
    from ..results import expand_m, locate, read_epochs, read_trials

    fmt = "json" if args.json else args.format
    folder = locate(args.experiment, args.storage)
    name = folder.rstrip("/").rsplit("/", 1)[-1]
    if args.epochs:
        rows = read_epochs(folder, skip_unreadable=True).to_pylist()
        if fmt in ("csv", "json"):
            _raw(rows, fmt)
            return 0
        columns = [
            "trial",
            "stage",
            "epoch",
            "train loss",
            "train acc",
            "valid acc",
            "skip dropout",
            "lr",
            "skips now",
            "seconds",
            "peak MiB",
        ]
        table = [
            [
                r["trial_id"],
                str(r["stage"]),
                str(r["epoch"]),
                _fmt(r["train_loss"], ".4f"),
                _fmt(r["train_acc"], ".3f"),
                _fmt(r["valid_acc"], ".3f"),
                _fmt(r["skip_dropout"], ".3f"),
                _fmt(r["lr"], ".4g"),
                _fmt(r["skip_connects_now"]),
                _fmt(r["epoch_seconds"], ".1f"),
                _fmt(None if r["peak_memory_bytes"] is None else r["peak_memory_bytes"] / 2**20, ".0f"),
            ]
            for r in rows
        ]
        _render(f"{name}: epochs", columns, table, fmt)
        return 0
    trials = read_trials(folder, skip_unreadable=True).to_pylist()
    if args.by_m:
        rows = expand_m(trials)
        if fmt in ("csv", "json"):
            _raw(rows, fmt)
            return 0
        knobs = _differing(rows, skip=("skip_connects",))
        columns = ["trial", *(k[4:] for k in knobs), "M", "skips", "normal cell", "reduce cell"]
        table = [
            [
                r["trial_id"],
                *(_cell(r[k]) for k in knobs),
                str(r["M"]),
                _fmt(r["skip_connects_after_refinement"]),
                cell_summary(r["genotype"]),
                cell_summary(r["genotype"], "reduce"),
            ]
            for r in rows
        ]
        _render(f"{name}: final genotype per M", columns, table, fmt)
        return 0
    if fmt in ("csv", "json"):
        _raw(trials, fmt)
        return 0
    knobs = _differing(trials)
    failures = any(r["failure"] for r in trials)
    columns = [
        "trial",
        "status",
        *(k[4:] for k in knobs),
        "best acc",
        "final acc",
        "skips before/after",
        "peak MiB per stage",
        "s per stage",
        "normal cell",
        "reduce cell",
    ]
    columns += ["failure"] if failures else []
    table = []
    for r in trials:
        table.append(
            [
                r["trial_id"],
                r["status"],
                *(_cell(r[k]) for k in knobs),
                _fmt(r["best_valid_acc"], ".3f"),
                _fmt(r["final_valid_acc"], ".3f"),
                f"{_fmt(r['skip_connects_before_refinement'])}/{_fmt(r['skip_connects_after_refinement'])}",
                _per_stage(r["stage_peak_memory_bytes"], 2**20),
                _per_stage(r["stage_seconds"], 1, ".1f"),
                cell_summary(r["genotype"]),
                cell_summary(r["genotype"], "reduce"),
            ]
            + ([r["failure"] or ""] if failures else [])
        )
    _render(f"{name}: {len(trials)} trial{'' if len(trials) == 1 else 's'}", columns, table, fmt)
    return 0


# ---------------------------------------------------------------- registration


def register(sub, groups) -> None:
    g = sub.add_parser(
        "results",
        help="the Parquet results store: import, list, show",
        description="Experiments in the results store (--storage, else $PDARTS_STORAGE, "
        "else ~/pdarts_results).",
    )
    rsub = g.add_subparsers(dest="results_command", metavar="COMMAND", parser_class=Parser)
    g.set_defaults(func=lambda args: (g.print_help(), 2)[1])
    groups["results"] = rsub
    storage_help = "storage root: an absolute path or a URI (default $PDARTS_STORAGE, else ~/pdarts_results)"

    p = rsub.add_parser("import", help="store a finished `pdarts-ray search` run folder as one trial")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--name", required=True, help="experiment to add it to")
    p.add_argument("--storage", help=storage_help)
    add_common_flags(p)
    p.set_defaults(func=cmd_results_import)

    p = rsub.add_parser("list", help="experiments in the store, with trial counts")
    p.add_argument("--storage", help=storage_help)
    add_common_flags(p)
    p.set_defaults(func=cmd_results_list)

    p = rsub.add_parser(
        "show",
        help="one experiment's trials (or epochs, or genotypes per M)",
        description="Show an experiment. table and markdown show a summary; csv and json every column.",
    )
    p.add_argument(
        "experiment", metavar="NAME_OR_PATH", help="an experiment name, or its folder (path or URI)"
    )
    p.add_argument("--storage", help=storage_help)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--json", action="store_true", help="same as --format json")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--epochs", action="store_true", help="the per-epoch metrics")
    view.add_argument(
        "--by-m", action="store_true", help="one row per (trial, M): the final genotype for every M"
    )
    p.set_defaults(func=cmd_results_show)
