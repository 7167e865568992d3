"""The contract every registered searcher keeps (one suite, parametrized over ``SEARCHERS.names()``).

Random, greedy, the Optuna samplers and the RL agents alike: every evaluated candidate meets the budget
(except greedy slimming's flagged probes), the same seed gives the same history, a failed evaluation
does not crash the search, and a resumed search continues the count without repeating an evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autoprune.evaluate import EvalResult, Evaluator, EvaluatorStats
from autoprune.search import SEARCHERS, SearchConfig, make_searcher, run_search

NAMES = SEARCHERS.names()
TRIALS = 6


class Recording(Evaluator):
    """Wraps an evaluator: records every candidate it is asked to score; fails on the given call numbers."""

    def __init__(self, inner: Evaluator, fail_on: tuple[int, ...] = ()) -> None:
        self.inner = inner
        self.max_fidelity = inner.max_fidelity
        self.calls: list[dict[str, int]] = []
        self.fail_on = set(fail_on)

    @property
    def stats(self) -> EvaluatorStats:
        return self.inner.stats

    def evaluate(self, counts: Mapping[str, int], fidelity: int | None = None) -> EvalResult:
        self.calls.append(dict(counts))
        if len(self.calls) in self.fail_on:
            raise RuntimeError("injected evaluation failure")
        return self.inner.evaluate(counts, fidelity)


@pytest.fixture(scope="module")
def shared(digits_supernet: Any) -> tuple[Any, Evaluator]:
    # One cached evaluator for the module: the same candidates recur across tests and cost nothing again.
    return digits_supernet.space, digits_supernet.evaluator()


def _history(result: Any) -> list[tuple[Any, ...]]:
    return [(t.number, t.state, sorted(t.counts.items()), t.accuracy, t.feasible) for t in result.trials]


@pytest.mark.parametrize("name", NAMES)
def test_every_evaluated_candidate_meets_the_budget(name: str, shared: tuple[Any, Evaluator]) -> None:
    space, inner = shared
    evaluator = Recording(inner)
    searcher = make_searcher(name, space, seed=0)
    result = run_search(searcher, evaluator, SearchConfig(trials=TRIALS), progress=False)
    assert result.trials and len(result.trials) <= TRIALS
    for counts in evaluator.calls:
        if not space.feasible(counts):
            assert searcher.proposes_infeasible, f"{name} evaluated {counts} beyond the budget"
    for t in result.trials:
        assert t.feasible == space.feasible(t.counts)
        assert t.feasible or searcher.proposes_infeasible
    assert result.best is not None and space.feasible(result.best.counts)
    assert all(space.feasible(t.counts) for t in result.pareto)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_history(name: str, shared: tuple[Any, Evaluator]) -> None:
    space, inner = shared
    runs = [
        run_search(make_searcher(name, space, seed=3), Recording(inner), SearchConfig(trials=TRIALS), progress=False)
        for _ in range(2)
    ]
    assert _history(runs[0]) == _history(runs[1])


@pytest.mark.parametrize("name", NAMES)
def test_a_failed_evaluation_does_not_stop_the_search(name: str, shared: tuple[Any, Evaluator]) -> None:
    space, inner = shared
    evaluator = Recording(inner, fail_on=(1,))
    result = run_search(make_searcher(name, space, seed=1), evaluator, SearchConfig(trials=TRIALS), progress=False)
    states = [t.state for t in result.trials]
    assert "failed" in states
    failed = states.index("failed")
    assert result.trials[failed].error and "injected" in result.trials[failed].error
    assert len(result.trials) > failed + 1, f"{name} stopped after the failed trial"
    assert any(s == "complete" for s in states[failed + 1 :])


@pytest.mark.parametrize("name", NAMES)
def test_resume_continues_the_count(name: str, shared: tuple[Any, Evaluator], tmp_path: Path) -> None:
    space, inner = shared
    first = run_search(make_searcher(name, space, seed=2), Recording(inner), SearchConfig(trials=3),
                       out=tmp_path, progress=False)  # fmt: skip
    k = len(first.trials)
    assert k == 3 or (name == "greedy" and 1 <= k < 3)  # greedy stops once it reaches the budget
    evaluator = Recording(inner)
    searcher = make_searcher(name, space, seed=2)
    second = run_search(searcher, evaluator, SearchConfig(trials=TRIALS), out=tmp_path, resume=True, progress=False)
    assert second.resumed_trials == k
    assert [t.number for t in second.trials] == list(range(len(second.trials)))
    assert _history(second)[:k] == _history(first)
    assert len(second.trials) == TRIALS or (name == "greedy" and len(second.trials) >= k)
    done = [sorted(t.counts.items()) for t in first.trials if t.state == "complete"]
    assert not [c for c in evaluator.calls if sorted(c.items()) in done], "a finished candidate was evaluated again"
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(second.trials)
