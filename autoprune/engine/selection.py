"""Choosing which channels to keep from importance scores."""

from __future__ import annotations

import torch

from autoprune.engine.cost_model import allocation
from autoprune.engine.structure import PrunableGroup


def select_kept(group: PrunableGroup, scores: torch.Tensor, keep: int) -> list[int]:
    """The ``keep`` most important channels of ``group`` (sorted indices).

    For groups with channel blocks (grouped convolutions, GroupNorm) the same positions are kept in every
    block, as the layers require; scores are averaged over blocks to choose them. For a group spanning a
    concatenation each branch (segment) keeps its fixed share of ``keep`` (at least one position, see
    :mod:`autoprune.engine.segments`), its most important channels. A larger ``keep`` keeps a superset.

    Raises:
        ValueError: scores of the wrong shape, or a ``keep`` the group cannot take (naming the allowed ones).
    """
    if scores.shape != (group.channels,):
        raise ValueError(f"scores for group {group.name!r} have shape {tuple(scores.shape)}, "
                         f"expected ({group.channels},)")
    blocks = group.channel_groups
    if not 1 <= keep <= group.channels or keep % blocks or keep < group.min_channels:
        raise ValueError(
            f"keep={keep} is not allowed for group {group.name!r}: keep a multiple of {blocks} from "
            f"{group.min_channels} (one channel block per concatenated branch) to {group.channels}"
        )
    scores = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0)
    width = group.channels // blocks
    per_position = scores.view(blocks, width).mean(dim=0).tolist()
    segments = group.segments or (tuple(range(width)),)
    positions: list[int] = []
    for segment, count in zip(segments, allocation(group, keep), strict=True):
        # stable tie-breaking: among equal scores keep the lower index
        ranked = sorted(segment, key=lambda p: (-per_position[p], p))
        positions.extend(ranked[: int(count)])
    return sorted(p + b * width for p in positions for b in range(blocks))
