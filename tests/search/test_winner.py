"""The honest winner: re-scored at full fidelity on validation, compared with uniform, test split untouched."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from autoprune.evaluate import EvalResult, FullScore, binomial_se, paired_difference
from autoprune.pipelines.search import search_supernet
from autoprune.search.base import Trial
from autoprune.search.winner import choose_winner, judge_on_holdout, top_trials

N = 400


def _trial(number: int, counts: dict[str, int], accuracy: float, loss: float = 0.5, *, state: str = "complete",
           feasible: bool = True) -> Trial:
    result = EvalResult(counts=counts, accuracy=accuracy, loss=loss, macs=1, macs_ratio=0.5, params=1,
                        latency_ms=None, fidelity=1, samples=64, seconds=0.0, cached=False)
    return Trial(number, counts, state, result, feasible=feasible)  # type: ignore[arg-type]


def _score(counts: Mapping[str, int], correct: np.ndarray, loss: float = 0.5) -> FullScore:
    acc = float(correct.mean())
    return FullScore(counts=dict(counts), accuracy=acc, accuracy_se=binomial_se(acc, len(correct)), loss=loss,
                     loss_se=0.01, samples=len(correct), macs_ratio=0.5, params=1, bn_batches=4,
                     correct=correct.astype(np.int8), losses=np.full(len(correct), loss))


def _correct(wrong: range) -> np.ndarray:
    c = np.ones(N, dtype=np.int8)
    c[list(wrong)] = 0
    return c


UNIFORM = {"a": 8, "b": 8}


def test_rescoring_picks_the_best_full_score_not_the_best_partial_one() -> None:
    lucky, solid, weak = {"a": 4, "b": 12}, {"a": 12, "b": 4}, {"a": 6, "b": 10}
    trials = [_trial(0, lucky, 0.99), _trial(1, solid, 0.95), _trial(2, weak, 0.90),
              _trial(3, {"a": 2, "b": 2}, 1.0, state="pruned"), _trial(4, {"a": 16, "b": 16}, 1.0, feasible=False)]
    full = {  # what the whole validation split says, with the larger calibration
        tuple(sorted(lucky.items())): _correct(range(0, 60)),
        tuple(sorted(solid.items())): _correct(range(0, 10)),
        tuple(sorted(weak.items())): _correct(range(0, 40)),
        tuple(sorted(UNIFORM.items())): _correct(range(0, 40)),
    }
    scored: list[dict[str, int]] = []

    def score(counts: Mapping[str, int]) -> FullScore:
        scored.append(dict(counts))
        return _score(counts, full[tuple(sorted(counts.items()))])

    choice = choose_winner(trials, UNIFORM, score, top_k=3)
    assert choice.winner.score.counts == solid and choice.winner.trial == 1  # not trial 0, the partial best
    # best full score first: solid (390/400), then weak and uniform (360, equal loss: pool order), then lucky
    assert [r.score.counts for r in choice.rescored] == [solid, weak, UNIFORM, lucky]
    assert {tuple(sorted(c.items())) for c in scored} == set(full)  # pruned and infeasible trials never re-scored
    assert choice.uniform.source == "uniform" and choice.uniform.score.counts == UNIFORM
    # 30 more right answers out of 400, paired: far more than 2 standard errors
    assert choice.difference == pytest.approx(30 / N) and choice.beats_uniform
    assert "more than 2 standard errors" in choice.statement
    data = choice.to_dict()
    assert data["vs_uniform"]["beats_uniform"] is True and data["winner"]["val_accuracy_se"] > 0


def test_a_gain_within_noise_is_reported_as_such_and_loss_breaks_ties() -> None:
    a, b = {"a": 4, "b": 12}, {"a": 12, "b": 4}
    same = _correct(range(0, 20))
    near = _correct(range(1, 20))  # one more right answer than uniform: within noise
    scores = {tuple(sorted(a.items())): (same, 0.40), tuple(sorted(b.items())): (same, 0.30),
              tuple(sorted(UNIFORM.items())): (_correct(range(0, 20)), 0.5)}
    choice = choose_winner([_trial(0, a, 0.97), _trial(1, b, 0.96)], UNIFORM,
                           lambda c: _score(c, *scores[tuple(sorted(c.items()))]))
    assert choice.winner.score.counts == b  # equal accuracy, lower loss
    assert choice.difference == 0.0 and not choice.beats_uniform
    assert "within 2 standard errors" in choice.statement

    scores[tuple(sorted(b.items()))] = (near, 0.3)
    choice = choose_winner([_trial(0, a, 0.97), _trial(1, b, 0.96)], UNIFORM,
                           lambda c: _score(c, *scores[tuple(sorted(c.items()))]))
    assert choice.difference == pytest.approx(1 / N) and not choice.beats_uniform
    assert "not a significant gain" in choice.statement


def test_the_uniform_candidate_wins_when_nothing_beats_it() -> None:
    worse = {"a": 4, "b": 12}
    scores = {tuple(sorted(worse.items())): _correct(range(0, 30)), tuple(sorted(UNIFORM.items())): _correct(range(5))}
    choice = choose_winner([_trial(0, worse, 0.99), _trial(1, UNIFORM, 0.9)], UNIFORM,
                           lambda c: _score(c, scores[tuple(sorted(c.items()))]))
    assert choice.winner is choice.uniform and choice.winner.trial == 1  # the search had proposed it: trial 1
    assert choice.difference == 0.0 and not choice.beats_uniform and "uniform candidate is exported" in choice.statement


def test_top_trials_are_distinct_and_ordered() -> None:
    c = {"a": 4, "b": 4}
    trials = [_trial(0, c, 0.9), _trial(1, c, 0.9), _trial(2, {"a": 8, "b": 4}, 0.9, loss=0.1)]
    assert [t.number for t in top_trials(trials, 5)] == [2, 0]
    with pytest.raises(ValueError, match="top_k"):
        choose_winner(trials, UNIFORM, lambda counts: _score(counts, _correct(range(1))), top_k=0)


def test_paired_difference_standard_error() -> None:
    x = _score(UNIFORM, _correct(range(0, 10)))
    y = _score(UNIFORM, _correct(range(5, 30)))
    diff, se = paired_difference(x, y)
    d = x.correct.astype(float) - y.correct.astype(float)
    assert diff == pytest.approx(15 / N) and se == pytest.approx(d.std(ddof=1) / np.sqrt(N))


class _Untouchable:
    """A dataset that fails the test if anything reads it."""

    def __len__(self) -> int:
        return 360

    def __getitem__(self, index: int) -> Any:
        raise AssertionError("the test split was read during the search or while fixing the winner")


def test_search_and_winner_never_read_the_test_split(digits_supernet: Any) -> None:
    splits = dataclasses.replace(digits_supernet.splits, test=_Untouchable())
    outcome = search_supernet(digits_supernet.supernet, digits_supernet.space, splits, searcher="random", trials=4,
                              seed=0, bn_batches=2, val_batch_size=64, progress=False, top_k=2, rescore_bn_batches=3)
    assert outcome.choice is not None and outcome.model is not None
    assert outcome.best_counts == outcome.choice.winner.score.counts
    assert len(outcome.choice.rescored) in (2, 3)  # top 2 and the uniform candidate (unless it is one of them)
    assert outcome.choice.winner.score.bn_batches == 3


# --- the hold-out: the winner judged once on validation samples the search never read ----------------------------

def _on(searched: dict[str, int], wrong_searched: int, wrong_uniform: int) -> Any:
    """Scoring where ``searched`` and the uniform candidate get the first so many samples wrong."""
    table = {tuple(sorted(searched.items())): _correct(range(wrong_searched)),
             tuple(sorted(UNIFORM.items())): _correct(range(wrong_uniform))}
    return lambda c: _score(c, table[tuple(sorted(c.items()))])


def _chosen(winner_correct: np.ndarray, uniform_correct: np.ndarray) -> Any:
    """A choice on the search's samples: the searched candidate 30 answers ahead of uniform there."""
    searched = {"a": 12, "b": 4}
    full = {tuple(sorted(searched.items())): winner_correct, tuple(sorted(UNIFORM.items())): uniform_correct}
    return searched, choose_winner([_trial(0, searched, 0.99)], UNIFORM,
                                   lambda c: _score(c, full[tuple(sorted(c.items()))]))


