"""An old module path, kept for sweeps saved before the package had layers.

Ray Tune and Ray Train save a search trial's function, its actor mix-in and the Train
worker's loop by module path; experiments started by pdarts-ray 0.1.0 name them here.
New code imports from `pdarts_ray.distributed.trial`.
"""
from .distributed.trial import NamedTrial, search_trial, worker_loop  # noqa: F401
