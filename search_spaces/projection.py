"""Projection of any keep-ratio vector onto the budget, so no searcher evaluates an infeasible candidate.

The recipe (deterministic, always feasible because the smallest sub-network is checked at construction):

1. clip each requested ratio ``r`` into its group's bounds; if the nearest choices already meet the
   budget, return them unchanged;
2. otherwise shrink every group toward its minimum along ``min + t * (r - min)`` and bisect ``t`` for the
   largest value whose counts, rounded *down* to allowed choices, meet the budget;
3. top up greedily: raise one group by one choice at a time, the group shrunk most relative to its
   request first, never above the nearest choice of its request, while the budget still holds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoprune.search_spaces.space import SearchSpace

_BISECTION_STEPS = 30
_EPS = 1e-12  # float noise of cost / dense; the space is built so that the minimum meets target + _EPS


def project(space: SearchSpace, ratios: Mapping[str, float]) -> dict[str, int]:
    """Feasible counts for validated ``ratios`` (one value in [0, 1] per searched group).

    Args:
        space: The search space.
        ratios: Requested keep ratio per searched group.

    Returns:
        Allowed counts per group whose cost is at most ``space.target``.
    """
    groups = space.groups
    low = {g.name: g.ratio(g.min_count) for g in groups}
    want = {g.name: min(max(ratios[g.name], low[g.name]), g.ratio(g.max_count)) for g in groups}

    def fits(counts: Mapping[str, int]) -> bool:
        return space.cost(counts) <= space.target + _EPS

    nearest = {g.name: g.count_for(want[g.name]) for g in groups}
    if fits(nearest):
        return nearest

    def shrunk(t: float) -> dict[str, int]:
        return {g.name: g.floor_count(low[g.name] + t * (want[g.name] - low[g.name])) for g in groups}

    if fits(shrunk(1.0)):
        best = 1.0
    else:
        best, above = 0.0, 1.0
        for _ in range(_BISECTION_STEPS):
            mid = (best + above) / 2
            if fits(shrunk(mid)):
                best = mid
            else:
                above = mid
    counts = shrunk(best)
    return _top_up(space, counts, nearest, want, fits)


def _top_up(
    space: SearchSpace,
    counts: dict[str, int],
    cap: Mapping[str, int],
    want: Mapping[str, float],
    fits: Callable[[Mapping[str, int]], bool],
) -> dict[str, int]:
    order = {g.name: i for i, g in enumerate(space.groups)}
    while True:
        growable = [g for g in space.groups if counts[g.name] < cap[g.name]]
        # most shrunk relative to its request first; ties by group order, so the result is deterministic
        growable.sort(key=lambda g: (-(want[g.name] - g.ratio(counts[g.name])) / want[g.name], order[g.name]))
        for g in growable:
            index = g.choices.index(counts[g.name])
            trial = {**counts, g.name: g.choices[index + 1]}
            if fits(trial):
                counts = trial
                break
        else:
            return counts
