"""Winners under a latency budget: the best candidates timed for real before the winner is fixed, and the
winner timed again alone before it is exported (used by :func:`autoprune.pipelines.search.pick_winner`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from autoprune.engine.deploy import in_form
from autoprune.evaluate import paired_difference
from autoprune.metrics import measure_interleaved, ratio
from autoprune.search import Trial
from autoprune.search.winner import DEFAULT_TOP_K, SIGNIFICANCE, Rescored, WinnerChoice, top_trials
from autoprune.search_spaces import SearchSpace
from autoprune.supernet import Supernet

#: Winners confirmed at most, one after the other, before the choice stands unconfirmed.
CONFIRMATIONS = 3


def confirm_latency(
    supernet: Supernet,
    space: SearchSpace,
    choice: WinnerChoice,
    over: list[dict[str, int]],
    *,
    dense_model: nn.Module | None = None,
    rounds: int = 30,
    limit: int = CONFIRMATIONS,
) -> tuple[WinnerChoice, list[dict[str, Any]]]:
    """Time the chosen winner again, alone with the dense model, before it is exported.

    The re-measurement of :func:`check_latency` times many candidates and keeps those that measured within
    the target, so the ones kept are partly those whose timing came out low by chance (a winner's curse:
    on a 2-core machine a winner measured 0.47 there and 0.58 in a later run). An independent run of the
    winner alone (interleaved with the dense model, ``rounds`` rounds) removes that bias. If it measures
    over the target (beyond the run's noise), the next best re-scored candidate within the target is
    confirmed the same way, up to ``limit`` candidates; if none is confirmed, the choice stands and
    ``latency_check.meets_target`` says so.

    Returns:
        The (possibly changed) choice and one record per confirmation run (counts, trial, measured ratio,
        noise, ``eligible``).
    """
    table = space.latency_table
    assert table is not None and space.target is not None
    dense = dense_model if dense_model is not None else supernet.extract({})
    pool = [choice.winner] + [r for r in choice.rescored if r is not choice.winner and dict(r.score.counts) not in over]
    records: list[dict[str, Any]] = []
    for candidate in pool[:limit]:
        counts = dict(candidate.score.counts)
        models = {"dense": in_form(dense, table.form), "winner": in_form(supernet.extract(counts), table.form)}
        stats = measure_interleaved(models, supernet.input_shape, batch_size=table.batch_size, rounds=rounds,
                                    threads=table.threads)  # fmt: skip
        r = ratio(stats, "winner", "dense")
        full = {g.name: int(counts.get(g.name, g.channels)) for g in supernet.structure.groups}
        ok = r.median <= space.target + r.noise
        records.append({"source": candidate.source, "trial": candidate.trial, "counts": full, "rounds": rounds,
                        "measured_ratio": r.median, "noise": r.noise, "eligible": ok})  # fmt: skip
        if ok:
            if candidate is not choice.winner:
                choice = _replace_winner(choice, candidate, f"{len(records) - 1} better candidate(s) measured over "
                                         "the latency target when timed again alone")  # fmt: skip
            break
    return choice, records


def _replace_winner(choice: WinnerChoice, best: Rescored, why: str) -> WinnerChoice:
    """``choice`` with ``best`` exported instead of its winner, and a statement saying why and how it compares."""
    difference, se = paired_difference(best.score, choice.uniform.score)
    statement = (f"{why}, so the best candidate within it is exported: {100 * difference:+.2f} ± {100 * se:.2f} "
                 f"points against the uniform one on validation ({best.score.samples} samples)")
    return dataclasses.replace(choice, winner=best, difference=difference, difference_se=se,
                               beats_uniform=difference > SIGNIFICANCE * se, statement=statement)  # fmt: skip


def check_latency(
    supernet: Supernet,
    space: SearchSpace,
    trials: list[Trial],
    *,
    top_k: int = DEFAULT_TOP_K,
    dense_model: nn.Module | None = None,
    rounds: int = 15,
    max_measured: int | None = None,
) -> tuple[list[Trial], dict[str, Any], list[dict[str, int]]]:
    """Time the best trials and the uniform candidate for real before a latency-budget winner is fixed.

    Candidates are extracted (latency does not depend on weights) and timed in the latency table's form,
    batch size and threads, interleaved with the dense model (:func:`autoprune.metrics.measure_interleaved`),
    ``top_k`` trials per run (the first run also times the uniform candidate), best first, until ``top_k``
    are within the target or ``max_measured`` (default ``3 * top_k``) were timed. A candidate is eligible
    when its measured ratio to dense is at most the target plus the run's noise (half the interquartile
    range of its per-round ratios).

    Returns:
        The eligible trials, the record (``latency_check`` of ``report.json``: every timed candidate, how
        many were dropped) and the counts of the candidates measured over the target.
    """
    table = space.latency_table
    assert table is not None and space.target is not None
    dense = dense_model if dense_model is not None else supernet.extract({})
    ranked = top_trials(trials, len(trials))
    limit = 3 * top_k if max_measured is None else max_measured
    records: list[dict[str, Any]] = []
    eligible: list[Trial] = []
    queue: list[tuple[Trial | None, dict[str, int]]] = [(None, space.uniform(1.0))]
    queue += [(t, dict(t.counts)) for t in ranked[:limit]]
    while queue and len(eligible) < top_k:
        batch, queue = queue[: top_k + (1 if not records else 0)], queue[top_k + (1 if not records else 0) :]
        models = {"dense": in_form(dense, table.form)}
        models.update({str(i): in_form(supernet.extract(c), table.form) for i, (_, c) in enumerate(batch)})
        stats = measure_interleaved(models, supernet.input_shape, batch_size=table.batch_size, rounds=rounds,
                                    threads=table.threads)  # fmt: skip
        for i, (trial, counts) in enumerate(batch):
            r = ratio(stats, str(i), "dense")
            ok = r.median <= space.target + r.noise
            full = {g.name: int(counts.get(g.name, g.channels)) for g in supernet.structure.groups}
            records.append({"source": "uniform" if trial is None else "search",
                            "trial": None if trial is None else trial.number, "counts": full,
                            "predicted_ratio": space.cost(counts), "measured_ratio": r.median, "noise": r.noise,
                            "eligible": ok})  # fmt: skip
            if ok and trial is not None:
                eligible.append(trial)
    check = {"target": space.target, "form": table.form, "batch_size": table.batch_size, "threads": table.threads,
             "rounds": rounds, "remeasured": len(records),
             "dropped": sum(not r["eligible"] for r in records), "candidates": records}  # fmt: skip
    return eligible, check, [r["counts"] for r in records if not r["eligible"]]


def eligible_choice(choice: WinnerChoice, over: list[dict[str, int]]) -> WinnerChoice:
    """``choice`` with the best re-scored candidate not measured over the latency target as its winner.

    Only the uniform candidate can be over it here (the trials over it were left out); if every candidate
    is, the choice stands (and ``latency_check`` says the winner misses the target).
    """
    def over_target(entry: Rescored) -> bool:
        return dict(entry.score.counts) in over

    if not over_target(choice.winner):
        return choice
    best = next((r for r in choice.rescored if not over_target(r)), None)
    if best is None:
        return choice
    return _replace_winner(choice, best, "the uniform candidate measured over the latency target")
