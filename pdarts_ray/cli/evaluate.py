"""The `evaluate` and `genotype params` commands (registered through cli.COMMAND_MODULES)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..core.errors import UserError
from .common import add_common_flags, emit, names

DEFAULT_PRESET = "eval-tiny"
_CONFIG_FLAGS = (
    "genotype",
    "preset",
    "config",
    "set",
    "data_root",
    "download",
    "device",
    "seed",
    "workers",
    "ray",
    "out",
    "weights",
    "test_only",
    "dry_run",
)


def _fmt_count(n: int) -> str:
    return f"{n / 1e6:.2f} M"


# ---------------------------------------------------------------- genotype params


def cmd_genotype_params(args) -> int:
    from ..evaluation.counting import genotype_cost
    from ..evaluation.genotypes import load_genotype

    name, genotype = load_genotype(args.genotype)
    for flag in ("channels", "layers"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag}: must be at least 1, got {value}")
    try:
        cost = genotype_cost(genotype, args.dataset, args.channels, args.layers)
    except ValueError as err:
        raise UserError(f"--{err}") from None
    from ..evaluation.counting import COUNT_SETTINGS, DEFAULT_SIZE

    network, _, size = COUNT_SETTINGS[args.dataset]
    channels = args.channels or DEFAULT_SIZE[network][0]
    layers = args.layers or DEFAULT_SIZE[network][1]
    emit(
        args,
        cost,
        f"{name} on {args.dataset} (C={channels}, {layers} cells, {size}x{size} images): "
        f"{_fmt_count(cost['params'])} parameters ({_fmt_count(cost['params_with_aux'])} with the "
        f"auxiliary head), {cost['macs'] / 1e6:.1f} M multiply-adds",
    )
    return 0


# ---------------------------------------------------------------- evaluate


def _resolve_config(args):
    from ..core.config import resolve
    from ..evaluation.config import EVAL_PRESETS, EvalConfig

    flags = {
        "data_root": args.data_root,
        "download": True if args.download else None,
        "device": args.device,
        "seed": args.seed,
        "workers": args.workers,
        "ray_train": True if args.ray else None,
    }
    return resolve(EvalConfig, EVAL_PRESETS, args.preset or DEFAULT_PRESET, args.config, args.set, flags)


class TrainingFailed(Exception):
    """Training diverged, or the Ray Train run failed after its retries (exit code 1)."""


def cmd_evaluate(args) -> int:
    try:
        return _evaluate(args)
    except TrainingFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _evaluate(args) -> int:
    from .. import api
    from ..core.config import to_dict
    from ..evaluation.genotypes import load_genotype
    from ..evaluation.retrain import score_weights

    progress = False if args.quiet else sys.stderr if args.json else sys.stdout
    if args.resume:
        given = [
            f"--{k.replace('_', '-')}" for k in _CONFIG_FLAGS if getattr(args, k) not in (None, False, [])
        ]
        if given:
            raise UserError(
                f"evaluate --resume: cannot be combined with {', '.join(given)} "
                "(a resumed run keeps its saved config and genotype)"
            )
        result = _train(lambda: api.resume_evaluation(args.resume, progress=progress))
    else:
        if not args.genotype:
            raise UserError("evaluate: --genotype is required (a published name such as PDARTS, or a file)")
        name, genotype = load_genotype(args.genotype)
        cfg = _resolve_config(args)
        if args.dry_run:
            emit(args, to_dict(cfg), _yaml(to_dict(cfg)))
            return 0
        if args.test_only or args.weights:
            if not (args.test_only and args.weights):
                raise UserError("evaluate: --test-only and --weights go together")
            scored = score_weights(cfg, genotype, Path(args.weights))
            emit(
                args,
                scored,
                f"{name}: test top-1 {scored['top1']:.4f}, top-5 {scored['top5']:.4f} "
                f"(error {scored['error_pct']:.2f} %)",
            )
            return 0
        result = _train(lambda: api.run_evaluation(args.genotype, cfg, args.out, progress=progress))
    out = {"run_dir": str(result.run_dir), **result.summary}
    emit(
        args,
        out,
        f"{out['genotype_name'] or 'genotype'}: test top-1 {out['top1']:.4f}, top-5 {out['top5']:.4f} "
        f"(error {out['error_pct']:.2f} %), {_fmt_count(out['params'])} parameters, "
        f"{out['macs'] / 1e6:.1f} M multiply-adds, {out['seconds']:.0f} s\n"
        f"run folder: {result.run_dir}",
    )
    return 0


def _train(run):
    """Training that diverged, or a Ray Train run that failed after its retries, ends with exit code 1."""
    from ..evaluation.retrain import EvaluationDiverged, EvaluationFailed

    try:
        return run()
    except EvaluationDiverged as err:
        raise TrainingFailed(f"training diverged: {err}") from None
    except EvaluationFailed as err:
        raise TrainingFailed(str(err)) from None


def _yaml(data: dict) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False).rstrip()


# ---------------------------------------------------------------- registration

COUNT_DATASETS = ("cifar10", "cifar100", "imagenet")  # the keys of counting.COUNT_SETTINGS (torch-free here)


def register(sub, groups) -> None:
    from ..evaluation.config import EVAL_PRESETS

    p = groups["genotype"].add_parser(
        "params",
        help="parameters and multiply-adds of the network built from a genotype",
        description="Count parameters (without the auxiliary head, as in the paper's tables; and with it) "
        "and "
        "conv + linear multiply-adds for one image (32x32 CIFAR, 224x224 ImageNet).",
    )
    p.add_argument(
        "genotype",
        metavar="GENOTYPE",
        help="a published cell by name (pdarts-ray genotype list: PDARTS, DARTS_V2, PC_DARTS, ...) "
        "or a genotype file (JSON or Genotype(...))",
    )
    p.add_argument("--dataset", choices=COUNT_DATASETS, default="cifar10")
    p.add_argument("--channels", type=int, help="initial channels C (default 36 for CIFAR, 48 for ImageNet)")
    p.add_argument("--layers", type=int, help="cells (default 20 for CIFAR, 14 for ImageNet)")
    add_common_flags(p)
    p.set_defaults(func=cmd_genotype_params)

    p = sub.add_parser(
        "evaluate",
        help="retrain a genotype from scratch and report its test error",
        description="Train the evaluation network of a genotype and test it every epoch. "
        f"With no preset: {DEFAULT_PRESET} on the bundled digits.",
    )
    p.add_argument(
        "--genotype",
        help="a published cell by name (pdarts-ray genotype list), a genotype file, or a search run folder",
    )
    p.add_argument("--preset", help=names(EVAL_PRESETS, DEFAULT_PRESET))
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of config keys (overrides the preset)")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override one key (value read as YAML)"
    )
    p.add_argument("--data-root", metavar="DIR", help="folder holding the dataset")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR into --data-root")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--workers", type=int, help="data-parallel workers (default 1); more than 1 runs Ray Train"
    )
    p.add_argument("--ray", action="store_true", help="run through Ray Train even with one worker")
    p.add_argument(
        "--out", metavar="DIR", help="run folder (default ./pdarts-runs/eval-<time>); must be new or empty"
    )
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    p.add_argument("--weights", metavar="FILE", help="with --test-only: weights to test (a run's weights.pt)")
    p.add_argument("--test-only", action="store_true", help="test --weights without training; writes nothing")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    add_common_flags(p)
    p.set_defaults(func=cmd_evaluate)
