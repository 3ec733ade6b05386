"""The search core: plain PyTorch, no Ray.

The search space and its rules (space), the candidate ops (ops) and their memory-lean
kernels (kernels), the supernet, the progressive loop (search) with its stages, data,
configs, checkpoints, memory measurement and prediction, and the step benchmark.
"""
