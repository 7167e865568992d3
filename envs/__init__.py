"""Gymnasium environments for layer-wise keep-ratio search (installed as ``autoprune.envs``).

Importing this package registers ``autoprune/LayerPruning-v0`` (:class:`LayerPruningEnv`, AMC-style: one
step per searched group) and ``autoprune/RatioVector-v0`` (:class:`RatioVectorEnv`, one step for the
whole keep-ratio vector) with Gymnasium. :func:`make_env` builds one from a model, a dataset and a budget
or a saved supernet; ``gymnasium.make`` takes the same settings, or a space and an evaluator::

    env = make_env("layer", supernet="runs/sn/supernet.pt", target_macs=0.5)
    env = gymnasium.make("autoprune/LayerPruning-v0", supernet="runs/sn/supernet.pt", target_macs=0.5)
    env = gymnasium.make("autoprune/LayerPruning-v0", space=space, evaluator=evaluator, reward="accuracy")

Budget-conditioned (one policy for every budget of a range): ``target_range=(0.3, 0.7)`` draws each
episode's target from the range at reset and appends it to the observation (see :class:`LayerPruningEnv`).

In a fresh process (``SubprocVecEnv`` workers, ``make_vec_env``) use the id
``"autoprune.envs:autoprune/LayerPruning-v0"``: Gymnasium imports this package first, which registers it.
"""

import gymnasium

from autoprune.envs.episode import (
    FEATURES,
    TARGET_FEATURE,
    EpisodeCore,
    GroupFacts,
    check_target_range,
    group_facts,
    parse_target_range,
    replay,
)
from autoprune.envs.factory import ENV_NAMES, EnvConfig, build_parts, make_env
from autoprune.envs.pruning_envs import EvaluateFn, LayerPruningEnv, RatioVectorEnv
from autoprune.envs.rewards import REWARDS, Reward, get_reward

#: Gymnasium ids of the registered environments and their entry points (see :mod:`autoprune.envs.factory`).
ENV_IDS: dict[str, str] = {
    "autoprune/LayerPruning-v0": "autoprune.envs.factory:layer_pruning_entry",
    "autoprune/RatioVector-v0": "autoprune.envs.factory:ratio_vector_entry",
}
# The registry cannot know a LayerPruning episode's length (the number of searched groups of the space);
# its entry point adds a TimeLimit of that length. A RatioVector episode is always one step.
_MAX_EPISODE_STEPS: dict[str, int | None] = {"autoprune/LayerPruning-v0": None, "autoprune/RatioVector-v0": 1}

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in gymnasium.registry:
        gymnasium.register(id=_env_id, entry_point=_entry_point, max_episode_steps=_MAX_EPISODE_STEPS[_env_id])

__all__ = [
    "ENV_IDS",
    "ENV_NAMES",
    "FEATURES",
    "REWARDS",
    "TARGET_FEATURE",
    "EnvConfig",
    "EpisodeCore",
    "EvaluateFn",
    "GroupFacts",
    "LayerPruningEnv",
    "RatioVectorEnv",
    "Reward",
    "build_parts",
    "check_target_range",
    "get_reward",
    "group_facts",
    "make_env",
    "parse_target_range",
    "replay",
]
