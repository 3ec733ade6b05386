"""pdarts-ray: Progressive DARTS architecture search, as distributed experiments on Ray.

The core (search space, supernet, progressive search, evaluation networks) is plain
PyTorch and imports no Ray; the Ray layer lives in separate modules.
"""
__version__ = "0.1.0"
