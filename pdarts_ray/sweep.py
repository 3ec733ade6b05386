"""An old module path, kept for sweeps saved before the package had layers.

Ray Tune saves a sweep's callback and trial-naming function by module path in the
experiment's state, and `sweep --resume` (and reproduce, continuing a family sweep)
unpickles them from there: experiments started by pdarts-ray 0.1.0 name them here.
New code imports from `pdarts_ray.distributed`.
"""

from .distributed.storing import StoreResults  # noqa: F401
from .distributed.sweep import trial_name  # noqa: F401
