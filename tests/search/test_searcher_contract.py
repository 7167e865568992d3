"""The contract every registered searcher keeps (one suite, parametrized over ``SEARCHERS.names()``).

Random, greedy, sub-model sampling, the Optuna samplers and the RL agents alike: every evaluated candidate
meets the budget (except greedy slimming's flagged probes), the same seed gives the same history, a failed
evaluation does not crash the search, and a resumed search continues the count without repeating an
evaluation. Every searcher runs with its ``fast_options``, so that model-based searchers leave their random
start-up phase within the suite's few trials and their model proposes (and learns from) candidates too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from autoprune.evaluate import Evaluator
from autoprune.search import SEARCHERS, SearchConfig, Searcher, Trial, make_searcher, run_search

NAMES = SEARCHERS.names()
TRIALS = 6


def _make(name: str, space: Any, seed: int) -> Searcher:
    return make_searcher(name, space, seed=seed, **SEARCHERS.get(name).fast_options)


def _history(result: Any) -> list[tuple[Any, ...]]:
    return [(t.number, t.state, sorted(t.counts.items()), t.accuracy, t.feasible) for t in result.trials]


@pytest.mark.parametrize("name", NAMES)
def test_every_evaluated_candidate_meets_the_budget(name: str, shared: tuple[Any, Evaluator], recording: Any) -> None:
    space, inner = shared
    evaluator = recording(inner)
    searcher = _make(name, space, seed=0)
    result = run_search(searcher, evaluator, SearchConfig(trials=TRIALS), progress=False)
    assert result.trials and len(result.trials) <= TRIALS
    for counts in evaluator.candidates:
        if not space.feasible(counts):
            assert searcher.proposes_infeasible, f"{name} evaluated {counts} beyond the budget"
    for t in result.trials:
        assert t.feasible == space.feasible(t.counts)
        assert t.feasible or searcher.proposes_infeasible
    assert result.best is not None and space.feasible(result.best.counts)
    assert all(space.feasible(t.counts) for t in result.pareto)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_history(name: str, shared: tuple[Any, Evaluator], recording: Any) -> None:
    space, inner = shared
    runs = [
        run_search(_make(name, space, seed=3), recording(inner), SearchConfig(trials=TRIALS), progress=False)
        for _ in range(2)
    ]
    assert _history(runs[0]) == _history(runs[1])


@pytest.mark.parametrize("name", NAMES)
def test_a_failed_evaluation_does_not_stop_the_search(
    name: str, shared: tuple[Any, Evaluator], recording: Any
) -> None:
    space, inner = shared
    evaluator = recording(inner, fail_on={0})
    result = run_search(_make(name, space, seed=1), evaluator, SearchConfig(trials=TRIALS), progress=False)
    states = [t.state for t in result.trials]
    assert "failed" in states
    failed = states.index("failed")
    assert result.trials[failed].error and "injected" in result.trials[failed].error
    assert len(result.trials) > failed + 1, f"{name} stopped after the failed trial"
    assert any(s == "complete" for s in states[failed + 1 :])


@pytest.mark.parametrize("name", NAMES)
def test_resume_continues_the_count(
    name: str, shared: tuple[Any, Evaluator], recording: Any, tmp_path: Path
) -> None:
    space, inner = shared
    first = run_search(_make(name, space, seed=2), recording(inner), SearchConfig(trials=3),
                       out=tmp_path, progress=False)  # fmt: skip
    k = len(first.trials)
    assert k == 3 or (name == "greedy" and 1 <= k < 3)  # greedy stops once it reaches the budget
    evaluator = recording(inner)
    searcher = _make(name, space, seed=2)
    second = run_search(searcher, evaluator, SearchConfig(trials=TRIALS), out=tmp_path, resume=True, progress=False)
    assert second.resumed_trials == k
    assert [t.number for t in second.trials] == list(range(len(second.trials)))
    assert _history(second)[:k] == _history(first)
    assert len(second.trials) == TRIALS or (name == "greedy" and len(second.trials) >= k)
    done = [sorted(t.counts.items()) for t in first.trials if t.state == "complete"]
    again = [c for c in evaluator.candidates if sorted(c.items()) in done]
    assert not again, "a finished candidate was evaluated again"
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == len(second.trials)


@pytest.mark.parametrize("name", ["random", "sampling", "greedy"])
def test_a_resumed_search_proposes_what_an_uninterrupted_one_would(
    name: str, shared: tuple[Any, Evaluator], recording: Any, tmp_path: Path
) -> None:
    """Searchers whose proposals come from their seed (and the results told) continue their own stream on
    resume: the remaining trials are new candidates, not the first ones drawn again."""
    space, inner = shared
    whole = run_search(_make(name, space, seed=5), recording(inner), SearchConfig(trials=TRIALS), progress=False)
    run_search(_make(name, space, seed=5), recording(inner), SearchConfig(trials=2), out=tmp_path, progress=False)
    resumed = run_search(_make(name, space, seed=5), recording(inner), SearchConfig(trials=TRIALS), out=tmp_path,
                         resume=True, progress=False)  # fmt: skip
    assert _history(resumed) == _history(whole)


@pytest.mark.parametrize("name", [n for n in NAMES if SEARCHERS.get(n).model_based])
def test_the_model_proposes_within_the_suite(name: str, shared: tuple[Any, Evaluator]) -> None:
    """With its fast options a model-based searcher leaves its start-up phase within the suite's trials."""
    space, inner = shared
    searcher = _make(name, space, seed=0)
    from_model: list[bool] = [not searcher.warming_up]  # before each ask: the start-up phase is over

    def after(trial: Trial) -> None:
        from_model.append(not searcher.warming_up)

    result = run_search(searcher, inner, SearchConfig(trials=TRIALS), progress=False, on_trial=after)
    assert sum(from_model[: len(result.trials)]) >= 3, f"{name}: only {from_model} proposals came from its model"
