"""Gymnasium environments for layer-wise keep-ratio search (AMC style) and its one-step bandit variant.

Both own only the episode logic (:class:`~autoprune.envs.episode.EpisodeCore`): they call the evaluator
and the search space and never train or prune anything. The reward is 0 until the episode ends; then the
finished candidate is evaluated once and scored by the chosen reward (:mod:`autoprune.envs.rewards`).

Budget-conditioned (``target_range=(low, high)``): each episode draws its target uniformly from the range
with the environment's own generator at ``reset`` (or takes ``reset(options={"target": t})``), the
clipping and the projection use it, and the observation ends with it (one more feature, so the
observation space is one longer). Without a range, nothing changes: the space's target, the same
observation.

Both are picklable and deep-copyable with what they hold (search space, evaluator, supernet), as
Gymnasium's checker and Stable-Baselines3's ``SubprocVecEnv`` need; a copy has its own evaluator cache.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from autoprune.envs.episode import STATIC_FEATURES, EpisodeCore
from autoprune.envs.rewards import Reward, get_reward, latency_ms
from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult, Evaluator
from autoprune.search_spaces import SearchSpace

#: What the environments evaluate with: an :class:`Evaluator` or a callable ``counts -> EvalResult``.
EvaluateFn = Callable[[dict[str, int]], EvalResult]


def _evaluate_fn(evaluator: Evaluator | EvaluateFn, fidelity: int | None) -> EvaluateFn:
    if isinstance(evaluator, Evaluator):  # a partial, not a lambda: the environment stays picklable
        return functools.partial(evaluator.evaluate, fidelity=fidelity)
    if callable(evaluator):
        return evaluator
    raise AutoPruneError(
        f"evaluator={evaluator!r} must be an autoprune Evaluator or a callable counts -> EvalResult"
    )


class _PruningEnv(gym.Env[np.ndarray, np.ndarray]):
    """What both environments share: the episode core, the evaluator, the reward and the final info."""

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012  (gymnasium's class attribute)

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator | EvaluateFn,
        *,
        reward: str | Reward = "accuracy",
        fidelity: int | None = None,
        budget_slack: float | None = 0.02,
        target_range: str | Sequence[float] | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise AutoPruneError(f"space must be a SearchSpace, got {type(space).__name__}")
        self.space = space
        self.core = EpisodeCore(space, budget_slack=budget_slack, target_range=target_range)
        self.reward_fn = get_reward(reward)
        self.reward_name = reward if isinstance(reward, str) else getattr(reward, "__name__", "custom")
        measures = getattr(evaluator, "latency_batch_size", None) is not None
        if reward == "accuracy_log_latency" and space.metric != "latency" and isinstance(evaluator, Evaluator) \
                and not measures:
            raise AutoPruneError(
                "reward 'accuracy_log_latency' needs a latency: build the evaluator with "
                "latency_batch_size=1 or use a search space with metric: latency"
            )
        self._evaluate = _evaluate_fn(evaluator, fidelity)
        self.last_result: EvalResult | None = None
        self.observation_space, self.action_space = self._spaces()

    def _spaces(self) -> tuple[spaces.Box, spaces.Box]:
        """The observation and action spaces (each environment's own)."""
        raise NotImplementedError

    def _observation(self) -> np.ndarray:
        """The observation now (each environment's own)."""
        raise NotImplementedError

    def _reset_info(self) -> dict[str, Any]:
        """What ``reset``'s ``info`` holds besides the episode's target."""
        return {}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._seed_action_space(seed)
        info = self._start_episode(options)
        return self._observation(), {**self._reset_info(), **info}

    @property
    def episode_length(self) -> int:
        """Steps of every episode (the time limit ``gymnasium.make`` applies)."""
        return self.core.n_groups

    @property
    def target_range(self) -> tuple[float, float] | None:
        """The range episode targets are drawn from (``None``: the space's fixed target)."""
        return self.core.target_range

    def _start_episode(self, options: dict[str, Any] | None) -> dict[str, Any]:
        """Pick the episode's target (budget-conditioned envs) and reset the core; the reset ``info``."""
        target = (options or {}).get("target")
        if self.core.target_range is not None:
            low, high = self.core.target_range
            self.core.set_target(float(self.np_random.uniform(low, high)) if target is None else float(target))
        elif target is not None:
            self.core.set_target(float(target))  # refused, with the fix
        self.core.reset()
        return {"target": self.core.target} if self.core.conditioned else {}

    def _finish(self) -> tuple[float, dict[str, Any]]:
        """Evaluate the finished episode's candidate: the reward and the final ``info``."""
        space = self.core.space  # the episode's target
        counts, projected = self.core.final_counts()
        result = self._evaluate(counts)
        self.last_result = result
        reward = float(self.reward_fn(result, space))
        info: dict[str, Any] = {
            "counts": counts,
            "keep_ratios": space.ratios(counts),
            "macs_ratio": float(result.macs_ratio),
            "cost": float(space.cost(counts)),
            "accuracy": float(result.accuracy),
            "reward": reward,
            "projected": projected,
            "actions": list(self.core.actions),
        }
        if result.latency_ms is not None or space.metric == "latency":
            info["latency_ms"] = latency_ms(result, space)
        if self.core.conditioned:
            info["target"] = self.core.target
        return reward, info

    def _seed_action_space(self, seed: int | None) -> None:
        if seed is not None:  # so that action_space.sample() is reproducible after reset(seed=...)
            self.action_space.seed(int(self.np_random.integers(2**31 - 1)))


class LayerPruningEnv(_PruningEnv):
    """One episode walks the searched groups in order; each action is that group's keep ratio.

    Observation: AMC's layer embedding of the current group (:data:`~autoprune.envs.episode.FEATURES`,
    each in [0, 1]; budget-conditioned: then the episode's target). Action: ``Box(0, 1, (1,))``, mapped
    into the group's ratio bounds, snapped to its choices and clipped so that the episode ends within the
    budget. Reward: 0 until the last group, then
    the reward of the evaluated candidate. ``info`` of the last step carries counts, keep ratios, MACs
    ratio, cost, accuracy and reward. Every episode has :attr:`episode_length` steps (the searched groups);
    ``gymnasium.make("autoprune/LayerPruning-v0", ...)`` adds a ``TimeLimit`` of that length.

    Ready-made from a model, a dataset and a budget, or a saved supernet:
    ``autoprune.envs.make_env("layer", supernet="runs/sn/supernet.pt", target_macs=0.5)``.

    Args:
        space: The search space.
        evaluator: An :class:`Evaluator` (scored at ``fidelity``) or a callable ``counts -> EvalResult``.
        reward: ``accuracy``, ``accuracy_log_macs``, ``accuracy_log_latency`` or a callable
            ``(EvalResult, SearchSpace) -> float``.
        fidelity: Validation batches per evaluation (``None``: all).
        budget_slack: See :class:`~autoprune.envs.episode.EpisodeCore`.
        target_range: ``(low, high)`` (or ``"low:high"``): budget-conditioned episodes, each with a target
            drawn from the range at ``reset`` (``reset(options={"target": t})`` picks one); the observation
            then ends with the target (feature ``target``). ``None``: the space's fixed target.
    """

    def _spaces(self) -> tuple[spaces.Box, spaces.Box]:
        return (spaces.Box(0.0, 1.0, shape=(len(self.core.features),), dtype=np.float32),
                spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32))

    def _observation(self) -> np.ndarray:
        return self.core.observation()

    def _reset_info(self) -> dict[str, Any]:
        return {"group": self.space.groups[0].name}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        group = self.space.groups[min(self.core.t, self.core.n_groups - 1)].name
        count = self.core.step(float(np.asarray(action, dtype=np.float64).reshape(-1)[0]))
        info: dict[str, Any] = {"group": group, "count": count}
        if not self.core.done:
            return self.core.observation(), 0.0, False, False, info
        reward, final = self._finish()
        return self.core.observation(), reward, True, False, {**info, **final}


