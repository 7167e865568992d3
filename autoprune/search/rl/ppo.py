"""PPO as a searcher: episodes fill SB3's rollout buffer; a full buffer triggers PPO's own ``train()``.

ask() samples every step's action from the current Gaussian policy and keeps the value estimate and
log-probability SB3 needs; tell() adds the credited rewards to the rollout buffer. After
``episodes_per_update`` complete episodes the buffer is full (its ``n_steps`` is that many episodes of
steps), returns and GAE advantages are computed (the last episode is finished, so no bootstrap), and
PPO trains on it. Actions outside [0, 1] are clipped for the episode and stored unclipped, as SB3 does.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from stable_baselines3 import PPO

from autoprune.search.rl.common import Episode, RLSearcher, isolated_rng
from autoprune.search_spaces import SearchSpace


class PPOSearcher(RLSearcher):
    """PPO over the layer-by-layer episode (no warm-up by default: the policy explores by itself).

    Args:
        space: The search space.
        seed: Seeds the searcher, its networks and its sampling.
        **options: Fields of :class:`~autoprune.search.rl.RLConfig`; ``episodes_per_update`` sets the rollout.
    """

    name = "ppo"
    algorithm = "ppo"
    fast_options: ClassVar[dict[str, Any]] = {"episodes_per_update": 2, "batch_size": 16, "net_arch": (32, 32)}

    def __init__(self, space: SearchSpace, *, seed: int = 0, **options: Any) -> None:
        options.setdefault("warmup", 0)
        options.setdefault("credit", "final")
        super().__init__(space, seed=seed, **options)

    def _build_model(self) -> PPO:
        c = self.config
        n_steps = c.episodes_per_update * self.core.n_groups
        batch_size = max(d for d in range(1, min(c.batch_size, n_steps) + 1) if n_steps % d == 0)
        model = self._sb3_model(PPO, n_steps=n_steps, batch_size=batch_size)
        assert isinstance(model, PPO)
        return model

    def _act(self, obs: np.ndarray, episode: Episode) -> float:
        policy = self.model.policy
        with isolated_rng(self._seed()), torch.no_grad():
            tensor = policy.obs_to_tensor(obs)[0]
            action, value, log_prob = policy(tensor)
        raw = float(action.cpu().numpy().reshape(-1)[0])
        episode.extras.setdefault("raw", []).append(raw)
        episode.extras.setdefault("values", []).append(value.reshape(1))
        episode.extras.setdefault("log_probs", []).append(log_prob.reshape(1))
        return float(np.clip(raw, 0.0, 1.0))

    def _evaluated(self, episode: Episode) -> tuple[list[float], list[torch.Tensor], list[torch.Tensor]]:
        """Actions, values and log-probabilities of the episode (under the current policy when not recorded)."""
        if len(episode.extras.get("raw", ())) == len(episode.actions):
            return episode.extras["raw"], episode.extras["values"], episode.extras["log_probs"]
        policy = self.model.policy
        obs = torch.as_tensor(np.stack(episode.observations[:-1]))
        actions = torch.as_tensor(np.array(episode.actions, dtype=np.float32)).reshape(-1, 1)
        with torch.no_grad():
            values, log_probs, _ = policy.evaluate_actions(obs, actions)
        return list(episode.actions), list(values.reshape(-1, 1)), list(log_probs.reshape(-1, 1))

    def _learn_episode(self, episode: Episode, rewards: list[float]) -> None:
        buffer = self.model.rollout_buffer
        actions, values, log_probs = self._evaluated(episode)
        for t, reward in enumerate(rewards):
            buffer.add(
                episode.observations[t][None], np.array([[actions[t]]], dtype=np.float32),
                np.array([reward], dtype=np.float32), np.array([t == 0]), values[t].reshape(1), log_probs[t].reshape(1),
            )  # fmt: skip
        if not buffer.full:
            return
        buffer.compute_returns_and_advantage(last_values=torch.zeros(1, 1), dones=np.array([True]))
        self._train()
        buffer.reset()
