"""Random search: uniformly random keep ratios per group, projected onto the budget."""

from __future__ import annotations

from collections.abc import Sequence

from autoprune.search.base import Proposal, Searcher, Trial
from autoprune.search_spaces import SearchSpace


class RandomSearcher(Searcher):
    """Draws every group's keep ratio uniformly from its range and projects the vector onto the budget.

    Projection (:meth:`SearchSpace.project`) shrinks over-budget draws onto the budget and scales
    under-budget ones up to it (keeping their shape), so every proposal is feasible and spends the budget;
    repeats are served from the runner's memo. A resumed search continues the same stream of draws, so it
    proposes what an uninterrupted one would have.
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

    def restore(self, trials: Sequence[Trial]) -> None:
        """Replay the draws of the ``trials`` already run, then learn them: the next proposal is a new draw."""
        for _ in trials:
            self.ask()
        super().restore(trials)
