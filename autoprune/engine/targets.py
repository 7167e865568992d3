"""Turning a budget ("keep 50% of the MACs") into kept channel counts per group.

Two selection scopes from the literature:

- **local** (uniform): the same keep ratio in every group, bisected until the budget is met, then
  topped up group by group so the result lands just under the target despite channel rounding;
- **global**: one ranking of all channels across groups by normalised importance (each group's scores
  divided by their mean), removing the least important first while every group keeps at least
  ``min_keep_ratio`` of its channels, so no group is ever emptied.

Costs come from :meth:`ModelStructure.predict_macs` / ``predict_params``: exact and cheap, no pruning.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import torch

from autoprune.engine.structure import ModelStructure, group_step, round_channels
from autoprune.errors import BudgetError

Metric = Literal["macs", "params"]


def _cost_fn(structure: ModelStructure, metric: Metric) -> tuple[Callable[[Mapping[str, int]], int], int]:
    if metric == "macs":
        return structure.predict_macs, structure.dense_macs
    if metric == "params":
        return structure.predict_params, structure.dense_params
    raise BudgetError(f"budget metric {metric!r} must be 'macs' or 'params'")


def _check_target(target: float, metric: str) -> None:
    if not 0.0 < target <= 1.0:
        raise BudgetError(
            f"target_{metric}={target} must be in (0, 1]: it is the fraction of the dense {metric} to keep"
        )


def _min_counts(structure: ModelStructure, min_keep_ratio: float, round_to: int) -> dict[str, int]:
    counts = {}
    for g in structure.groups:
        step = group_step(g, round_to)
        n = max(step, math.ceil(min_keep_ratio * g.channels - 1e-9))
        counts[g.name] = min(g.channels, math.ceil(n / step) * step)
    return counts


def _ensure_reachable(
    structure: ModelStructure, floor: Mapping[str, int], target: float, metric: Metric
) -> None:
    cost, dense = _cost_fn(structure, metric)
    lowest = cost(floor) / dense
    if lowest > target + 1e-12:
        raise BudgetError(
            f"target_{metric}={target:.4f} cannot be met: pruning every group to its minimum keeps "
            f"{lowest:.4f} of the dense {metric} (layers outside the groups, such as the input and output "
            f"layers, are never pruned). Raise the target to at least {lowest:.3f} or lower min_keep_ratio."
        )


def _top_up(
    structure: ModelStructure,
    counts: dict[str, int],
    budget: float,
    metric: Metric,
    round_to: int,
    priority: Callable[[str, int], float],
) -> dict[str, int]:
    """Add channel steps while the cost stays within budget, best ``priority`` first."""
    cost, _ = _cost_fn(structure, metric)
    counts = dict(counts)
    while True:
        candidates = []
        for g in structure.groups:
            step = group_step(g, round_to)
            if counts[g.name] + step <= g.channels:
                candidates.append((priority(g.name, counts[g.name]), g.name, step))
        grown = False
        for _, name, step in sorted(candidates, reverse=True):
            trial = {**counts, name: counts[name] + step}
            if cost(trial) <= budget:
                counts = trial
                grown = True
                break
        if not grown:
            return counts


def uniform_keep_counts(
    structure: ModelStructure,
    target: float,
    *,
    metric: Metric = "macs",
    round_to: int = 1,
    min_keep_ratio: float = 0.05,
) -> dict[str, int]:
    """Kept channels per group for one keep ratio in every group, meeting ``target`` of the metric.

    Returns counts whose predicted cost is at most ``target`` of the dense cost and as close to it as
    channel rounding allows.

    Raises:
        BudgetError: ``target`` outside (0, 1] or below the minimum reachable cost.
    """
    _check_target(target, metric)
    cost, dense = _cost_fn(structure, metric)
    budget = target * dense
    floor = _min_counts(structure, min_keep_ratio, round_to)
    _ensure_reachable(structure, floor, target, metric)

    def counts_at(ratio: float) -> dict[str, int]:
        return {
            g.name: max(floor[g.name], round_channels(ratio * g.channels, g.channels, group_step(g, round_to)))
            for g in structure.groups
        }

    lo, hi = 0.0, 1.0
    if cost(counts_at(1.0)) <= budget:
        return counts_at(1.0)
    for _ in range(40):
        mid = (lo + hi) / 2
        if cost(counts_at(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    counts = counts_at(lo)
    if cost(counts) > budget:  # rounding can overshoot at tiny ratios: fall back to the floor
        counts = dict(floor)
    sizes = {g.name: g.channels for g in structure.groups}
    return _top_up(structure, counts, budget, metric, round_to, lambda n, c: -c / sizes[n])


def global_keep_counts(
    structure: ModelStructure,
    scores: Mapping[str, torch.Tensor],
    target: float,
    *,
    metric: Metric = "macs",
    round_to: int = 1,
    min_keep_ratio: float = 0.05,
) -> dict[str, int]:
    """Kept channels per group from one global ranking of normalised channel importance.

    Args:
        structure: The model's groups.
        scores: Per group, one importance score per channel (higher = keep).
        target: Fraction of the dense metric to keep.
        metric: ``"macs"`` or ``"params"``.
        round_to: Kept counts are multiples of this (hardware-friendly widths).
        min_keep_ratio: Every group keeps at least this fraction of its channels (never emptied).

    Raises:
        BudgetError: as :func:`uniform_keep_counts`.
    """
    _check_target(target, metric)
    cost, dense = _cost_fn(structure, metric)
    budget = target * dense
    floor = _min_counts(structure, min_keep_ratio, round_to)
    _ensure_reachable(structure, floor, target, metric)
    # each group's channels sorted by importance; the k-th removal candidate of a group is its k-th weakest
    ranked: dict[str, list[float]] = {}
    for g in structure.groups:
        s = torch.nan_to_num(scores[g.name].detach().float().cpu(), nan=0.0)
        mean = float(s.abs().mean()) or 1.0
        ranked[g.name] = sorted((s / mean).tolist())
    order: list[tuple[float, str]] = []
    for g in structure.groups:
        removable = g.channels - floor[g.name]
        order.extend((v, g.name) for v in ranked[g.name][:removable])
    order.sort()

    def counts_after(n_removed: int) -> dict[str, int]:
        counts = {g.name: g.channels for g in structure.groups}
        for _, name in order[:n_removed]:
            counts[name] -= 1
        return counts

    lo, hi = 0, len(order)
    while lo < hi:  # smallest removal count meeting the budget (cost falls as removals grow)
        mid = (lo + hi) // 2
        if cost(counts_after(mid)) <= budget:
            hi = mid
        else:
            lo = mid + 1
    counts = counts_after(lo)
    # round down to hardware-friendly steps, then grow back the most important channels
    for g in structure.groups:
        step = group_step(g, round_to)
        counts[g.name] = max(floor[g.name], counts[g.name] // step * step)

    descending = {name: sorted(values, reverse=True) for name, values in ranked.items()}

    def next_score(name: str, count: int) -> float:
        return descending[name][count] if count < len(descending[name]) else float("-inf")

    return _top_up(structure, counts, budget, metric, round_to, next_score)
