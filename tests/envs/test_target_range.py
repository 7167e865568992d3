"""Budget-conditioned environments: the target drawn per episode, in the observation, met by every episode."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from autoprune.envs import ENV_IDS, FEATURES, TARGET_FEATURE, EnvConfig, EpisodeCore, LayerPruningEnv, make_env
from autoprune.errors import AutoPruneError

RANGE = (0.3, 0.7)


def _make(env_id: str, digits_supernet, **kwargs):  # type: ignore[no-untyped-def]
    return gymnasium.make(env_id, space=digits_supernet.space, evaluator=digits_supernet.evaluator(), fidelity=1,
                          target_range=RANGE, **kwargs).unwrapped


def _episode(env, seed: int, options=None):  # type: ignore[no-untyped-def]
    obs, info = env.reset(seed=seed, options=options)
    first = obs
    while True:
        obs, _, terminated, truncated, final = env.step(env.action_space.sample())
        if terminated or truncated:
            return first, info, final


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_conditioned_envs_pass_both_checkers(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make(env_id, digits_supernet)
    fixed = gymnasium.make(env_id, space=digits_supernet.space, evaluator=digits_supernet.evaluator()).unwrapped
    assert env.observation_space.shape[0] == fixed.observation_space.shape[0] + 1  # one more feature: the target
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)
    assert not [str(w.message) for w in caught if "WARN" in str(w.message)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sb3_check_env(_make(env_id, digits_supernet), warn=False)


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_each_episode_meets_its_own_target(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make(env_id, digits_supernet)
    space = digits_supernet.space
    targets = []
    for seed in range(6):
        obs, info, final = _episode(env, seed)
        target = info["target"]
        assert RANGE[0] <= target <= RANGE[1] and obs[-1] == pytest.approx(target) and final["target"] == target
        at_target = dataclasses.replace(space, target=target)
        assert at_target.feasible(final["counts"]) and at_target.saturated(final["counts"])
        targets.append(target)
    assert len(set(targets)) == len(targets)  # drawn per episode, from the env's generator
    assert [_episode(env, s)[1]["target"] for s in range(6)] == targets  # the same seeds, the same targets
    obs, info, final = _episode(env, 0, options={"target": 0.4})
    assert info["target"] == 0.4 and obs[-1] == pytest.approx(0.4)
    assert final["cost"] <= 0.4 + 1e-9
    with pytest.raises(AutoPruneError, match=r"outside the target range 0\.3:0\.7"):
        env.reset(options={"target": 0.9})


def test_without_a_range_nothing_changes(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = gymnasium.make("autoprune/LayerPruning-v0", space=digits_supernet.space,
                         evaluator=digits_supernet.evaluator()).unwrapped
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(FEATURES),) and "target" not in info
    with pytest.raises(AutoPruneError, match=r"fixed target 0\.5"):
        env.reset(options={"target": 0.4})
    core = EpisodeCore(digits_supernet.space, target_range="0.3:0.7")
    assert core.features == (*FEATURES, TARGET_FEATURE) and core.target == 0.7


def test_bad_ranges_are_refused(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space, ev = digits_supernet.space, digits_supernet.evaluator()
    with pytest.raises(AutoPruneError, match="0 < low <= high <= 1"):
        LayerPruningEnv(space, ev, target_range=(0.7, 0.3))
    with pytest.raises(AutoPruneError, match="low:high"):
        LayerPruningEnv(space, ev, target_range="half")
    with pytest.raises(AutoPruneError, match="cannot be met"):
        LayerPruningEnv(space, ev, target_range=(0.01, 0.5))
    with pytest.raises(AutoPruneError, match="budget_slack"):
        LayerPruningEnv(space, ev, target_range=(0.3, 0.7), budget_slack=0.3)
    with pytest.raises(AutoPruneError, match="outside target_range"):
        EnvConfig(target_macs=0.8, target_range=(0.3, 0.7))


def test_make_env_takes_a_range(supernet_file) -> None:  # type: ignore[no-untyped-def]
    env = make_env("layer", supernet=supernet_file, target_range="0.3:0.7", fidelity=1, bn_batches=2,
                   val_batch_size=64)
    assert env.unwrapped.target_range == RANGE and env.unwrapped.space.target == 0.7
    obs, info = env.reset(seed=1)
    assert obs[-1] == pytest.approx(info["target"]) and RANGE[0] <= info["target"] <= RANGE[1]
    np.testing.assert_array_equal(env.reset(seed=1)[0], obs)
