"""MobileNetV2 (Sandler et al., 2018) adapted to small images.

Changes from the ImageNet network, as is usual for CIFAR: the stem conv and the first 24-channel stage
have stride 1, so only three stages downsample and a 32x32 input ends at 4x4 (an 8x8 one at 1x1).
Everything else is kept: inverted residual blocks (1x1 expand → 3x3 depthwise → 1x1 linear projection,
residual connection when the shape is unchanged), ReLU6, and a last 1x1 conv to 1280 channels (scaled up,
never down, by ``width_mult`` as in torchvision). The head is a plain linear layer without dropout, so
the network's output is the same function in train and eval mode apart from batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models._layers import ConvBNAct, check_sizes, init_weights

#: ``(expand_ratio, channels, blocks, stride)`` per stage; strides differ from ImageNet in stage 2.
MOBILENETV2_CFG: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never going below 90% of it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """Expand (1x1) → depthwise (3x3) → project (1x1, no activation), plus ``x`` when shapes match.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the depthwise conv.
        expand_ratio: Hidden channels are ``in_channels * expand_ratio``; 1 skips the expansion conv.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=nn.ReLU6))
        layers += [
            ConvBNAct(hidden, hidden, stride=stride, groups=hidden, activation=nn.ReLU6),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 for small images (see the module docstring for the changes).

    Args:
        num_classes: Outputs of the linear head.
        in_channels: Channels of the input images.
        width_mult: Multiplies every stage's channel count (rounded to multiples of 8).

    Raises:
        ValueError: If ``width_mult`` or a size is not positive.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        check_sizes(num_classes, in_channels)
        if width_mult <= 0:
            raise ValueError(f"width_mult={width_mult} must be > 0")
        channels = make_divisible(32 * width_mult)
        self.last_channels = make_divisible(1280 * max(1.0, width_mult))
        layers: list[nn.Module] = [ConvBNAct(in_channels, channels, stride=1, activation=nn.ReLU6)]
        for expand_ratio, stage_channels, blocks, stride in MOBILENETV2_CFG:
            out_channels = make_divisible(stage_channels * width_mult)
            for i in range(blocks):
                layers.append(InvertedResidual(channels, out_channels, stride if i == 0 else 1, expand_ratio))
                channels = out_channels
        layers.append(ConvBNAct(channels, self.last_channels, kernel_size=1, activation=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(self.last_channels, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0) -> MobileNetV2:
    """MobileNetV2 for small images (32x32 → 4x4 before pooling), width 1.0 by default."""
    return MobileNetV2(num_classes, in_channels, width_mult)
