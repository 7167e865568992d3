"""Choosing which channels to keep from importance scores: local (per group) and global selection."""

from __future__ import annotations

import torch

from autoprune.engine.structure import PrunableGroup


def select_kept(group: PrunableGroup, scores: torch.Tensor, keep: int) -> list[int]:
    """The ``keep`` most important channels of ``group`` (sorted indices).

    For groups with grouped convolutions the same positions are kept in every block, as the layer
    requires; scores are averaged over blocks to choose them.
    """
    if scores.shape != (group.channels,):
        raise ValueError(f"scores for group {group.name!r} have shape {tuple(scores.shape)}, "
                         f"expected ({group.channels},)")
    if not 1 <= keep <= group.channels:
        raise ValueError(f"keep={keep} must be in [1, {group.channels}] for group {group.name!r}")
    scores = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0)
    blocks = group.channel_groups
    if blocks > 1:
        if keep % blocks:
            raise ValueError(f"keep={keep} must be a multiple of {blocks} channel blocks in group {group.name!r}")
        size = group.channels // blocks
        per_block = scores.view(blocks, size).mean(dim=0)
        pos = torch.topk(per_block, keep // blocks, sorted=False).indices
        kept = (pos.unsqueeze(0) + torch.arange(blocks).unsqueeze(1) * size).flatten()
    else:
        # stable tie-breaking: among equal scores keep the lower index
        order = sorted(range(group.channels), key=lambda i: (-float(scores[i]), i))
        kept = torch.tensor(order[:keep])
    return sorted(int(i) for i in kept)
