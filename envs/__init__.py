"""Gymnasium environments for layer-wise keep-ratio search (installed as ``autoprune.envs``).

Importing this package registers ``autoprune/LayerPruning-v0`` (:class:`LayerPruningEnv`, AMC-style: one
step per searched group) and ``autoprune/RatioVector-v0`` (:class:`RatioVectorEnv`, one step for the
whole keep-ratio vector) with Gymnasium::

    env = gymnasium.make("autoprune/LayerPruning-v0", space=space, evaluator=evaluator, reward="accuracy")
"""

import gymnasium

from autoprune.envs.episode import FEATURES, EpisodeCore, GroupFacts, group_facts, replay
from autoprune.envs.pruning_envs import EvaluateFn, LayerPruningEnv, RatioVectorEnv
from autoprune.envs.rewards import REWARDS, Reward, get_reward

#: Gymnasium ids of the registered environments and their entry points.
ENV_IDS: dict[str, str] = {
    "autoprune/LayerPruning-v0": "autoprune.envs.pruning_envs:LayerPruningEnv",
    "autoprune/RatioVector-v0": "autoprune.envs.pruning_envs:RatioVectorEnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point)

__all__ = [
    "ENV_IDS",
    "FEATURES",
    "REWARDS",
    "EpisodeCore",
    "EvaluateFn",
    "GroupFacts",
    "LayerPruningEnv",
    "RatioVectorEnv",
    "Reward",
    "get_reward",
    "group_facts",
    "replay",
]
