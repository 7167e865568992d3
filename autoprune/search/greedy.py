"""Greedy slimming (AutoSlim / NetAdapt style): shrink, one group at a time, what costs least accuracy.

From the largest sub-network, every round probes each group stepped down by ``step`` choices, and keeps
the probe that loses the least validation accuracy per unit of budget saved (MACs, params or predicted
latency, whichever the space budgets). Rounds repeat until the current network meets the budget; what
its last step left unused is then filled by projection (one more trial, :meth:`SearchSpace.project`).

Probes on the way down are wider than the budget allows: greedy slimming evaluates them on purpose
(``proposes_infeasible``); they are recorded with ``feasible=False`` and never become the best. When the
trial budget would run out before the budget is met, the last trial is the current network projected onto
the budget, so the search always ends with a feasible candidate.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from autoprune.errors import AutoPruneError
from autoprune.search.base import Proposal, Searcher, Trial
from autoprune.search_spaces import SearchSpace

# Larger automatic steps make slimming too coarse to be worth it; a small trial budget ends with a projection.
_MAX_AUTO_STEP = 2


class GreedySearcher(Searcher):
    """Greedy slimming over a search space.

    Args:
        space: The search space.
        seed: Unused by the algorithm (it is deterministic); kept for the common interface.
        step: Choices to step down per move; ``None`` picks the smallest step (1 or 2) that lets the slimming
            finish within the trial budget the runner announces (see :meth:`plan_budget`). Slimming costs
            about one trial per searched group per move; a budget too small for it ends with a projection.
    """

    name = "greedy"
    proposes_infeasible = True

    def __init__(self, space: SearchSpace, *, seed: int = 0, step: int | None = None) -> None:
        super().__init__(space, seed=seed)
        if step is not None and (not isinstance(step, int) or step < 1):
            raise AutoPruneError(f"greedy step={step!r} must be a positive number of choices")
        self.step = step
        self.current: dict[str, int] = space.largest()
        self._current_score: float | None = None
        self._queue: deque[tuple[str, dict[str, int]]] = deque()
        self._probes: dict[str, tuple[dict[str, int], float]] = {}  # group -> (counts, accuracy)
        self._waiting = 0
        self._budget: int | None = None
        self._used = 0
        self._finished = False
        self._final_asked = False
        self.rounds: list[dict[str, Any]] = []

    def plan_budget(self, trials: int) -> None:
        """Called by the runner with the number of trials left; sizes ``step`` when it was not given."""
        self._budget = trials
        if self.step is None:
            self.step = self._auto_step(trials)

    def _auto_step(self, trials: int) -> int:
        uniform = self.space.uniform(1.0)
        moves = sum(
            g.choices.index(self.current[g.name]) - g.choices.index(uniform[g.name]) for g in self.space.groups
        )
        probes_per_round = max(1, len(self.space.groups))
        for step in range(1, 1 + max(len(g.choices) for g in self.space.groups)):
            if 1 + math.ceil(moves / step) * probes_per_round <= trials:
                return min(step, _MAX_AUTO_STEP)
        return _MAX_AUTO_STEP

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> Proposal | None:
        counts = self._next()
        return None if counts is None else Proposal(counts)

    def _next(self) -> dict[str, int] | None:
        if self._finished:
            return None
        left = None if self._budget is None else self._budget - self._used
        if self._current_score is None:
            self._used += 1
            self._waiting = 1
            return dict(self.current)
        if self.space.feasible(self.current):
            # the walk stepped under the budget: spend what its last step left over (one filled trial)
            filled = self.space.project(self.space.ratios(self.current))
            self._finished = True
            if filled == self.current:
                return None
            self._final_asked = True
            self._used += 1
            return filled
        if not self._queue and not self._probes:
            self._queue.extend(self._round_probes())
            if left is not None and len(self._queue) + 1 > left:
                self._queue.clear()  # not enough trials for another round: finish feasibly now
        if not self._queue and not self._waiting:
            self._finished = True
            self._final_asked = True
            self._used += 1
            return self.space.project(self.space.ratios(self.current))
        group, counts = self._queue.popleft()
        self._waiting += 1
        self._used += 1
        self._probes[group] = (counts, math.nan)
        return counts

    def _round_probes(self) -> list[tuple[str, dict[str, int]]]:
        step = self.step or 1
        probes = []
        for g in self.space.groups:
            index = g.choices.index(self.current[g.name])
            if index == 0:
                continue
            counts = dict(self.current)
            counts[g.name] = g.choices[max(0, index - step)]
            probes.append((g.name, counts))
        return probes

    def _learn(self, trial: Trial) -> None:
        accuracy = trial.accuracy if trial.state == "complete" and trial.accuracy is not None else -math.inf
        self._waiting = max(0, self._waiting - 1)
        if self._current_score is None:
            self._current_score = accuracy
            return
        if self._final_asked:
            return
        for group, (counts, _) in list(self._probes.items()):
            if counts == trial.counts and math.isnan(self._probes[group][1]):
                self._probes[group] = (counts, accuracy)
                break
        if self._queue or any(math.isnan(a) for _, a in self._probes.values()):
            return
        self._choose()

    def _choose(self) -> None:
        """All probes of the round are back: move to the one losing least accuracy per budget saved."""
        base_cost = self.space.cost(self.current)
        assert self._current_score is not None
        scored = []
        for group, (counts, accuracy) in self._probes.items():
            saved = max(base_cost - self.space.cost(counts), 1e-12)
            scored.append(((self._current_score - accuracy) / saved, group, counts, accuracy))
        self._probes.clear()
        if not scored:
            self._finished = True
            return
        _, group, counts, accuracy = min(scored, key=lambda s: (s[0], s[1]))
        self.rounds.append({"group": group, "count": counts[group], "accuracy": accuracy,
                            "cost": self.space.cost(counts)})
        self.current = counts
        self._current_score = accuracy

    def state(self) -> dict[str, Any]:
        return {"step": self.step, "rounds": self.rounds, "current": self.current}