class RatioVectorEnv(_PruningEnv):
    """The one-step (bandit) variant: the action is the whole keep-ratio vector, one value per group.

    The vector goes through the same episode core as :class:`LayerPruningEnv` (group by group, the same
    mapping and clipping), so both propose the same candidate for the same actions. The observation is
    constant: every group's static embedding, flattened (budget-conditioned: then the episode's target).
    Every episode is one step (registered with ``max_episode_steps=1``). Same arguments as
    :class:`LayerPruningEnv`; ready-made with ``autoprune.envs.make_env("vector", ...)``.
    """

    def _spaces(self) -> tuple[spaces.Box, spaces.Box]:
        self._context = self._static_context()
        size = self._context.size + (1 if self.core.conditioned else 0)
        return (spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32),
                spaces.Box(0.0, 1.0, shape=(self.core.n_groups,), dtype=np.float32))

    @property
    def episode_length(self) -> int:
        return 1

    def _static_context(self) -> np.ndarray:
        rows = []
        self.core.reset()
        for i in range(self.core.n_groups):
            self.core.t = i
            rows.append(self.core.observation()[:STATIC_FEATURES])  # what each group is, not the episode so far
        self.core.reset()
        return np.concatenate(rows).astype(np.float32)


    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        values = np.asarray(action, dtype=np.float64).reshape(-1)
        if values.size != self.core.n_groups:
            raise AutoPruneError(
                f"got {values.size} keep-ratio actions for {self.core.n_groups} searched groups; give one per group"
            )
        self.core.reset()
        for value in values:
            self.core.step(float(value))
        reward, info = self._finish()
        return self._observation(), reward, True, False, info

    def _observation(self) -> np.ndarray:
        if not self.core.conditioned:
            return self._context.copy()
        return np.append(self._context, np.float32(self.core.target)).astype(np.float32)