def test_a_winner_behind_uniform_on_the_holdout_gives_way_to_the_uniform_candidate() -> None:
    searched, choice = _chosen(_correct(range(0, 10)), _correct(range(0, 40)))
    assert choice.winner.source == "search" and choice.beats_uniform  # +30/400 on the samples it was chosen on
    judged = judge_on_holdout(choice, _on(searched, 30, 20))
    assert judged.winner is choice.uniform and judged.winner.score.counts == UNIFORM
    assert judged.holdout is not None and not judged.holdout.kept
    assert judged.holdout.difference == pytest.approx(-10 / N)  # the unbiased estimate: behind
    assert judged.holdout.selection_difference == pytest.approx(30 / N)  # the biased one it was chosen on
    assert judged.difference == 0.0 and not judged.beats_uniform  # the exported model is the uniform one
    assert "uniform candidate is exported" in judged.statement and "never read" in judged.statement
    data = judged.to_dict()
    assert data["vs_uniform"]["on"] == "holdout" and data["holdout"]["kept"] is False
    assert data["holdout"]["candidate_counts"] == searched and data["winner"]["source"] == "uniform"


def test_a_winner_ahead_on_the_holdout_is_kept_and_judged_by_the_holdout() -> None:
    searched, choice = _chosen(_correct(range(0, 10)), _correct(range(0, 40)))
    judged = judge_on_holdout(choice, _on(searched, 12, 14))
    assert judged.winner is choice.winner and judged.holdout is not None and judged.holdout.kept
    assert judged.difference == pytest.approx(2 / N) and not judged.beats_uniform  # ahead, but within noise
    assert "within 2 standard errors" in judged.statement
    judged = judge_on_holdout(choice, _on(searched, 5, 45))
    assert judged.beats_uniform and "a real gain" in judged.statement


