"""How the sampling pipeline weighs the choices it draws: a *damage* per group and allowed kept count.

The draws themselves are the ``sampling`` searcher's (:class:`~autoprune.search.sampling.SamplingSearcher`:
per-choice probabilities from the damage, one count per group, projected onto the budget). The strategies:

- ``uniform``: every allowed choice equally likely.
- ``importance``: a choice's *damage* is the share of the group's channel importance it removes,
  weighted by how important the group is relative to the others; low damage, high probability.
- ``sensitivity``: the damage is the KL divergence between pruned and dense outputs when the group is
  pruned alone to that choice (from a :class:`~autoprune.analysis.sensitivity.SensitivityTable`).

The searcher turns damage into probability (see :func:`~autoprune.search.sampling.choice_probabilities`).
"""

from __future__ import annotations

import numpy as np

from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet

STRATEGIES: tuple[str, ...] = ("uniform", "importance", "sensitivity")


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
