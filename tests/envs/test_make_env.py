"""make_env and gymnasium.make with settings: one call from a supernet file (or model, data, budget) to an env."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from autoprune.envs import ENV_NAMES, EnvConfig, LayerPruningEnv, RatioVectorEnv, make_env
from autoprune.errors import AutoPruneError

_FAST = {"fidelity": 1, "bn_batches": 2, "val_batch_size": 64}  # as the digits_supernet.evaluator() of conftest


@pytest.mark.parametrize("kind", sorted(ENV_NAMES))
def test_make_env_passes_both_checkers(kind: str, supernet_file) -> None:  # type: ignore[no-untyped-def]
    env = make_env(kind, supernet=supernet_file, **_FAST)
    assert isinstance(env.unwrapped, {"layer": LayerPruningEnv, "vector": RatioVectorEnv}[kind])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym_check_env(env.unwrapped)  # every check; the close check re-makes it from the (small) spec
    assert not [str(w.message) for w in caught if "WARN" in str(w.message)]  # Gymnasium's logger warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SB3 recommends a [-1, 1] action box; ours is [0, 1] by design
        sb3_check_env(env, warn=False)
    env.close()


@pytest.mark.parametrize("kind", sorted(ENV_NAMES))
def test_make_env_equals_env_on_the_objects(kind: str, digits_supernet, supernet_file) -> None:  # type: ignore[no-untyped-def]
    """The env from the file has the same space, candidates and accuracies as one on the in-memory supernet."""
    from_file = make_env(kind, supernet=supernet_file, **_FAST)
    from_objects = gymnasium.make(ENV_NAMES[kind], space=digits_supernet.space, evaluator=digits_supernet.evaluator(),
                                  fidelity=1)
    assert from_file.unwrapped.space.to_dict() == digits_supernet.space.to_dict()
    rng = np.random.default_rng(4)
    actions = [rng.uniform(size=from_file.action_space.shape).astype(np.float32) for _ in range(20)]
    runs = []
    for env in (from_file, from_objects):
        env.reset(seed=0)
        for action in actions:
            *_, terminated, _, info = env.step(action)
            if terminated:
                break
        runs.append((info["counts"], info["accuracy"], info["reward"]))
    assert runs[0] == runs[1]


def test_episode_length_is_the_time_limit(digits_supernet, supernet_file) -> None:  # type: ignore[no-untyped-def]
    n_groups = len(digits_supernet.space.groups)
    assert gymnasium.spec("autoprune/RatioVector-v0").max_episode_steps == 1
    for kind, length in (("layer", n_groups), ("vector", 1)):
        env = make_env(kind, supernet=supernet_file, **_FAST)
        objects = gymnasium.make(ENV_NAMES[kind], space=digits_supernet.space, evaluator=digits_supernet.evaluator())
        assert env.spec.max_episode_steps == objects.spec.max_episode_steps == length
        assert env.unwrapped.episode_length == length
        env.reset(seed=0)
        flags = [env.step(env.action_space.sample())[2:4] for _ in range(length)]
        assert flags[-1] == (True, True) and not any(any(f) for f in flags[:-1])  # ends exactly at the limit


def test_gymnasium_make_takes_the_settings(supernet_file) -> None:  # type: ignore[no-untyped-def]
    env = gymnasium.make("autoprune/LayerPruning-v0", supernet=supernet_file, target_macs=0.4,
                         reward="accuracy_log_macs", **_FAST)
    assert env.unwrapped.space.target == 0.4 and env.unwrapped.space.metric == "macs"
    config = EnvConfig(supernet=supernet_file, target_params=0.6, **_FAST)
    env = gymnasium.make("autoprune/RatioVector-v0", config=config, budget_slack=None)
    assert (env.unwrapped.space.metric, env.unwrapped.space.target) == ("params", 0.6)
    assert env.unwrapped.core.budget_slack is None
    made = make_env("vector", config, seed=1)
    assert made.spec.kwargs == {"config": dataclasses.replace(config, seed=1)}  # small: names, numbers, a path


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"target_mac": 0.5}, "unknown environment setting.*'target_mac'.*target_macs"),
        ({"target_macs": 1.7}, r"target=1.7 must be in \(0, 1\]"),
        ({"target_macs": 0.5, "target_params": 0.5}, "give one budget"),
        ({"supernet": "x.pt", "checkpoint": "y.pt"}, "give one of them"),
        ({"supernet": "no/such/supernet.pt"}, "is not a file"),
        ({"reward": "acc"}, "unknown reward"),
        ({"fidelity": 0}, "fidelity=0 must be an integer >= 1"),
        ({"device": "tpu"}, "not a device"),
    ],
)
def test_make_env_errors_name_the_fix(settings: dict[str, Any], match: str) -> None:
    with pytest.raises(AutoPruneError, match=match):
        make_env("layer", **settings)


def test_unknown_env_name() -> None:
    with pytest.raises(AutoPruneError, match="unknown environment 'layers'; use one of layer, vector"):
        make_env("layers")


def test_make_env_builds_a_supernet_and_saves_it(digits_supernet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Without a supernet file, make_env trains one as `autoprune search` does (here from a dense checkpoint,
    one sandwich epoch), and writes it where the next call can load it."""
    from autoprune.models import save_checkpoint

    dense = save_checkpoint(digits_supernet.dense, tmp_path / "dense.pt")
    saved = tmp_path / "sn" / "supernet.pt"
    built = make_env("vector", model="resnet20", dataset="digits", checkpoint=dense, supernet_epochs=1,
                     save_supernet=saved, target_macs=0.6, **_FAST)
    loaded = make_env("vector", supernet=saved, target_macs=0.6, **_FAST)
    assert loaded.unwrapped.space.to_dict() == built.unwrapped.space.to_dict()
    assert built.unwrapped.space.target == 0.6 and built.unwrapped.space.names == digits_supernet.space.names
    action = np.full(built.action_space.shape, 0.3, dtype=np.float32)
    results = [env.reset(seed=0) and env.step(action)[4] for env in (built, loaded)]
    assert (results[0]["counts"], results[0]["accuracy"]) == (results[1]["counts"], results[1]["accuracy"])
    untrained = make_env("layer", train_epochs=0, supernet_epochs=0, **_FAST)  # no checkpoint: trains 0 epochs
    assert untrained.unwrapped.space.names == digits_supernet.space.names


def test_sb3_make_vec_env_with_settings(supernet_file) -> None:  # type: ignore[no-untyped-def]
    """SB3's make_vec_env asks for render_mode="rgb_array" first and retries without it on a TypeError."""
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("autoprune.envs:autoprune/RatioVector-v0", n_envs=1,
                        env_kwargs={"supernet": supernet_file, **_FAST})  # fmt: skip
    venv.reset()
    _, rewards, dones, infos = venv.step(np.full((1, *venv.action_space.shape), 0.5, dtype=np.float32))
    assert dones.tolist() == [True] and infos[0]["episode"]["l"] == 1 and not infos[0]["TimeLimit.truncated"]
    assert rewards[0] == pytest.approx(infos[0]["accuracy"])
    venv.close()
    with pytest.raises(TypeError, match="does not render"):
        gymnasium.make("autoprune/LayerPruning-v0", render_mode="human", supernet=supernet_file)
