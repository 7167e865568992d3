"""The environments and what they hold pickle and deep-copy: Gymnasium's checker and SB3's SubprocVecEnv need it.

A search space holds a ModelStructure whose Torch-Pruning dependency graph keeps the autograd nodes of its trace
(and a module reference); the supernet's channel gates reach that structure from inside the model's hooks. A
copy leaves the graph out and traces its own model again on first use.
"""

from __future__ import annotations

import copy
import functools
import pickle

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import SubprocVecEnv

from autoprune.envs import ENV_IDS, make_env


def _copies(obj):  # type: ignore[no-untyped-def]
    return {"pickle": pickle.loads(pickle.dumps(obj)), "deepcopy": copy.deepcopy(obj)}


def _play(env, actions):  # type: ignore[no-untyped-def]
    """Steps ``actions`` (or until the episode ends): observations, rewards, flags and final counts."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((obs.tolist(), reward, terminated, truncated, info.get("counts")))
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_pickled_env_continues_the_same(env_id: str, digits_supernet) -> None:  # type: ignore[no-untyped-def]
    """Pickled or deep-copied mid-episode (wrappers and all), a copy gives the same observations and rewards."""
    env = gymnasium.make(env_id, space=digits_supernet.space, evaluator=digits_supernet.evaluator(), fidelity=1)
    rng = np.random.default_rng(0)
    actions = [rng.uniform(size=env.action_space.shape).astype(np.float32) for _ in range(40)]
    first, _ = env.reset(seed=7)
    if env_id.endswith("LayerPruning-v0"):
        env.step(actions[0])  # mid-episode: the copy must carry the episode's state
    copies = _copies(env)
    expected = _play(env, actions[1:])
    assert expected[-1][2] and expected[-1][4] is not None  # the episode ended and was evaluated
    for how, other in copies.items():
        assert _play(other, actions[1:]) == expected, how
        assert [o.tolist() for o in (other.reset(seed=3)[0], env.reset(seed=3)[0])] == [first.tolist()] * 2, how
        assert other.unwrapped.space.to_dict() == env.unwrapped.space.to_dict()


def test_structure_supernet_and_evaluator_copies_agree(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    evaluator = digits_supernet.evaluator()
    counts = space.sample(np.random.default_rng(2))
    for how, (space2, evaluator2) in _copies((space, evaluator)).items():
        structure, structure2 = space.structure, space2.structure
        assert [(g.name, g.channels, g.members, g.macs) for g in structure2.groups] == [
            (g.name, g.channels, g.members, g.macs) for g in structure.groups
        ], how
        assert structure2.predict_macs(counts) == structure.predict_macs(counts)
        assert space2.project(space2.ratios(counts)) == space.project(space.ratios(counts))
        assert structure2.dg is not structure.dg and structure2.model is not structure.model
        a, b = evaluator.evaluate(counts, 2), evaluator2.evaluate(counts, 2)
        assert (a.accuracy, a.loss, a.macs, a.params) == (b.accuracy, b.loss, b.macs, b.params), how
        # the copied supernet's gates act on the copied model: masked == extracted, and == the original's
        net, net2 = digits_supernet.supernet, evaluator2.supernet
        x = digits_supernet.splits.calibration_loader(8, seed=0).__iter__().__next__()[0]
        with torch.no_grad(), net2.active(counts):
            masked = net2.eval()(x)
        with torch.no_grad():
            extracted, original = net2.extract(counts, bn_batches=0)(x), net.extract(counts, bn_batches=0)(x)
        torch.testing.assert_close(masked, extracted, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(extracted, original)


@pytest.mark.slow  # multi-process or many epochs: kept out of the ~10 min fast suite
def test_subproc_vec_env_default_start_method(digits_supernet, supernet_file) -> None:  # type: ignore[no-untyped-def]
    """SB3's SubprocVecEnv with its default start method (forkserver on Linux) pickles each env factory:
    one captures the space and evaluator objects, the other builds the env from the supernet file."""
    env_fns = [
        functools.partial(gymnasium.make, "autoprune.envs:autoprune/LayerPruning-v0", space=digits_supernet.space,
                          evaluator=digits_supernet.evaluator(), fidelity=1),
        functools.partial(make_env, "layer", supernet=supernet_file, fidelity=1, bn_batches=2, val_batch_size=64),
    ]  # fmt: skip
    venv = SubprocVecEnv(env_fns)
    try:
        obs = venv.reset()
        assert obs.shape == (2, *venv.observation_space.shape)
        np.testing.assert_array_equal(obs[0], obs[1])  # the same supernet and space, built two ways
        obs, rewards, dones, _ = venv.step(np.full((2, 1), 0.5, dtype=np.float32))
        assert obs.shape == (2, *venv.observation_space.shape) and rewards.tolist() == [0.0, 0.0]
        assert not dones.any()
        assert venv.get_attr("episode_length") == [len(digits_supernet.space.groups)] * 2
    finally:
        venv.close()
