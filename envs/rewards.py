"""Episode rewards from an evaluation: what the agent maximizes once a candidate is scored.

- ``accuracy``: validation accuracy; the budget is enforced by the episode's clipping (AMC's
  resource-constrained setting).
- ``accuracy_log_macs``: AMC's ``-error * log(MACs)``: trades accuracy against MACs below the budget.
- ``accuracy_log_latency``: ``-error * log(latency in microseconds)``, with the latency the evaluator
  measured (``EvalResult.latency_ms``) or, failing that, the space's latency table prediction
  (spaces with ``metric: latency``). Microseconds keep the logarithm positive for any realistic model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from autoprune._registry import Registry
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search_spaces import SearchSpace

#: A reward: (evaluation, search space) -> float, higher is better.
Reward = Callable[[EvalResult, SearchSpace], float]


def accuracy_reward(result: EvalResult, space: SearchSpace) -> float:
    """Validation accuracy (0..1)."""
    return float(result.accuracy)


def accuracy_log_macs_reward(result: EvalResult, space: SearchSpace) -> float:
    """AMC's ``-(1 - accuracy) * log(MACs)``."""
    return -(1.0 - float(result.accuracy)) * math.log(max(float(result.macs), 1.0))


def latency_ms(result: EvalResult, space: SearchSpace) -> float:
    """The measured latency of ``result``, else the space's predicted latency of its counts.

    Raises:
        AutoPruneError: neither is available.
    """
    if result.latency_ms is not None:
        return float(result.latency_ms)
    if space.metric == "latency" and space.latency_table is not None:
        return float(space.latency_table.predict(space.structure, result.counts))
    raise AutoPruneError(
        "reward 'accuracy_log_latency' needs a latency: use an evaluator that measures it "
        "(SupernetEvaluator(..., latency_batch_size=1)) or a search space with metric: latency"
    )


def accuracy_log_latency_reward(result: EvalResult, space: SearchSpace) -> float:
    """``-(1 - accuracy) * log(latency in microseconds)``."""
    return -(1.0 - float(result.accuracy)) * math.log(max(latency_ms(result, space) * 1e3, 1.0))


#: The rewards by name; ``REWARDS.register("mine", fn)`` adds one that the environments and RL searchers take.
REWARDS: Registry[Reward] = Registry("reward")
REWARDS.register("accuracy", accuracy_reward)
REWARDS.register("accuracy_log_macs", accuracy_log_macs_reward)
REWARDS.register("accuracy_log_latency", accuracy_log_latency_reward)


def get_reward(reward: str | Reward) -> Reward:
    """The reward called ``reward`` (or ``reward`` itself when it is a callable).

    Raises:
        AutoPruneError: unknown name (with the valid names).
    """
    if callable(reward):
        return reward
    if isinstance(reward, str) and reward in REWARDS:
        return REWARDS.get(reward)
    raise AutoPruneError(f"unknown reward {reward!r}; use one of {', '.join(REWARDS)} or a callable")
