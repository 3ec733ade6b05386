"""Results: the Parquet store (trials, epochs, evaluations), the paper's published numbers,
and the paper's tables computed from the store. Plain Python and pyarrow; no Ray.

The store's functions are importable from here (`from pdarts_ray.results import read_trials`);
they are loaded on first use, so that the tables' definitions stay light to import.
"""

import importlib

_EXPORTS = {
    "evaluations": (
        "EVAL_SCHEMA",
        "EVALUATIONS_DIR",
        "evaluation_row",
        "read_evaluations",
        "write_evaluation",
    ),
    "files": ("experiment_path", "storage_root"),
    "importing": ("import_run",),
    "store": (
        "CONFIG_KEYS",
        "EPOCH_SCHEMA",
        "EPOCHS_DIR",
        "TRIAL_SCHEMA",
        "TRIALS_DIR",
        "expand_m",
        "has_trial",
        "list_experiments",
        "locate",
        "read_epochs",
        "read_trials",
        "skip_count",
        "trial_row",
        "write_epochs",
        "write_trial",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


def __dir__():
    return sorted(set(globals()) | set(__all__))
