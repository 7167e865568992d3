"""The budget's one home: fitting a keep-ratio request to a search space's budget, both ways.

Every part of autoprune that turns a wish ("these keep ratios", "50% of the MACs") into kept channel
counts goes through this module: the searchers (:meth:`SearchSpace.project`), the standard pipeline
(:func:`autoprune.search_spaces.spec.channel_space` with :meth:`SearchSpace.uniform` or
:func:`global_counts`), the sampling pipeline
and the sensitivity seeds. Costs, reachability and target checks live on :class:`SearchSpace` itself.

Projection (deterministic, always feasible because the smallest sub-network is checked at construction):

1. clip each requested ratio ``r`` into its group's bounds;
2. **over the budget**: shrink every group toward its minimum along ``min + t * (r - min)`` and bisect
   ``t`` for the largest value whose counts, rounded *down* to allowed choices, meet the budget; then top
   up one choice at a time, the group shrunk most relative to its request first, never above the nearest
   choice of its request;
3. **under the budget** (``fill=True``, the default): keep the request's shape and scale it up,
   ``min(s * r, max)``, bisecting ``s`` for the largest value whose nearest choices still meet the budget;
4. with ``fill=True``, finally top up greedily (the group furthest below its scaled request first) until
   no group can take one more choice without breaking the budget: the candidate is *saturated*, within
   one rounding step of the target.

``fill=False`` keeps an under-budget request as it is (its nearest choices): NSGA-II's Pareto search,
an explicit ``uniform(r)`` or a user's own ratios, where spending less is the point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from autoprune.errors import BudgetError
from autoprune.search_spaces._checks import number, show

if TYPE_CHECKING:
    from autoprune.search_spaces.space import SearchSpace

_BISECTION_STEPS = 30
_EPS = 1e-12  # float noise of cost / dense; the space is built so that the minimum meets target + _EPS

Fits = Callable[[Mapping[str, int]], bool]
_METRIC_WORDS = {"macs": "MACs", "params": "parameters", "latency": "latency (predicted by the latency table)"}


def check_target(value: Any, metric: str) -> float:
    """A budget target in (0, 1] as a float.

    Raises:
        BudgetError: NaN, infinite or outside (0, 1]; AutoPruneError: not a number at all.
    """
    number_value = math.nan if isinstance(value, float) and not math.isfinite(value) else number(value, "target")
    if not 0.0 < number_value <= 1.0:
        raise BudgetError(
            f"target={show(value)} must be in (0, 1]: it is the fraction of the dense "
            f"{_METRIC_WORDS.get(metric, metric)} to keep"
        )
    return number_value


def check_reachable(
    space: SearchSpace, *, target: float | None = None, fix: str = "lower the groups' min_ratio, or search more groups"
) -> None:
    """Raise :class:`BudgetError` naming the smallest reachable fraction (and ``fix``) when ``target``
    (default: the space's) is below it."""
    goal = space.target if target is None else target
    lowest = space.min_cost()
    if lowest > goal + 1e-12:
        raise BudgetError(
            f"target {goal:g} cannot be met: the smallest sub-network keeps {lowest:.3f} of the dense "
            f"{_METRIC_WORDS[space.metric]} (groups kept whole and the output layers are never pruned). "
            f"Raise the target to at least {math.ceil(lowest * 1000) / 1000:.3f}, or {fix}."
        )


def project(space: SearchSpace, ratios: Mapping[str, float], *, fill: bool = True) -> dict[str, int]:
    """Feasible counts for validated ``ratios`` (one value in [0, 1] per searched group).

    Args:
        space: The search space.
        ratios: Requested keep ratio per searched group.
        fill: Move an under-budget request up to the budget (keeping its shape) and top up until saturated.

    Returns:
        Allowed counts per group whose cost is at most ``space.target``; with ``fill`` also saturated
        (see :func:`saturated`).
    """
    groups = space.groups
    low = {g.name: g.ratio(g.min_count) for g in groups}
    high = {g.name: g.ratio(g.max_count) for g in groups}
    want = {g.name: min(max(ratios[g.name], low[g.name]), high[g.name]) for g in groups}

    def fits(counts: Mapping[str, int]) -> bool:
        return space.cost(counts) <= space.target + _EPS

    nearest = {g.name: g.count_for(want[g.name]) for g in groups}
    if fits(nearest):
        if not fill:
            return nearest
        scale = _largest_fitting(
            lambda s: {g.name: g.count_for(min(want[g.name] * s, high[g.name])) for g in groups},
            fits, upper=max(high[n] / want[n] for n in want),
        )
        scaled = {n: min(want[n] * scale, high[n]) for n in want}
        counts = {g.name: g.count_for(scaled[g.name]) for g in groups}
        return _top_up(space, counts, space.largest(), scaled, fits)

    def shrunk(t: float) -> dict[str, int]:
        return {g.name: g.floor_count(low[g.name] + t * (want[g.name] - low[g.name])) for g in groups}

    best = _largest_fitting(shrunk, fits, upper=1.0, lower=0.0)
    counts = _top_up(space, shrunk(best), nearest, want, fits)
    return _top_up(space, counts, space.largest(), want, fits) if fill else counts


def uniform(space: SearchSpace, keep_ratio: float) -> dict[str, int]:
    """The same keep ratio in every group (clipped into each group's bounds), fitted to the budget.

    If the nearest choices of ``keep_ratio`` meet the budget they are returned as they are (an explicit
    under-budget request is honoured). Otherwise the largest common ratio whose counts, rounded down,
    meet the budget is taken, then groups are topped up one choice at a time (lowest keep ratio first,
    never above the nearest choice of ``keep_ratio``): ``uniform(1.0)`` is the widest uniform network
    within the budget, saturated.
    """
    want = {g.name: keep_ratio for g in space.groups}

    def fits(counts: Mapping[str, int]) -> bool:
        return space.cost(counts) <= space.target + _EPS

    nearest = {g.name: g.count_for(keep_ratio) for g in space.groups}
    if fits(nearest):
        return nearest

    def common(r: float) -> dict[str, int]:
        return {g.name: g.floor_count(r) for g in space.groups}

    best = _largest_fitting(common, fits, upper=keep_ratio, lower=0.0)
    return _top_up(space, common(best), nearest, want, fits)


def _largest_fitting(counts_at: Callable[[float], dict[str, int]], fits: Fits, *, upper: float,
                     lower: float = 1.0) -> float:
    """The largest ``x`` in ``[lower, upper]`` whose counts fit (``counts_at(lower)`` is known to fit)."""
    if fits(counts_at(upper)):
        return upper
    below, above = lower, upper
    for _ in range(_BISECTION_STEPS):
        mid = (below + above) / 2
        if fits(counts_at(mid)):
            below = mid
        else:
            above = mid
    return below


def _top_up(
    space: SearchSpace,
    counts: dict[str, int],
    cap: Mapping[str, int],
    want: Mapping[str, float],
    fits: Fits,
) -> dict[str, int]:
    """Raise one group by one choice at a time (furthest below ``want`` first) while within budget and ``cap``."""
    order = {g.name: i for i, g in enumerate(space.groups)}
    while True:
        growable = [g for g in space.groups if counts[g.name] < cap[g.name]]
        # furthest below its request first; ties by group order, so the result is deterministic
        growable.sort(key=lambda g: (-(want[g.name] - g.ratio(counts[g.name])) / want[g.name], order[g.name]))
        for g in growable:
            index = g.choices.index(counts[g.name])
            trial = {**counts, g.name: g.choices[index + 1]}
            if fits(trial):
                counts = trial
                break
        else:
            return counts


def saturated(space: SearchSpace, counts: Mapping[str, int]) -> bool:
    """Whether no searched group can take one more choice without breaking the budget.

    This is what "within one rounding step of the target" means for a candidate: it may sit below the
    target only by less than the cost of the cheapest single step up.
    """
    full = {name: int(counts[name]) for name in space.names}
    for g in space.groups:
        index = g.choices.index(full[g.name])
        if index + 1 < len(g.choices) and space.cost({**full, g.name: g.choices[index + 1]}) <= space.target + _EPS:
            return False
    return True


def budget_use(space: SearchSpace, counts: Mapping[str, int]) -> dict[str, Any]:
    """How much of the budget ``counts`` spends: ``cost``, ``used`` (cost / target) and ``saturated``."""
    cost = space.cost(counts)
    return {"cost": cost, "used": cost / space.target, "saturated": saturated(space, counts)}


def global_counts(space: SearchSpace, scores: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Kept counts from one global ranking of normalised channel importance, meeting the space's budget.

    Each group's scores are divided by their mean; the least important channels across all groups are
    removed first (every group keeps at least its smallest choice) until the budget is met, counts are
    rounded down to allowed choices, and the most important removed channels are grown back while the
    budget holds.

    Args:
        space: The budget and the allowed counts (e.g. from :func:`~autoprune.search_spaces.spec.channel_space`).
        scores: Per searched group, one importance score per channel (higher = keep).
    """
    ranked: dict[str, list[float]] = {}
    for g in space.groups:
        s = torch.nan_to_num(scores[g.name].detach().float().cpu(), nan=0.0)
        mean = float(s.abs().mean()) or 1.0
        ranked[g.name] = sorted((s / mean).tolist())
    order: list[tuple[float, str]] = []
    for g in space.groups:
        order.extend((v, g.name) for v in ranked[g.name][: g.channels - g.min_count])
    order.sort()

    def fits(counts: Mapping[str, int]) -> bool:
        return space.cost(counts) <= space.target + _EPS

    def counts_after(n_removed: int) -> dict[str, int]:
        counts = {g.name: g.channels for g in space.groups}
        for _, name in order[:n_removed]:
            counts[name] -= 1
        return counts

    lo, hi = 0, len(order)
    while lo < hi:  # the fewest removals meeting the budget (cost falls as removals grow)
        mid = (lo + hi) // 2
        if fits(counts_after(mid)):
            hi = mid
        else:
            lo = mid + 1
    removed = counts_after(lo)
    counts = {g.name: g.floor_count(g.ratio(removed[g.name])) for g in space.groups}
    descending = {name: sorted(values, reverse=True) for name, values in ranked.items()}
    while True:  # grow back the most important next channel block while the budget holds
        options = []
        for g in space.groups:
            index = g.choices.index(counts[g.name])
            if index + 1 < len(g.choices):
                options.append((descending[g.name][counts[g.name]], g.name, g.choices[index + 1]))
        for _, name, count in sorted(options, reverse=True):
            if fits({**counts, name: count}):
                counts = {**counts, name: count}
                break
        else:
            return counts


def budget_use_summary(space: SearchSpace, candidates: list[Mapping[str, int]]) -> dict[str, Any]:
    """The distribution of ``used`` (cost / target) over candidates and the fraction that are saturated."""
    if not candidates:
        return {"candidates": 0}
    uses = sorted(budget_use(space, c)["used"] for c in candidates)
    full = sum(saturated(space, c) for c in candidates)
    n = len(uses)
    return {
        "candidates": n,
        "used_min": uses[0],
        "used_median": uses[n // 2] if n % 2 else (uses[n // 2 - 1] + uses[n // 2]) / 2,
        "used_max": uses[-1],
        "saturated_fraction": full / n,
    }
