"""Sub-model sampling as a searcher: distinct feasible candidates drawn from per-group choice probabilities.

The first half of EagleEye-style sampling (:mod:`autoprune.pipelines.sampling` scores the draws through
:func:`~autoprune.search.run_search` and finetunes the best few). Every searched group gets a probability per
allowed kept count (uniform unless the caller passes per-choice *damage*, e.g. from channel importance or a
sensitivity analysis); a candidate draws one count per group and is projected onto the budget by
:meth:`SearchSpace.project`, which scales it up (or down) keeping its shape, so candidates use the budget
instead of falling far below it (as EagleEye's sampling window does).

Damage becomes probability through ``p ∝ exp(-damage / (temperature * scale))`` with ``scale`` the median
positive damage, so the temperature is unit-free.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from autoprune.errors import AutoPruneError
from autoprune.search.base import Proposal, Searcher
from autoprune.search_spaces import SearchSpace

Probabilities = dict[str, np.ndarray]


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


class SamplingSearcher(Searcher):
    """Proposes distinct feasible candidates drawn from per-group choice probabilities; learns nothing.

    The whole list is drawn when the runner announces the trial budget (:meth:`plan_budget`), from the seed
    alone, so a resumed search proposes the same list and continues where the log ends.

    Args:
        space: The search space.
        seed: Seeds the draws.
        damage: Per searched group, one damage value per allowed choice (lower: more likely); None: uniform.
        temperature: Softness of the damage-based probabilities (larger: closer to uniform).
        include_uniform: Make the uniform network (one keep ratio everywhere, widest within the budget) one of
            the candidates: it replaces the last draw when the draws missed it.

    Raises:
        AutoPruneError: a temperature that is not a positive number.
    """

    name = "sampling"

    def __init__(self, space: SearchSpace, *, seed: int = 0, damage: Mapping[str, np.ndarray] | None = None,
                 temperature: float = 1.0, include_uniform: bool = False) -> None:  # fmt: skip
        super().__init__(space, seed=seed)
        if not (isinstance(temperature, (int, float)) and temperature > 0 and math.isfinite(temperature)):
            raise AutoPruneError(f"temperature={temperature!r} must be a positive number")
        self.probabilities = choice_probabilities(space, damage, float(temperature))
        self.include_uniform = include_uniform
        self.uniform = space.uniform(1.0)
        self.candidates: list[dict[str, int]] | None = None

    def plan_budget(self, trials: int) -> None:
        """Draw the candidates of the whole search: those of earlier runs (resume) and ``trials`` more."""
        total = len(self._history) + trials
        drawn = draw_candidates(self.space, self.probabilities, total, np.random.default_rng(self.seed))
        if self.include_uniform and self.uniform not in drawn:
            drawn = [*drawn[: total - 1], self.uniform]
        self.candidates = drawn

    def ask(self) -> Proposal | None:
        if self.candidates is None:
            raise AutoPruneError("the sampling searcher draws its candidates in plan_budget(trials); call it first")
        index = len(self._history)
        if index >= len(self.candidates):
            return None
        counts = self.candidates[index]
        return Proposal(dict(counts), {"uniform": counts == self.uniform})