def test_the_holdout_cannot_overrule_a_reason_to_keep_the_winner_and_says_so() -> None:
    searched, choice = _chosen(_correct(range(0, 10)), _correct(range(0, 40)))
    judged = judge_on_holdout(choice, _on(searched, 30, 20),
                              keep_anyway="the uniform candidate was measured over the latency target")
    assert judged.winner is choice.winner and judged.holdout is not None and judged.holdout.kept
    assert judged.holdout.reason is not None and "latency target" in judged.statement


def test_nothing_is_judged_when_the_uniform_candidate_already_won() -> None:
    choice = choose_winner([], UNIFORM, lambda c: _score(c, _correct(range(0, 10))))
    called: list[Any] = []
    assert judge_on_holdout(choice, lambda c: called.append(c) or _score(c, _correct(range(1)))) is choice
    assert not called


def test_search_supernet_never_reads_the_holdout_before_the_verdict(digits_supernet: Any) -> None:
    splits = digits_supernet.splits
    _, held = splits.hold_out(0.5)
    assert held is not None
    n_val, n_held = len(splits.val), len(held)
    outcome = search_supernet(digits_supernet.supernet, digits_supernet.space, splits, searcher="random", trials=4,
                              seed=0, bn_batches=2, val_batch_size=64, progress=False, top_k=2, rescore_bn_batches=3,
                              holdout=0.5)
    choice = outcome.choice
    assert choice is not None and outcome.model is not None
    # every trial and every re-score read the search part only; the verdict read the hold-out only
    assert {t.result.samples for t in outcome.result.trials if t.result is not None} == {n_val - n_held}
    assert {r.score.samples for r in choice.rescored} == {n_val - n_held}
    if choice.holdout is not None:  # the re-scoring's winner was a searched one: it was judged
        assert choice.holdout.samples == n_held
        assert choice.holdout.kept == (choice.winner.source == "search")
        assert choice.holdout.kept == (choice.holdout.difference > 0)
    else:
        assert choice.winner is choice.uniform
    assert outcome.best_counts == choice.winner.score.counts
    none = search_supernet(digits_supernet.supernet, digits_supernet.space, splits, searcher="random", trials=2,
                           seed=0, bn_batches=2, val_batch_size=64, progress=False, top_k=1, holdout=0.0)
    assert none.choice is not None and none.choice.holdout is None
    assert {r.score.samples for r in none.choice.rescored} == {n_val}
