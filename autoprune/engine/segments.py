"""Segments of a group: the parts of its channels that different layers see (the branches of a concatenation).

A group that spans a ``torch.cat`` (say a depthwise conv or a BatchNorm after the concatenation ties all
its channels together) reaches the branch convs only through their own slice of its channels. Which
channels are kept then decides how wide each branch stays: kept channels drawn from one branch only
would leave the others with no output channel at all, and the MACs would depend on the indices, not on
the count.

So the channels (or, with channel blocks, the positions within a block) are split into *segments*: the
largest sets every member layer sees alike. A kept count is spread over the segments by a fixed rule,
:func:`allocate`: every segment keeps at least one position, the rest go out in proportion to the
segments' sizes (Sainte-Laguë's sequential rule, so a larger count keeps a superset: nested). Channel
selection keeps each segment's share, and the cost model counts with the same shares, so predicted MACs
equal counted MACs for every count.
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

MemberKey = tuple[str, str]  # (layer name, "out" or "in")


def split_segments(
    channels: int, blocks: int, roots: Mapping[MemberKey, Mapping[int, int]]
) -> tuple[tuple[tuple[int, ...], ...], dict[MemberKey, tuple[int, ...]]]:
    """The segments of a group and, per member, how many of its channels each kept position brings.

    Args:
        channels: The group's channels (root indices ``0..channels-1``).
        blocks: Channel blocks kept at the same positions (see ``PrunableGroup.channel_groups``).
        roots: Per member, its channel index -> the group's root channel index it is pruned with.

    Returns:
        ``(segments, per_segment)``: the positions (``0..channels // blocks - 1``) of each segment, and per
        member the channels one kept position of each segment keeps in that layer. One segment (all
        positions) is returned as ``()``.
    """
    width = channels // blocks
    counts = {key: Counter(mapping.values()) for key, mapping in roots.items()}
    keys = sorted(counts)

    def signature(position: int) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(counts[k][position + b * width] for k in keys) for b in range(blocks))

    by_signature: dict[tuple[tuple[int, ...], ...], list[int]] = defaultdict(list)
    for position in range(width):
        by_signature[signature(position)].append(position)
    segments = tuple(tuple(positions) for positions in by_signature.values())
    per_segment = {
        key: tuple(sum(counts[key][seg[0] + b * width] for b in range(blocks)) for seg in segments) for key in keys
    }
    return (segments if len(segments) > 1 else ()), per_segment


def allocate(sizes: Sequence[int], positions: int) -> tuple[int, ...]:
    """Kept positions per segment when ``positions`` are kept in all (one per segment first, then proportional).

    Raises:
        ValueError: ``positions`` is below the number of segments or above their total size.
    """
    table = _allocation_table(tuple(sizes))
    if not len(sizes) <= positions <= sum(sizes):
        raise ValueError(
            f"cannot keep {positions} positions over {len(sizes)} segments of sizes {list(sizes)}: keep at least "
            f"{len(sizes)} (one per concatenated branch) and at most {sum(sizes)}"
        )
    return table[positions - len(sizes)]


@functools.lru_cache(maxsize=1024)
def _allocation_table(sizes: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """``table[k]``: the allocation of ``len(sizes) + k`` positions, built one position at a time (nested)."""
    alloc = [1] * len(sizes)
    table = [tuple(alloc)]
    for _ in range(sum(sizes) - len(sizes)):
        # Sainte-Laguë: the next position goes to the segment with the largest size / (kept + 1/2)
        best = max(
            (s for s in range(len(sizes)) if alloc[s] < sizes[s]),
            key=lambda s: (sizes[s] / (alloc[s] + 0.5), -s),
        )
        alloc[best] += 1
        table.append(tuple(alloc))
    return tuple(table)
