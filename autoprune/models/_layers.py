"""Building blocks shared by the built-in models: conv→BN→act units and weight initialization."""

from __future__ import annotations

from torch import nn


class ConvBNAct(nn.Sequential):
    """``Conv2d`` (no bias) → ``BatchNorm2d`` → activation, as one module with children ``0``, ``1``, ``2``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel side; padding keeps the spatial size at stride 1.
        stride: Convolution stride.
        groups: Convolution groups (``groups == in_channels == out_channels`` is a depthwise conv).
        activation: The activation class (``nn.ReLU`` or ``nn.ReLU6``); a fresh module per unit so that
            forward hooks see each activation once.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            activation(),
        )


def init_weights(model: nn.Module) -> None:
    """Initialize in place: Kaiming-normal convs (fan-out, ReLU gain), BN weight 1 and bias 0.

    Linear layers keep PyTorch's default initialization.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def check_sizes(num_classes: int, in_channels: int) -> None:
    """Reject non-positive class or channel counts with a message that names the bad value."""
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be >= 1")
    if in_channels < 1:
        raise ValueError(f"in_channels={in_channels} must be >= 1")
