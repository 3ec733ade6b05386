"""pdarts-ray: Progressive DARTS architecture search, as distributed experiments on Ray.

The core (search space, supernet, progressive search, evaluation networks) is plain
PyTorch and imports no Ray; the Ray layer lives in separate modules.

The Python API (pdarts_ray/api.py) is available from here: `pdarts_ray.search_config`,
`run_search`, `run_evaluation`, `run_sweep`, `sweep_experiment`, `reproduce`, `paper_experiments`,
`read_trials`, ... Each is loaded on first use, so `import pdarts_ray` stays light.
"""

import sys as _sys

from .core import waiting as _waiting
from .core.version import VERSION as __version__  # noqa: F401  (the package's version, re-exported)

if "torch" not in _sys.modules:  # imported first: torch's threads will wait as the CLI's do
    try:
        _waiting.apply_wait_policy(warn=False)
    except Exception:  # a bad PDARTS_WAIT_POLICY: the CLI says so; an import does not fail on it
        pass

_API = (
    "EvalResult",
    "ReproduceResult",
    "SearchResult",
    "SweepResult",
    "eval_config",
    "paper_experiments",
    "genotype_of",
    "open_search",
    "read_epochs",
    "read_trials",
    "reproduce",
    "resume_evaluation",
    "resume_search",
    "resume_sweep",
    "run_evaluation",
    "run_search",
    "run_sweep",
    "search_config",
    "sweep_experiment",
)
__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
