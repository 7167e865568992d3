"""Off-policy agents: DDPG with AMC's recipe, TD3 and SAC, fed through their replay buffer.

ask() rolls out one episode (uniform random actions during warm-up; afterwards the actor's action with
AMC's truncated normal noise for DDPG/TD3, or SAC's own stochastic policy); tell() writes the episode's
transitions into the SB3 replay buffer with the credited rewards and runs the gradient steps through the
algorithm's own ``train()``. The algorithms' code is used unchanged; only their ``learn()`` loop is not.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.stats import truncnorm
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from autoprune.search.rl.common import Episode, RLSearcher, isolated_rng


class OffPolicySearcher(RLSearcher):
    """An SB3 off-policy agent (``algorithm``: ``ddpg``, ``td3`` or ``sac``) as a searcher.

    Args:
        space: The search space.
        seed: Seeds the searcher, its networks and its exploration.
        **options: Fields of :class:`~autoprune.search.rl.RLConfig` (``reward``, ``warmup``, ``credit``, ...).
    """

    algorithm = "ddpg"
    _classes: ClassVar[dict[str, type[OffPolicyAlgorithm]]] = {"ddpg": DDPG, "td3": TD3, "sac": SAC}

    def _build_model(self) -> BaseAlgorithm:
        c = self.config
        return self._sb3_model(self._classes[self.algorithm], buffer_size=c.buffer_size, learning_starts=0,
                               batch_size=c.batch_size, tau=c.tau)  # fmt: skip

    @property
    def noise_std(self) -> float:
        """Current deviation of the exploration noise (DDPG/TD3): decays per episode after warm-up."""
        return self.config.noise * self.config.noise_decay ** max(0, self.episodes - self.config.warmup)

    def _act(self, obs: np.ndarray, episode: Episode) -> float:
        stochastic = self.algorithm == "sac"
        with isolated_rng(self._seed()):
            action, _ = self.model.predict(obs, deterministic=not stochastic)
        mean = float(np.clip(np.asarray(action).reshape(-1)[0], 0.0, 1.0))
        std = self.noise_std
        if stochastic or std <= 0.0:
            return mean
        low, high = (0.0 - mean) / std, (1.0 - mean) / std  # AMC: truncated to the action range
        return float(truncnorm.rvs(low, high, loc=mean, scale=std, random_state=self.rng))

    def _learn_episode(self, episode: Episode, rewards: list[float]) -> None:
        buffer = self.model.replay_buffer
        assert buffer is not None
        last = len(episode.actions) - 1
        for t, (action, reward) in enumerate(zip(episode.actions, rewards, strict=True)):
            scaled = self.model.policy.scale_action(np.array([[action]], dtype=np.float32))
            buffer.add(
                episode.observations[t][None], episode.observations[t + 1][None], scaled,
                np.array([reward], dtype=np.float32), np.array([t == last]), [{}],
            )  # fmt: skip
        if self.warming_up or buffer.size() < self.config.batch_size:
            return
        steps = self.core.n_groups if self.config.gradient_steps is None else self.config.gradient_steps
        if steps:
            self._train(gradient_steps=steps, batch_size=self.config.batch_size)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "noise_std": self.noise_std}


class DDPGSearcher(OffPolicySearcher):
    """AMC: DDPG over the layer-by-layer episode with warm-up, truncated normal noise and a reward baseline."""

    name = "ddpg"
    algorithm = "ddpg"


class TD3Searcher(OffPolicySearcher):
    """TD3 (twin critics, delayed policy updates, target smoothing) with the same episode and exploration."""

    name = "td3"
    algorithm = "td3"


class SACSearcher(OffPolicySearcher):
    """SAC: explores with its own entropy-regularized stochastic policy (no added noise)."""

    name = "sac"
    algorithm = "sac"
