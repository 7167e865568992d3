"""Random search: uniformly random keep ratios per group, projected onto the budget."""

from __future__ import annotations

from autoprune.search.base import Proposal, Searcher
from autoprune.search_spaces import SearchSpace


class RandomSearcher(Searcher):
    """Draws every group's keep ratio uniformly from its range and projects the vector onto the budget.

    Projection (:meth:`SearchSpace.project`) shrinks over-budget draws onto the budget and scales
    under-budget ones up to it (keeping their shape), so every proposal is feasible and spends the budget;
    repeats are served from the runner's memo.
    """

    name = "random"
    asks_ahead = True  # proposals do not depend on results: any number can be evaluated at once

    def __init__(self, space: SearchSpace, *, seed: int = 0) -> None:
        super().__init__(space, seed=seed)

    def ask(self) -> Proposal:
        ratios = [
            float(self.rng.uniform(g.ratio(g.min_count), g.ratio(g.max_count))) for g in self.space.groups
        ]
        return Proposal(self.project(ratios))
