"""CIFAR-style ResNets (He et al., 2016, section 4.2) with projection ("option B") shortcuts.

A 3x3 stem with 16 channels, three stages of ``n = (depth - 2) / 6`` basic blocks with 16, 32 and 64
channels (the last two start with a stride-2 block), global average pooling and a linear head. Where a
block changes shape its shortcut is a 1x1 conv + BN, so ResNet-20 has 272,474 parameters for 10 classes
(the paper's parameter-free "option A" gives 269,722, the often quoted 0.27M). Adaptive pooling lets the
same network run on 8x8 images (the embedded digits) as well as 32x32 ones.
"""

from __future__ import annotations

import torch
from torch import nn

from autoprune.models._layers import check_sizes, init_weights


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection: ``relu(bn2(conv2(...)) + shortcut(x))``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        stride: Stride of the first conv (and of the projection shortcut).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """A CIFAR ResNet of depth ``6n + 2``.

    Args:
        depth: Total number of weighted layers, ``6n + 2`` (20, 32, 44, 56, 110, ...).
        num_classes: Outputs of the linear head.
        in_channels: Channels of the input images.

    Raises:
        ValueError: If ``depth`` is not of the form ``6n + 2`` or a size is not positive.
    """

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        check_sizes(num_classes, in_channels)
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"depth={depth} must be 6n + 2 with n >= 1 (20, 32, 44, 56, 110, ...)")
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        init_weights(self)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_channels, out_channels, stride)]
        layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet20(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-20 for small images (3 blocks per stage)."""
    return CifarResNet(20, num_classes, in_channels)


def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-32 for small images (5 blocks per stage)."""
    return CifarResNet(32, num_classes, in_channels)


def resnet56(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """ResNet-56 for small images (9 blocks per stage)."""
    return CifarResNet(56, num_classes, in_channels)
