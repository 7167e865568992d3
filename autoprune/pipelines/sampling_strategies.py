"""How the sampling pipeline draws candidates: per-group choice probabilities, then the budget.

Every strategy gives each searched group a probability per allowed kept count; a candidate draws one
count per group and is projected onto the budget by :meth:`SearchSpace.project`, which scales it up (or
down) keeping its shape, so candidates use the budget instead of falling far below it (as EagleEye's
sampling window does).

- ``uniform``: every allowed choice equally likely.
- ``importance``: a choice's *damage* is the share of the group's channel importance it removes,
  weighted by how important the group is relative to the others; low damage, high probability.
- ``sensitivity``: the damage is the KL divergence between pruned and dense outputs when the group is
  pruned alone to that choice (from a :class:`~autoprune.analysis.sensitivity.SensitivityTable`).

Damage becomes probability through ``p ∝ exp(-damage / (temperature * scale))`` with ``scale`` the median
positive damage, so the temperature is unit-free.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet

STRATEGIES: tuple[str, ...] = ("uniform", "importance", "sensitivity")
Probabilities = dict[str, np.ndarray]


def importance_damage(supernet: Supernet, space: SearchSpace) -> dict[str, np.ndarray]:
    """Per searched group and allowed choice: the importance removed by keeping only that many channels.

    ``damage = w_g * (1 - top-c importance / total importance)`` with ``w_g`` the group's mean channel
    score over the mean of all groups' mean scores (a group that matters less is pruned more).
    """
    scores = {g.name: np.abs(supernet.scores[g.name].numpy().astype(np.float64)) for g in space.groups}
    means = {name: float(s.mean()) for name, s in scores.items()}
    overall = float(np.mean(list(means.values()))) or 1.0
    out = {}
    for g in space.groups:
        s = np.sort(scores[g.name])[::-1]
        total = float(s.sum()) or 1.0
        kept = np.array([s[:c].sum() / total for c in g.choices])
        out[g.name] = (means[g.name] / overall) * (1.0 - kept)
    return out


def choice_probabilities(
    space: SearchSpace, damage: Mapping[str, np.ndarray] | None = None, temperature: float = 1.0
) -> Probabilities:
    """Probability of every allowed choice of every searched group (uniform when ``damage`` is None)."""
    if damage is None:
        return {g.name: np.full(len(g.choices), 1.0 / len(g.choices)) for g in space.groups}
    positive = np.concatenate([np.asarray(d, dtype=np.float64) for d in damage.values()])
    positive = positive[positive > 0]
    scale = float(np.median(positive)) if positive.size else 1.0
    out = {}
    for g in space.groups:
        d = np.asarray(damage.get(g.name, np.zeros(len(g.choices))), dtype=np.float64)
        logits = -d / (temperature * scale)
        p = np.exp(logits - logits.max())
        out[g.name] = p / p.sum()
    return out


def draw_candidates(
    space: SearchSpace, probabilities: Probabilities, n: int, rng: np.random.Generator, *, max_tries: int = 50
) -> list[dict[str, int]]:
    """Up to ``n`` distinct feasible candidates (fewer only if the space has fewer within ``max_tries * n`` draws)."""
    seen: set[tuple[int, ...]] = set()
    out: list[dict[str, int]] = []
    for _ in range(max_tries * n):
        if len(out) == n:
            break
        ratios = {
            g.name: g.ratio(g.choices[int(rng.choice(len(g.choices), p=probabilities[g.name]))]) for g in space.groups
        }
        counts = space.project(ratios)  # moved up (or down) to the budget, keeping the draw's shape
        key = tuple(counts[name] for name in space.names)
        if key not in seen:
            seen.add(key)
            out.append(counts)
    return out
