"""The search runner: budget, memo, failures, the trial log and resume, independent of any one searcher."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search import (
    Proposal,
    RandomSearcher,
    SearchConfig,
    Searcher,
    Trial,
    TrialLog,
    fidelity_rungs,
    run_search,
)
from autoprune.search.base import best_trial, pareto_front


class Fixed(Searcher):
    """Proposes a fixed list of candidates, then stops."""

    name = "fixed"

    def __init__(self, space: Any, candidates: list[dict[str, int]], *, seed: int = 0) -> None:
        super().__init__(space, seed=seed)
        self.candidates = list(candidates)

    def ask(self) -> Proposal | None:
        return Proposal(self.candidates.pop(0)) if self.candidates else None


def test_every_evaluated_candidate_meets_the_budget_and_the_log_matches(
    digits_supernet: Any, recording: Any, tmp_path: Path
) -> None:
    space = digits_supernet.space
    ev = recording(digits_supernet.evaluator())
    result = run_search(RandomSearcher(space, seed=1), ev, SearchConfig(trials=8), out=tmp_path, progress=False)
    assert len(result.trials) == 8
    assert all(space.feasible(c) for c, _ in ev.calls)
    logged = TrialLog(tmp_path).read()
    assert [t.to_dict() for t in logged] == [t.to_dict() for t in result.trials]
    rows = (tmp_path / "trials.csv").read_text().splitlines()
    assert len(rows) == 9 and rows[0].startswith("number,state")
    assert result.best is not None and result.best == best_trial(result.trials)
    assert result.best.accuracy == max(t.accuracy for t in result.trials if t.accuracy is not None)


def test_repeated_candidates_are_not_evaluated_again(digits_supernet: Any, recording: Any) -> None:
    space = digits_supernet.space
    a, b = space.uniform(1.0), space.smallest()
    ev = recording(digits_supernet.evaluator())
    result = run_search(Fixed(space, [a, b, a, a]), ev, SearchConfig(trials=4), progress=False)
    assert len(ev.calls) == 2  # the two repeats of `a` came from the memo
    assert result.evaluations == 2
    assert [t.info.get("memoized", False) for t in result.trials] == [False, False, True, True]
    assert result.trials[2].result == result.trials[0].result


def test_failed_and_non_finite_evaluations_become_failed_trials(digits_supernet: Any, recording: Any) -> None:
    space = digits_supernet.space
    ev = recording(digits_supernet.evaluator(), fail_on={0}, nan_on={1})
    candidates = [space.uniform(1.0), space.smallest(), space.uniform(0.8)]
    result = run_search(Fixed(space, candidates), ev, SearchConfig(trials=3), progress=False)
    assert [t.state for t in result.trials] == ["failed", "failed", "complete"]
    assert "injected" in (result.trials[0].error or "") and "non-finite" in (result.trials[1].error or "")
    assert result.best is result.trials[2]


def test_an_infeasible_proposal_is_refused_before_evaluation(digits_supernet: Any, recording: Any) -> None:
    space = digits_supernet.space
    ev = recording(digits_supernet.evaluator())
    with pytest.raises(RuntimeError, match="misses the budget"):
        run_search(Fixed(space, [space.largest()]), ev, SearchConfig(trials=1), progress=False)
    assert ev.calls == []


def test_resume_continues_the_count_without_repeating_finished_trials(
    digits_supernet: Any, recording: Any, tmp_path: Path
) -> None:
    space = digits_supernet.space
    first = run_search(RandomSearcher(space, seed=3), digits_supernet.evaluator(), SearchConfig(trials=4),
                       out=tmp_path, progress=False)
    ev = recording(digits_supernet.evaluator())
    second = run_search(RandomSearcher(space, seed=3), ev, SearchConfig(trials=7), out=tmp_path, resume=True,
                        progress=False)
    assert second.resumed_trials == 4 and len(second.trials) == 7
    assert [t.number for t in second.trials] == list(range(7))
    assert [t.to_dict() for t in second.trials[:4]] == [t.to_dict() for t in first.trials]
    assert len(TrialLog(tmp_path).read()) == 7
    # the restored searcher continues its stream instead of proposing the first 4 again
    assert len(ev.calls) <= 3


def test_a_torn_last_line_is_dropped_and_a_corrupt_one_is_named(tmp_path: Path) -> None:
    log = TrialLog(tmp_path)
    good = Trial(0, {"a": 1}, "failed", None, error="x")
    log.append(good)
    with log.jsonl.open("a") as f:
        f.write('{"number": 1, "cou')  # killed mid-write: no newline
    assert [t.to_dict() for t in log.read()] == [good.to_dict()]
    log.repair()
    assert log.jsonl.read_text() == good.to_json() + "\n"  # appends start on a clean line again
    log.jsonl.write_text(good.to_json() + "\n" + "garbage\n" + good.to_json() + "\n")
    with pytest.raises(AutoPruneError, match="line 2"):
        log.read()


def test_repair_gives_the_csv_the_trials_a_kill_kept_from_it(tmp_path: Path) -> None:
    log = TrialLog(tmp_path)
    trials = [Trial(i, {"a": i}, "failed", None, error=f"line one\nline {i}") for i in range(3)]
    for t in trials[:2]:
        log.append(t)
    with log.jsonl.open("a") as f:
        f.write(trials[2].to_json() + "\n")  # killed after the jsonl line, before the csv row
    log.repair()
    rows = list(csv.DictReader(log.csv.open()))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and rows[2]["error"] == "line one\nline 2"
    log.repair()  # nothing more to do
    assert len(list(csv.DictReader(log.csv.open()))) == 3
    log.reset()
    with log.jsonl.open("a") as f:
        f.write(trials[0].to_json() + "\n")  # killed before the csv (and its header) was written
    log.repair()
    assert [int(r["number"]) for r in csv.DictReader(log.csv.open())] == [0]


def test_fidelity_rungs_and_early_stopping_hook(digits_supernet: Any, recording: Any) -> None:
    assert fidelity_rungs(24, 3) == (6, 12, 24)
    assert fidelity_rungs(3, 3) == (1, 2, 3)

    class StopAll(Fixed):
        def should_prune(self, counts: Mapping[str, int], partial: EvalResult, rung: int) -> bool:
            return True

    space = digits_supernet.space
    ev = digits_supernet.evaluator()
    result = run_search(StopAll(space, [space.uniform(1.0)]), ev, SearchConfig(trials=1, rungs=(1,)),
                        progress=False)
    (trial,) = result.trials
    assert trial.state == "pruned" and trial.result is not None and trial.result.fidelity == 1
    assert best_trial(result.trials) is None  # a pruned trial is never the best


def test_pareto_front_is_exactly_the_non_dominated_trials() -> None:
    def trial(n: int, acc: float, macs: int) -> Trial:
        r = EvalResult({}, acc, 0.1, macs, macs / 100, 1, None, 1, 1, 0.0, False)
        return Trial(n, {}, "complete", r)

    trials = [trial(0, 0.9, 50), trial(1, 0.8, 60), trial(2, 0.95, 70), trial(3, 0.7, 30), trial(4, 0.95, 80)]
    front = pareto_front(trials)
    assert [t.number for t in front] == [3, 0, 2]
    for t in trials:
        dominated = any(o.accuracy >= t.accuracy and o.result.macs <= t.result.macs and o is not t  # type: ignore[operator,union-attr]
                        and (o.accuracy, o.result.macs) != (t.accuracy, t.result.macs) for o in trials)  # type: ignore[union-attr]
        assert (t in front) == (not dominated)


def test_trial_round_trips_through_json() -> None:
    r = EvalResult({"a": 3}, 0.5, 1.0, 10, 0.5, 7, 1.5, 2, 128, 0.1, True)
    t = Trial(5, {"a": 3}, "pruned", r, 0.2, True, {"x": [1, 2]})
    assert Trial.from_dict(json.loads(t.to_json())) == t
    with pytest.raises(ValueError, match="needs a result"):
        Trial(0, {}, "complete", None)
