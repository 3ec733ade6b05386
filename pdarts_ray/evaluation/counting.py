"""Parameter and multiply-add counts of evaluation networks.

Counting rules (those of the paper's tables and the reference code):
- `params`: every parameter except those of the auxiliary head (names containing
  "auxiliary"); BatchNorm weights and biases count, running statistics do not.
- `params_with_aux`: all parameters, auxiliary head included.
- `macs`: multiply-adds of every convolution and linear layer for one image (32x32 for
  CIFAR, 224x224 for ImageNet) in inference mode, so the auxiliary head is not run.
  A convolution costs out_elements * (C_in / groups) * k_h * k_w, a linear layer
  in_features * out_features. BatchNorm, ReLU, pooling, additions and biases are free.

The network is built on PyTorch's meta device: shapes only, no memory, no arithmetic,
so counting the largest settings takes well under a second.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..core.space import Genotype
from .network import EvalNetwork, build_network

# dataset -> (network, classes, image size) for `genotype params`
COUNT_SETTINGS = {
    "cifar10": ("cifar", 10, 32),
    "cifar100": ("cifar", 100, 32),
    "imagenet": ("imagenet", 1000, 224),
}
DEFAULT_SIZE = {"cifar": (36, 20), "imagenet": (48, 14)}  # (channels, layers) of the paper's networks


def count_parameters(model: nn.Module, include_auxiliary: bool = False) -> int:
    return sum(
        p.numel() for name, p in model.named_parameters() if include_auxiliary or "auxiliary" not in name
    )


def count_macs(model: EvalNetwork, image_size: int) -> int:
    """Conv + linear multiply-adds of one inference forward pass on a 3 x size x size image."""
    device = next(model.parameters()).device
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output):
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, output):
        nonlocal total
        total += (output.numel() // module.out_features) * module.in_features * module.out_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total


def network_cost(
    genotype: Genotype, network: str, channels: int, layers: int, num_classes: int, image_size: int
) -> dict[str, int]:
    """{"params", "params_with_aux", "macs"} of the network built from `genotype`."""
    with torch.device("meta"):
        model = build_network(genotype, network, channels, num_classes, layers, auxiliary=True)
    return {
        "params": count_parameters(model),
        "params_with_aux": count_parameters(model, include_auxiliary=True),
        "macs": count_macs(model, image_size),
    }


def genotype_cost(
    genotype: Genotype, dataset: str = "cifar10", channels: int | None = None, layers: int | None = None
) -> dict[str, int]:
    """The counts of the paper's setting for `dataset` (defaults: C=36, 20 cells / C=48, 14 cells)."""
    network, classes, size = COUNT_SETTINGS[dataset]
    default_c, default_l = DEFAULT_SIZE[network]
    return network_cost(
        genotype,
        network,
        default_c if channels is None else channels,
        default_l if layers is None else layers,
        classes,
        size,
    )
