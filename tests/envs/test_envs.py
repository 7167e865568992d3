"""The pruning environments: Gymnasium's and SB3's checkers, seeding, feasibility by clipping, rewards."""

from __future__ import annotations

import dataclasses
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from autoprune.envs import ENV_IDS, FEATURES, EpisodeCore, LayerPruningEnv, RatioVectorEnv, replay
from autoprune.errors import AutoPruneError


def _make(env_id: str, digits_supernet, **kwargs):  # type: ignore[no-untyped-def]
    return gymnasium.make(
        env_id, space=digits_supernet.space, evaluator=digits_supernet.evaluator(), fidelity=1, **kwargs
    ).unwrapped


def _episode(env, rng: np.random.Generator):  # type: ignore[no-untyped-def]
    env.reset(seed=int(rng.integers(1000)))
    while True:
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated or truncated:
            return reward, info


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_checkers_pass(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make(env_id, digits_supernet)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env)  # every check, the close check too: it re-makes the env from its (deep-copied) spec
    assert not [str(w.message) for w in caught if "WARN" in str(w.message)]  # Gymnasium's logger warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 recommends a [-1, 1] action box; ours is [0, 1] by design
        sb3_check_env(_make(env_id, digits_supernet), warn=False)
    env.close()
    env.close()


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_same_seed_same_candidates(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    runs = []
    for _ in range(2):
        env = _make(env_id, digits_supernet)
        rng = np.random.default_rng(3)
        runs.append([_episode(env, rng)[1]["counts"] for _ in range(3)])
    assert runs[0] == runs[1]
    assert len({tuple(sorted(c.items())) for c in runs[0]}) > 1


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_every_finished_episode_feasible(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make(env_id, digits_supernet)
    space = digits_supernet.space
    rng = np.random.default_rng(0)
    for _ in range(4):
        reward, info = _episode(env, rng)
        assert space.feasible(info["counts"])
        assert info["macs_ratio"] <= space.target + 1e-9
        assert 0.0 <= info["accuracy"] <= 1.0 and reward == pytest.approx(info["accuracy"])


def test_clipping_alone_is_feasible(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    """Without the projection: random, all-ones and all-zeros actions end within the budget; it only fills."""
    space = digits_supernet.space
    core = EpisodeCore(space)
    rng = np.random.default_rng(0)
    policies = [lambda: rng.uniform(), lambda: 1.0, lambda: 0.0, lambda: float(rng.uniform() > 0.5)]
    used = []
    for i in range(200):
        core.reset()
        policy = policies[i % len(policies)]
        while not core.done:
            core.step(policy())
        assert space.feasible(core.counts), core.counts
        assert space.project(space.ratios(core.counts), fill=False) == core.counts  # nothing left to shrink
        counts, projected = core.final_counts()
        # the projection only fills what the episode left of the budget: never lower, always saturated
        assert space.feasible(counts) and space.saturated(counts)
        assert projected == (counts != core.counts) and all(counts[n] >= core.counts[n] for n in space.names)
        used.append(space.cost(core.counts))
    # the lower clip (budget_slack=0.02) keeps episodes near the budget
    assert np.mean([u >= space.target - 0.02 for u in used]) > 0.9


def test_replay_reproduces_counts(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    core = EpisodeCore(space)
    for counts in (space.uniform(1.0), space.smallest(), space.sample(np.random.default_rng(1))):
        observations, actions = replay(core, counts)
        assert core.counts == counts and len(actions) == len(space.groups) == len(observations) - 1
        assert all(o.shape == (len(FEATURES),) and o.min() >= 0 and o.max() <= 1 for o in observations)


def test_layer_env_observation_tracks_episode(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make("autoprune/LayerPruning-v0", digits_supernet)
    obs, _ = env.reset(seed=0)
    assert obs[FEATURES.index("index")] == 0 and obs[FEATURES.index("macs_removed")] == 0
    obs, reward, terminated, _, info = env.step(np.array([0.0], dtype=np.float32))
    assert reward == 0.0 and not terminated and info["group"] == digits_supernet.space.names[0]
    assert obs[FEATURES.index("macs_removed")] > 0 and obs[FEATURES.index("previous_action")] == pytest.approx(0.5)


def test_ratio_vector_env_matches_layer_env(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    layer, vector = (_make(i, digits_supernet) for i in sorted(ENV_IDS))
    actions = np.random.default_rng(5).uniform(size=len(digits_supernet.space.groups)).astype(np.float32)
    layer.reset(seed=0)
    for a in actions:
        *_, info = layer.step(np.array([a]))
    vector.reset(seed=0)
    *_, vinfo = vector.step(actions)
    assert info["counts"] == vinfo["counts"]


def test_rewards_and_errors(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    env = _make("autoprune/LayerPruning-v0", digits_supernet, reward="accuracy_log_macs")
    reward, info = _episode(env, np.random.default_rng(0))
    assert reward < 0 and reward == pytest.approx(-(1 - info["accuracy"]) * np.log(env.last_result.macs))
    ev = digits_supernet.evaluator()
    timed = LayerPruningEnv(digits_supernet.space, lambda c: dataclasses.replace(ev.evaluate(c, 1), latency_ms=2.0),
                            reward="accuracy_log_latency")
    reward, info = _episode(timed, np.random.default_rng(0))
    assert info["latency_ms"] == 2.0 and reward == pytest.approx(-(1 - info["accuracy"]) * np.log(2000.0))
    with pytest.raises(AutoPruneError, match="unknown reward"):
        LayerPruningEnv(digits_supernet.space, digits_supernet.evaluator(), reward="acc")
    with pytest.raises(AutoPruneError, match="needs a latency"):
        LayerPruningEnv(digits_supernet.space, digits_supernet.evaluator(), reward="accuracy_log_latency")
    with pytest.raises(AutoPruneError, match="budget_slack"):
        RatioVectorEnv(digits_supernet.space, digits_supernet.evaluator(), budget_slack=0.9)
    with pytest.raises(AutoPruneError, match="one per group"):
        RatioVectorEnv(digits_supernet.space, digits_supernet.evaluator()).step(np.zeros(2, dtype=np.float32))


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_sb3_learns_on_env_unchanged(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    """SB3's own learn() loop runs on both environments (PPO over episodes, or as a bandit)."""
    from stable_baselines3 import PPO

    env = gymnasium.make(env_id, space=digits_supernet.space, evaluator=digits_supernet.evaluator(), fidelity=1)
    steps = len(digits_supernet.space.groups) if env_id.endswith("LayerPruning-v0") else 4
    model = PPO("MlpPolicy", env, n_steps=steps, batch_size=steps, n_epochs=1, seed=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.learn(total_timesteps=2 * steps)
    assert model.num_timesteps == 2 * steps
