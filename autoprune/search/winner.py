"""Fixing the winner of a search honestly: re-score the top candidates at full fidelity, on validation only.

A search ranks candidates on a cheap, noisy signal (a few calibration batches, possibly partial
validation). Its top scorer is often a lucky one. :func:`choose_winner` takes the ``top_k`` best complete,
feasible trials and the uniform candidate, re-scores each on the whole validation split with a larger
BatchNorm calibration (a :meth:`~autoprune.evaluate.SupernetEvaluator.score` call), and picks the best by
that score (validation loss breaks ties). It then says whether the winner beats the uniform candidate by
more than two standard errors of their paired difference. The test split is never read here: the caller
reads it once, for the report, after the winner is fixed.
"""

from __future__ import annotations

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
    """

    winner: Rescored
    uniform: Rescored
    rescored: list[Rescored]
    difference: float
    difference_se: float
    beats_uniform: bool
    statement: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "winner": self.winner.to_dict(),
            "uniform": self.uniform.to_dict(),
            "rescored": [r.to_dict() for r in self.rescored],
            "vs_uniform": {"difference": self.difference, "se": self.difference_se,
                           "beats_uniform": self.beats_uniform, "significance": SIGNIFICANCE,
                           "statement": self.statement},
        }


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
