"""The SB3 searchers: feasible proposals, determinism, failures, resume, and a short DDPG search on digits."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from autoprune.errors import AutoPruneError
from autoprune.search import SearchConfig, Trial, TrialLog, make_searcher, run_search
from autoprune.search.rl import RLSearcher

ALGORITHMS = ("ddpg", "td3", "sac", "ppo")
FAST = {"warmup": 3, "net_arch": (32, 32), "batch_size": 16, "episodes_per_update": 2}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_feasible_and_deterministic(name: str, digits_supernet, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    histories = []
    for _ in range(2):
        searcher = make_searcher(name, space, seed=1, **FAST)
        assert isinstance(searcher, RLSearcher)
        result = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=8), progress=False)
        assert all(space.feasible(t.counts) for t in result.trials)
        histories.append([(t.counts, t.accuracy) for t in result.trials])
    assert histories[0] == histories[1]
    assert len({tuple(sorted(c.items())) for c, _ in histories[0]}) > 1  # the agent explores


EVERY_THIRD = set(range(2, 100, 3))  # 0-based calls that fail: a failed trial every third evaluation


@pytest.mark.parametrize("name", ["ddpg", "ppo"])
def test_failed_trials_and_resume(name: str, digits_supernet, recording, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    flaky = recording(digits_supernet.evaluator(), fail_on=EVERY_THIRD)
    first = run_search(make_searcher(name, space, seed=0, **FAST), flaky,
                       SearchConfig(trials=6), out=tmp_path / "a", progress=False)
    assert sum(t.state == "failed" for t in first.trials) == 2
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed = []
    for folder in ("a", "b"):  # the same log resumed twice: the same continuation
        searcher = make_searcher(name, space, seed=0, **FAST)
        flaky = recording(digits_supernet.evaluator(), fail_on=EVERY_THIRD)
        second = run_search(searcher, flaky, SearchConfig(trials=10),
                            out=tmp_path / folder, resume=True, progress=False)
        assert second.resumed_trials == 6 and [t.number for t in second.trials] == list(range(10))
        assert isinstance(searcher, RLSearcher) and searcher.episodes == 10
        assert all(space.feasible(t.counts) for t in second.trials)
        resumed.append([t.counts for t in second.trials])
    assert resumed[0] == resumed[1]


def test_options_are_checked(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(AutoPruneError, match=r"searcher 'ddpg' has no option 'warm_up'\. Did you mean 'warmup'"):
        make_searcher("ddpg", digits_supernet.space, warm_up=3)
    with pytest.raises(AutoPruneError, match="credit"):
        make_searcher("ddpg", digits_supernet.space, credit="all")
    with pytest.raises(AutoPruneError, match="unknown reward"):
        make_searcher("td3", digits_supernet.space, reward="acc")
    with pytest.raises(AutoPruneError, match="warmup"):
        make_searcher("ddpg", digits_supernet.space, warmup="many")
    searcher = make_searcher("sac", digits_supernet.space, warmup="4", net_arch="16,16", budget_slack="none")
    assert isinstance(searcher, RLSearcher)
    assert searcher.config.warmup == 4 and searcher.config.net_arch == (16, 16) and searcher.core.budget_slack is None


def test_tell_without_ask_replays_the_candidate(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    space = digits_supernet.space
    searcher = make_searcher("ddpg", space, seed=0, **FAST)
    result = digits_supernet.evaluator().evaluate(space.uniform(1.0))
    searcher.tell(Trial(0, space.uniform(1.0), "complete", result))
    searcher.tell(Trial(1, space.smallest(), "failed", None, error="boom"))
    assert searcher.episodes == 2 and searcher.model.replay_buffer.size() == len(space.groups)
    assert searcher.best is not None and searcher.best.number == 0


def test_ddpg_search_beats_uniform(digits_supernet) -> None:  # type: ignore[no-untyped-def]
    """A short AMC-style DDPG search ends near the budget and at least as accurate as uniform keep ratios."""
    space = digits_supernet.space
    evaluator = digits_supernet.evaluator()
    uniform = evaluator.evaluate(space.uniform(1.0))
    searcher = make_searcher("ddpg", space, seed=0, warmup=10)
    result = run_search(searcher, evaluator, SearchConfig(trials=40), progress=False)
    best = result.best
    assert best is not None and best.result is not None and space.feasible(best.counts)
    assert space.target - 0.02 <= best.result.macs_ratio <= space.target
    assert best.result.accuracy >= uniform.accuracy


@pytest.mark.parametrize("name", ["td3", "ppo"])
def test_budget_conditioned_resume_replays_each_trials_target(name: str, digits_supernet,
                                                             tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A resumed budget-conditioned search replays each logged episode at its recorded target."""
    space = digits_supernet.space
    options = {**FAST, "target_range": "0.3:0.7"}
    first = run_search(make_searcher(name, space, seed=0, **options), digits_supernet.evaluator(),
                       SearchConfig(trials=5), out=tmp_path / "a", progress=False)
    targets = [t.info["target"] for t in TrialLog(tmp_path / "a").read()]
    assert targets == [t.info["target"] for t in first.trials] and len(set(targets)) == 5
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    resumed = []
    for folder in ("a", "b"):
        searcher = make_searcher(name, space, seed=0, **options)
        second = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=8), out=tmp_path / folder,
                            resume=True, progress=False)
        assert isinstance(searcher, RLSearcher) and searcher.episodes == 8 and second.resumed_trials == 5
        assert set(searcher.baselines) <= {0, 1, 2, 3} and len(searcher.baselines) > 1  # one per slice
        for t in second.trials:
            assert dataclasses.replace(space, target=t.info["target"]).feasible(t.counts)
        resumed.append([(t.counts, t.info["target"]) for t in second.trials])
    assert resumed[0] == resumed[1]
