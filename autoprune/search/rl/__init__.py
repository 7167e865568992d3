"""Reinforcement-learning searchers on Stable-Baselines3: ``ddpg`` (AMC), ``td3``, ``sac`` and ``ppo``.

The bridge between SB3 and the ask/tell loop: **ask() rolls out one episode with the agent's policy and
exploration; tell() feeds the rewarded transitions to the agent's own buffer and runs its own
``train()``** (off-policy agents: the replay buffer and gradient steps after every episode; PPO: the
rollout buffer and a PPO update whenever a rollout of episodes is full). Chosen over running
``model.learn()`` in a background thread whose env blocks until tell() delivers a result, because

- it is deterministic by construction: one thread, and every draw comes from the searcher's seed
  (SB3's global-RNG sampling runs inside :func:`~autoprune.search.rl.common.isolated_rng`);
- resuming is honest and simple: recorded candidates are replayed into the buffer
  (:meth:`RLSearcher.restore`), with no thread to re-synchronize and nothing to stop in ``close()``;
- failed or early-stopped trials need no special protocol: tell() decides what to learn from them.

One policy, every budget: with ``target_range=(low, high)`` the agent is budget-conditioned (each
episode draws its target, the observation carries it), ``save_policy=`` writes it (SB3's zip and a JSON
sidecar) when the search ends, and :class:`SavedPolicy` loads it anywhere and answers any target of the
range with one deterministic rollout (:mod:`autoprune.search.rl.policy`).

Parallel episodes (``--workers N``) are the bridge's own rather than SB3's ``SubprocVecEnv``: the agent
asks ahead (``asks_ahead``): up to N episodes of its current policy are in evaluation at once, in a pool of
evaluator processes (:mod:`autoprune.search.pool`), and are told in the order they were asked, so the log
still comes before learning (resume) and proposals do not depend on which worker finished first (same
seed, same candidates). As with N vectorized environments, an episode's policy has not yet learned from
the up to N - 1 episodes still in flight when it was asked.

The cost: SB3's ``learn()`` loop (callbacks, its logging, vectorized envs) is not used. The episode logic
is the environments' own (:class:`~autoprune.envs.EpisodeCore`), so every candidate is feasible by the
budget clipping, with :meth:`SearchSpace.project` as a safety net.
"""

from autoprune.search.registry import register_searcher
from autoprune.search.rl.common import CREDITS, Episode, RLConfig, RLSearcher, isolated_rng
from autoprune.search.rl.off_policy import DDPGSearcher, OffPolicySearcher, SACSearcher, TD3Searcher
from autoprune.search.rl.policy import POLICY_FILE, PolicyInfo, SavedPolicy, rollout, save_policy, space_fingerprint
from autoprune.search.rl.ppo import PPOSearcher

register_searcher("ddpg", DDPGSearcher)
register_searcher("td3", TD3Searcher)
register_searcher("sac", SACSearcher)
register_searcher("ppo", PPOSearcher)

__all__ = [
    "CREDITS",
    "POLICY_FILE",
    "DDPGSearcher",
    "Episode",
    "OffPolicySearcher",
    "PPOSearcher",
    "PolicyInfo",
    "RLConfig",
    "RLSearcher",
    "SACSearcher",
    "SavedPolicy",
    "TD3Searcher",
    "isolated_rng",
    "rollout",
    "save_policy",
    "space_fingerprint",
]
