"""A small VGG with batch norm for small images (8x8 digits up to 32x32 CIFAR)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from autoprune.models._layers import ConvBNAct, check_sizes, init_weights

#: Channels of each 3x3 conv-BN-ReLU unit; ``"M"`` is a 2x2 max pool (8 → 4 → 2 → 1 on digits).
VGG_SMALL_CFG: tuple[int | str, ...] = (32, 32, "M", 64, 64, "M", 128, 128, "M")


class VGG(nn.Module):
    """Plain VGG: conv-BN-ReLU units and max pools, then global average pooling and a linear head.

    Args:
        cfg: Channel counts of the conv units, with ``"M"`` for a 2x2 max pool.
        num_classes: Outputs of the linear head.
        in_channels: Channels of the input images.

    Raises:
        ValueError: If ``cfg`` has no conv unit, holds an unknown entry, or a size is not positive.
    """

    def __init__(self, cfg: Sequence[int | str], num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        check_sizes(num_classes, in_channels)
        layers: list[nn.Module] = []
        channels = in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            elif isinstance(item, int) and item > 0:
                layers.append(ConvBNAct(channels, item))
                channels = item
            else:
                raise ValueError(f"VGG cfg entry {item!r} must be a positive channel count or 'M'")
        if not any(isinstance(m, ConvBNAct) for m in layers):
            raise ValueError(f"VGG cfg {list(cfg)!r} has no conv unit")
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg_small(num_classes: int = 10, in_channels: int = 3) -> VGG:
    """The small VGG of :data:`VGG_SMALL_CFG` (six conv units, three pools, ~0.29M parameters)."""
    return VGG(VGG_SMALL_CFG, num_classes, in_channels)
