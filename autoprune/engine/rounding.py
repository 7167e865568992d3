"""Channel rounding: the step a group's kept count moves in (``round_to`` and its channel blocks, e.g.
grouped convolutions), and rounding a wished count to it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch import nn

if TYPE_CHECKING:
    from autoprune.engine.structure import PrunableGroup


def group_step(group: PrunableGroup, round_to: int) -> int:
    """The granularity of kept counts in ``group``: a multiple of ``round_to`` and its channel groups."""
    return min(math.lcm(round_to, group.channel_groups), group.channels)


def channel_groups(tp_group: Any, channels: int) -> int:
    """Blocks of a group's channels that grouped (not depthwise) convolutions keep together (1 if none)."""
    blocks = 1
    for item in tp_group:
        module = item.dep.target.module
        if isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1:
            depthwise = module.groups == module.out_channels == module.in_channels
            if not depthwise:
                blocks = max(blocks, module.groups)
    return blocks if channels % blocks == 0 else 1


def round_channels(value: float, channels: int, round_to: int) -> int:
    """Round a channel count to the nearest multiple of ``round_to``, within ``[min(round_to, channels), channels]``."""
    if round_to < 1:
        raise ValueError(f"round_to={round_to} must be >= 1")
    n = round(value / round_to) * round_to
    return max(min(round_to, channels), min(channels, n), 1)
