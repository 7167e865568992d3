"""One policy, every budget: a budget-conditioned agent answers each target of its range; saved, it answers alike."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from autoprune.errors import AutoPruneError
from autoprune.search import SearchConfig, make_searcher, run_search
from autoprune.search.rl import RLSearcher, SavedPolicy, save_policy, space_fingerprint
from autoprune.search.rl.policy import sidecar_path

FAST = {"warmup": 3, "net_arch": (32, 32), "batch_size": 16, "episodes_per_update": 2}
RANGE = (0.3, 0.7)


def _trained(name: str, shared, trials: int = 8, **options):  # type: ignore[no-untyped-def]
    space, evaluator = shared
    searcher = make_searcher(name, space, seed=0, target_range=RANGE, **FAST, **options)
    assert isinstance(searcher, RLSearcher)
    result = run_search(searcher, evaluator, SearchConfig(trials=trials), progress=False)
    return searcher, result


@pytest.mark.parametrize("name", ["ddpg", "ppo"])
def test_one_agent_answers_two_targets_each_within_its_budget(name: str, shared) -> None:  # type: ignore[no-untyped-def]
    space, _ = shared
    searcher, result = _trained(name, shared)
    targets = [t.info["target"] for t in result.trials]
    assert all(RANGE[0] <= t <= RANGE[1] for t in targets) and len(set(targets)) == len(targets)
    for trial in result.trials:  # every episode met its own target, and spent it
        at = dataclasses.replace(space, target=trial.info["target"])
        assert at.feasible(trial.counts) and at.saturated(trial.counts)
    answers = {t: searcher.answer(t) for t in (0.35, 0.6)}
    assert answers[0.35] != answers[0.6]
    for target, counts in answers.items():
        at = dataclasses.replace(space, target=target)
        assert at.feasible(counts) and at.saturated(counts), (target, at.cost(counts))
        assert searcher.answer(target) == counts  # deterministic: no exploration
    assert searcher.state()["target_range"] == list(RANGE) and searcher.space.target == RANGE[1]


def test_saved_policy_loads_and_answers_alike(shared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    space, _ = shared
    searcher, _ = _trained("td3", shared)
    zip_path, side = save_policy(searcher, tmp_path / "policy.zip", meta={"model": "resnet20", "dataset": "digits"})
    assert zip_path.is_file() and side == sidecar_path(zip_path)
    info = json.loads(side.read_text())
    assert info["searcher"] == "td3" and info["target_range"] == list(RANGE) and info["metric"] == "macs"
    assert info["fingerprint"] == space_fingerprint(space) and info["model"] == "resnet20"
    assert list(info["space"]["groups"]) == space.names and info["features"][-1] == "target"
    saved = SavedPolicy.load(zip_path)
    for target in (0.32, 0.45, 0.68):
        assert saved.answer(space, target) == searcher.answer(target)


def test_a_policy_refuses_what_it_was_not_trained_for(shared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    space, _ = shared
    searcher, _ = _trained("ddpg", shared, trials=4)
    zip_path, _ = save_policy(searcher, tmp_path / "policy.zip")
    saved = SavedPolicy.load(zip_path)
    with pytest.raises(AutoPruneError, match=r"0\.8 is outside the range .* trained on \(0\.3:0\.7\)"):
        saved.answer(space, 0.8)
    with pytest.raises(AutoPruneError, match=r"outside the target range 0\.3:0\.7"):
        searcher.answer(0.2)
    params = dataclasses.replace(space, metric="params", target=0.7)
    with pytest.raises(AutoPruneError, match=r"another search space .*budget metric is macs, not params"):
        saved.answer(params, 0.5)
    first = space.groups[0]
    narrower = dataclasses.replace(space, groups=(dataclasses.replace(first, choices=first.choices[1:]),
                                                  *space.groups[1:]))
    with pytest.raises(AutoPruneError, match=f"group '{first.name}' has choices"):
        saved.answer(narrower, 0.5)
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(zip_path, alone / "policy.zip")
    with pytest.raises(AutoPruneError, match=r"sidecar policy\.json is missing"):
        SavedPolicy.load(alone / "policy.zip")
    (alone / "policy.json").write_text('{"searcher": "ddpg"}')
    with pytest.raises(AutoPruneError, match="not a policy sidecar"):
        SavedPolicy.load(alone / "policy.zip")
    with pytest.raises(AutoPruneError, match="no such file"):
        SavedPolicy.load(tmp_path / "nothing.zip")


def test_the_search_saves_its_policy_when_it_ends(shared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    searcher, _ = _trained("sac", shared, trials=4, save_policy=str(tmp_path / "run" / "policy.zip"),
                           policy_meta={"model": "resnet20", "supernet": "sn.pt"})
    saved = SavedPolicy.load(tmp_path / "run" / "policy.zip")
    assert saved.info.episodes == 4 and saved.info.supernet == "sn.pt" and saved.info.searcher == "sac"
    assert saved.answer(searcher.space, 0.5) == searcher.answer(0.5)


def test_a_fixed_target_searcher_answers_its_own_target_only(shared) -> None:  # type: ignore[no-untyped-def]
    space, evaluator = shared
    searcher = make_searcher("ddpg", space, seed=0, **FAST)
    assert isinstance(searcher, RLSearcher)
    run_search(searcher, evaluator, SearchConfig(trials=4), progress=False)
    assert space.feasible(searcher.answer())
    with pytest.raises(AutoPruneError, match=r"fixed target 0\.5"):
        searcher.answer(0.4)
