"""Fixing the winner of a search honestly: re-score the top candidates at full fidelity, on validation only.

A search ranks candidates on a cheap, noisy signal (a few calibration batches, possibly partial
validation). Its top scorer is often a lucky one. :func:`choose_winner` takes the ``top_k`` best complete,
feasible trials and the uniform candidate, re-scores each on the whole validation split with a larger
BatchNorm calibration (a :meth:`~autoprune.evaluate.SupernetEvaluator.score` call), and picks the best by
that score (validation loss breaks ties). It then says whether the winner beats the uniform candidate by
more than two standard errors of their paired difference.

That difference is measured on the data the winner was chosen on, so it is biased upwards (the winner's
curse: on VGG-small at 20% of the MACs, three winners led the uniform candidate by +0.58 points on the
samples they were chosen on and by +0.13 on samples set aside). :func:`judge_on_holdout` therefore compares the winner
with the uniform candidate once more, on a part of validation set aside before the search (the
*hold-out*), and exports the uniform candidate unless the winner scores above it there. The test split is
never read here: the caller reads it once, for the report, after the winner is fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoprune.defaults import DEFAULT_TOP_K
from autoprune.evaluate import FullScore, paired_difference
from autoprune.search.base import Trial

#: Top candidates re-scored by default.
#: How many standard errors of the paired difference a gain over the uniform candidate must exceed.
SIGNIFICANCE = 2.0


@dataclass(frozen=True)
class Rescored:
    """One re-scored candidate.

    Attributes:
        source: ``"search"`` (a trial of the search) or ``"uniform"`` (the uniform candidate).
        trial: The trial number (None for the uniform candidate unless the search also proposed it).
        search_accuracy: The accuracy the search saw (None for the uniform candidate if not searched).
        score: The full-fidelity score.
    """

    source: str
    trial: int | None
    search_accuracy: float | None
    score: FullScore

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "trial": self.trial, "search_val_accuracy": self.search_accuracy,
                **{f"val_{k}" if k in ("accuracy", "accuracy_se", "loss", "loss_se") else k: v
                   for k, v in self.score.to_dict().items()}}


@dataclass(frozen=True)
class WinnerChoice:
    """What :func:`choose_winner` decided, and how sure it is.

    Attributes:
        winner: The chosen candidate (possibly the uniform one).
        uniform: The uniform candidate, re-scored the same way.
        rescored: Every re-scored candidate, best first.
        difference: Winner minus uniform validation accuracy (paired, same samples).
        difference_se: Standard error of ``difference``.
        beats_uniform: ``difference > SIGNIFICANCE * difference_se``.
        statement: One sentence saying so, for people.
        holdout: The judgement on the hold-out (:func:`judge_on_holdout`); when there is one, ``difference``,
            ``difference_se`` and ``beats_uniform`` are the hold-out's (the exported candidate minus the
            uniform one: 0 when the uniform candidate is exported).
    """

    winner: Rescored
    uniform: Rescored
    rescored: list[Rescored]
    difference: float
    difference_se: float
    beats_uniform: bool
    statement: str
    holdout: HoldoutVerdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner.to_dict(),
            "uniform": self.uniform.to_dict(),
            "rescored": [r.to_dict() for r in self.rescored],
            "vs_uniform": {"difference": self.difference, "se": self.difference_se,
                           "beats_uniform": self.beats_uniform, "significance": SIGNIFICANCE,
                           "on": "validation" if self.holdout is None else "holdout",
                           "statement": self.statement},
            "holdout": None if self.holdout is None else self.holdout.to_dict(),
        }


@dataclass(frozen=True)
class HoldoutVerdict:
    """The searched winner against the uniform candidate on validation samples the search never read.

    Attributes:
        candidate: The winner chosen on the rest of validation (the one judged).
        candidate_score: Its score on the hold-out.
        uniform_score: The uniform candidate's score on the hold-out (same samples, same calibration).
        difference: ``candidate_score`` minus ``uniform_score`` accuracy: an unbiased estimate of the gain.
        difference_se: Standard error of ``difference`` (paired).
        selection_difference: The same difference on the samples the winner was chosen on (biased upwards).
        selection_se: Its standard error.
        kept: Whether the searched winner is exported (it scored above the uniform candidate on the hold-out).
        reason: Why it was kept against the rule, if it was (e.g. the uniform candidate misses a latency target).
    """

    candidate: Rescored
    candidate_score: FullScore
    uniform_score: FullScore
    difference: float
    difference_se: float
    selection_difference: float
    selection_se: float
    kept: bool
    reason: str | None = None

    @property
    def samples(self) -> int:
        return self.candidate_score.samples

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "candidate_trial": self.candidate.trial,
                "candidate_counts": dict(self.candidate_score.counts),
                "candidate_accuracy": self.candidate_score.accuracy, "uniform_accuracy": self.uniform_score.accuracy,
                "difference": self.difference, "se": self.difference_se,
                "selection_difference": self.selection_difference, "selection_se": self.selection_se,
                "kept": self.kept, "reason": self.reason}  # fmt: skip


def top_trials(trials: Sequence[Trial], k: int) -> list[Trial]:
    """The ``k`` best complete, feasible trials with distinct candidates (accuracy, then lower loss, then earlier)."""
    done = [t for t in trials if t.state == "complete" and t.feasible and t.result is not None]
    done.sort(key=lambda t: (-t.result.accuracy, t.result.loss, t.number))  # type: ignore[union-attr]
    out: list[Trial] = []
    seen: set[tuple[tuple[str, int], ...]] = set()
    for t in done:
        key = tuple(sorted(t.counts.items()))
        if key not in seen:
            seen.add(key)
            out.append(t)
        if len(out) == k:
            break
    return out


def choose_winner(
    trials: Sequence[Trial],
    uniform: Mapping[str, int],
    score: Callable[[Mapping[str, int]], FullScore],
    *,
    top_k: int = DEFAULT_TOP_K,
) -> WinnerChoice:
    """Re-score the ``top_k`` best trials and the uniform candidate; the best full score wins.

    Args:
        trials: The search's trials (only complete, feasible ones are considered).
        uniform: The uniform candidate's counts (every searched group at the same keep ratio).
        score: Full-fidelity scoring on validation data (e.g. a ``SupernetEvaluator.score`` with a larger
            calibration set).
        top_k: How many of the best trials to re-score (>= 1).

    Returns:
        The choice; when no trial completed, the uniform candidate wins (and says so).
    """
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k={top_k!r} must be a positive integer")
    uniform_key = tuple(sorted((k, int(v)) for k, v in uniform.items()))
    pool: list[Rescored] = []
    uniform_entry: Rescored | None = None
    for t in top_trials(trials, top_k):
        entry = Rescored("search", t.number, t.accuracy, score(t.counts))
        pool.append(entry)
        if tuple(sorted((k, int(v)) for k, v in t.counts.items())) == uniform_key:
            uniform_entry = entry
    if uniform_entry is None:
        uniform_entry = Rescored("uniform", None, None, score(uniform))
        pool.append(uniform_entry)
    order = sorted(range(len(pool)), key=lambda i: (-pool[i].score.accuracy, pool[i].score.loss, i))
    ranked = [pool[i] for i in order]
    winner = ranked[0]
    difference, se = paired_difference(winner.score, uniform_entry.score)
    beats = winner is not uniform_entry and difference > SIGNIFICANCE * se
    searched = any(r.source == "search" for r in pool)
    statement = _statement(winner, uniform_entry, difference, se, beats, searched=searched)
    return WinnerChoice(winner, uniform_entry, ranked, difference, se, beats, statement)


def _statement(winner: Rescored, uniform: Rescored, difference: float, se: float, beats: bool, *,
               searched: bool) -> str:
    n = winner.score.samples
    if not searched:
        return f"no trial of the search completed: the uniform candidate is exported (validation, {n} samples)"
    if winner is uniform:
        return (f"no searched candidate scored above the uniform one on validation ({n} samples): the uniform "
                "candidate is exported")
    gain = f"{100 * difference:+.2f} ± {100 * se:.2f} points over the uniform candidate on validation ({n} samples)"
    if beats:
        return (f"the searched winner is {gain}: more than {SIGNIFICANCE:g} standard errors on the validation data "
                "it was chosen on (a selection-biased estimate; the test accuracies above are not)")
    return (f"the searched winner is {gain}: within {SIGNIFICANCE:g} standard errors, not a significant gain "
            "over pruning every layer alike")


def judge_on_holdout(
    choice: WinnerChoice,
    score: Callable[[Mapping[str, int]], FullScore],
    *,
    keep_anyway: str | None = None,
) -> WinnerChoice:
    """Judge the chosen winner against the uniform candidate on the hold-out; keep it only if it scores higher.

    The winner was chosen among many candidates on the search's validation samples, so its lead there is
    inflated by the choice itself. One comparison on samples the choice never read is unbiased: the
    winner is exported when its hold-out accuracy is above the uniform candidate's (the better guess of the
    two), and ``beats_uniform`` says whether that lead exceeds ``SIGNIFICANCE`` standard errors.

    Args:
        choice: What :func:`choose_winner` (and any latency check) decided on the search's validation samples.
        score: Scoring on the hold-out, with the same BatchNorm calibration as the re-scoring.
        keep_anyway: A reason to keep the winner whatever the hold-out says (e.g. the uniform candidate was
            measured over a latency target); it is recorded.

    Returns:
        ``choice`` with ``holdout`` set, and the uniform candidate as winner when the searched one lost.
    """
    if choice.winner is choice.uniform or choice.winner.score.counts == choice.uniform.score.counts:
        return choice  # nothing searched to judge
    candidate = score(choice.winner.score.counts)
    uniform = score(choice.uniform.score.counts)
    difference, se = paired_difference(candidate, uniform)
    kept = difference > 0 or keep_anyway is not None
    verdict = HoldoutVerdict(choice.winner, candidate, uniform, difference, se, choice.difference,
                             choice.difference_se, kept, keep_anyway if difference <= 0 else None)  # fmt: skip
    n = candidate.samples
    gain = f"{100 * difference:+.2f} ± {100 * se:.2f} points against the uniform candidate on {n} held-out validation"
    chosen = f"(on the {choice.winner.score.samples} it was chosen on: {100 * choice.difference:+.2f})"
    if not kept:
        statement = (f"the searched winner scored {gain} samples the search never read {chosen}: the uniform "
                     "candidate is exported")
        return dataclasses.replace(choice, winner=choice.uniform, difference=0.0, difference_se=0.0,
                                   beats_uniform=False, statement=statement, holdout=verdict)  # fmt: skip
    beats = difference > SIGNIFICANCE * se
    if verdict.reason is not None:
        statement = f"the searched winner scored {gain} samples {chosen}, and is exported because {verdict.reason}"
    elif beats:
        statement = (f"the searched winner is {gain} samples the search never read {chosen}: more than "
                     f"{SIGNIFICANCE:g} standard errors, a real gain over pruning every layer alike")
    else:
        statement = (f"the searched winner is {gain} samples the search never read {chosen}: ahead, so it is "
                     f"exported, but within {SIGNIFICANCE:g} standard errors, not a significant gain over pruning "
                     "every layer alike")
    return dataclasses.replace(choice, difference=difference, difference_se=se, beats_uniform=beats,
                               statement=statement, holdout=verdict)  # fmt: skip
