"""Greedy slimming: walks down from full width, flags its over-budget probes, ends feasible."""

from __future__ import annotations

from typing import Any

import pytest

from autoprune.search import GreedySearcher, SearchConfig, run_search
from autoprune.search_spaces import SearchSpace, load_space

GROUPS = ("layer2.1.conv1", "layer3.0.conv1", "layer3.1.conv1", "layer3.2.conv1")


@pytest.fixture(scope="module")
def small_space(digits_supernet: Any) -> SearchSpace:
    """Four inner convs, target halfway between their smallest and the dense MACs: a short slimming."""
    spec = {"metric": "macs", "target": 1.0, "round_to": 4, "defaults": {"min_ratio": 0.25, "step": 0.125},
            "groups": {g: {} for g in GROUPS}}
    space = load_space(spec, digits_supernet.space.structure)
    return load_space(spec, digits_supernet.space.structure, target=(1 + space.min_cost()) / 2)


def test_greedy_ends_with_a_feasible_best_and_flags_its_probes(digits_supernet: Any, small_space: SearchSpace) -> None:
    space = small_space
    searcher = GreedySearcher(space, step=1)
    result = run_search(searcher, digits_supernet.evaluator(), SearchConfig(trials=400), progress=False)
    trials = result.trials
    assert trials[0].counts == space.largest()
    assert all(t.feasible == space.feasible(t.counts) for t in trials)
    assert any(not t.feasible for t in trials)  # probes above the budget were evaluated, and said so
    assert result.best is not None and space.feasible(result.best.counts)
    assert space.cost(searcher.current) <= space.target + 1e-9  # slimming ran to the budget, no projection
    assert len(trials) < 400  # it stopped by itself
    # every move shrank exactly one group, and cost went down each round
    costs = [r["cost"] for r in searcher.rounds]
    assert costs == sorted(costs, reverse=True)


def test_greedy_with_a_small_trial_budget_still_ends_feasible(digits_supernet: Any) -> None:
    space = digits_supernet.space
    result = run_search(GreedySearcher(space), digits_supernet.evaluator(), SearchConfig(trials=15),
                        progress=False)
    assert len(result.trials) <= 15
    assert result.trials[-1].feasible and result.best is not None


def test_greedy_is_deterministic(digits_supernet: Any, small_space: SearchSpace) -> None:
    space = small_space
    runs = [run_search(GreedySearcher(space, step=1), digits_supernet.evaluator(), SearchConfig(trials=30),
                       progress=False) for _ in range(2)]
    assert [t.counts for t in runs[0].trials] == [t.counts for t in runs[1].trials]
