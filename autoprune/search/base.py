"""The searcher interface: propose candidates, learn from their results.

A *candidate* is one kept-channel count per searched group of a :class:`SearchSpace` (``dict[str, int]``).
The search runner (:func:`autoprune.search.run_search`) drives every searcher the same way::

    proposal = searcher.ask()                   # None: the searcher has nothing more to propose
    for fidelity in rungs:                      # growing numbers of validation batches
        partial = evaluator.evaluate(proposal.counts, fidelity)
        if searcher.should_prune(proposal.counts, partial, rung):   # early stopping of weak candidates
            break
    trial = Trial(..., info=proposal.info)      # complete, pruned or failed; written to the log first,
    searcher.tell(trial)                        # then told

so the CLI, reports and benchmarks treat random search, greedy slimming, sub-model sampling, Optuna samplers
and RL agents alike. Subclasses implement :meth:`Searcher.ask` and usually :meth:`Searcher._learn`;
:meth:`Searcher.tell` records the history and finds the best trial and the Pareto front for them. What a
searcher can do (capabilities) and which options it takes are class attributes, read by the CLI and checked
in one place (:meth:`Searcher.check_options`, called by :func:`~autoprune.search.make_searcher`).
"""

from __future__ import annotations

import abc
import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import numpy as np

from autoprune.errors import AutoPruneError
from autoprune.evaluate import EvalResult
from autoprune.search_spaces import SearchSpace
from autoprune.search_spaces._checks import suggest

TrialState = Literal["complete", "pruned", "failed"]
STATES: tuple[str, ...] = ("complete", "pruned", "failed")


@dataclass(frozen=True)
class Trial:
    """One proposed candidate and what became of it.

    Attributes:
        number: 0-based index of the trial in this search (resumed searches continue the count).
        counts: The candidate: kept channels per searched group.
        state: ``complete`` (evaluated at full fidelity), ``pruned`` (stopped early at ``result.fidelity``)
            or ``failed`` (the evaluation raised or gave a non-finite score; ``result`` is None).
        result: The evaluation at the last fidelity reached (None when failed).
        seconds: Wall time of the trial (evaluation and searcher bookkeeping).
        feasible: Whether ``counts`` meets the space's budget (only greedy slimming's probes may not).
        info: Searcher-specific extras (Optuna trial number, RL reward, ...); JSON-serializable.
        error: The error message of a failed trial.
    """

    number: int
    counts: dict[str, int]
    state: TrialState
    result: EvalResult | None
    seconds: float = 0.0
    feasible: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"trial state {self.state!r} must be one of {', '.join(STATES)}")
        if self.state != "failed" and self.result is None:
            raise ValueError(f"a {self.state} trial needs a result")

    @property
    def accuracy(self) -> float | None:
        """Validation accuracy at the fidelity reached (None when failed)."""
        return None if self.result is None else self.result.accuracy

    @property
    def macs(self) -> int | None:
        return None if self.result is None else self.result.macs

    @property
    def macs_ratio(self) -> float | None:
        return None if self.result is None else self.result.macs_ratio

    @property
    def params(self) -> int | None:
        return None if self.result is None else self.result.params

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping (one line of ``trials.jsonl``); :meth:`from_dict` reverses it."""
        data = asdict(self)
        data["result"] = None if self.result is None else self.result.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trial:
        result = data.get("result")
        return cls(
            number=int(data["number"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            state=data["state"],
            result=None if result is None else EvalResult(**result),
            seconds=float(data.get("seconds", 0.0)),
            feasible=bool(data.get("feasible", True)),
            info=dict(data.get("info") or {}),
            error=data.get("error"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


class Scored(Protocol):
    """What :func:`pareto_front` reads of a trial (a :class:`Trial`, or a row of a run folder's trials)."""

    @property
    def number(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def feasible(self) -> bool: ...
    @property
    def accuracy(self) -> float | None: ...
    @property
    def macs(self) -> int | None: ...


S = TypeVar("S", bound=Scored)


def pareto_front(trials: Sequence[S]) -> list[S]:
    """Complete, feasible trials not dominated in (accuracy up, MACs down), sorted by MACs.

    Of several trials with the same accuracy and MACs only the first is kept. The one rule for the front:
    searchers, reports and plots all use it.
    """
    done = [t for t in trials if t.state == "complete" and t.feasible and t.accuracy is not None and t.macs is not None]
    front: list[S] = []
    for t in sorted(done, key=lambda t: (t.macs, -(t.accuracy or 0.0), t.number)):
        if not front or (t.accuracy or 0.0) > (front[-1].accuracy or 0.0):
            front.append(t)
    return front


@dataclass(frozen=True)
class Proposal:
    """What :meth:`Searcher.ask` returns: a candidate and the extras to record with its trial.

    Attributes:
        counts: The candidate: kept channels per searched group.
        info: Recorded in the trial's ``info`` (JSON-serializable). The runner writes the trial to the log
            before the searcher is told about it, so what a resumed run needs to match a logged trial with the
            searcher's own record (e.g. the Optuna trial number) belongs here.
    """

    counts: dict[str, int]
    info: dict[str, Any] = field(default_factory=dict)


def best_trial(trials: Sequence[Trial]) -> Trial | None:
    """The complete, feasible trial with the highest accuracy (ties: fewer MACs, then earlier); None if none."""
    done = [t for t in trials if t.state == "complete" and t.feasible and t.result is not None]
    if not done:
        return None
    return max(done, key=lambda t: (t.result.accuracy, -t.result.macs, -t.number))  # type: ignore[union-attr]


class Searcher(abc.ABC):
    """Proposes candidates of a search space and learns from their evaluations.

    The runner calls :meth:`ask`, evaluates the candidate (asking :meth:`should_prune` after every
    partial fidelity), then :meth:`tell`. A searcher never evaluates anything itself and never touches
    the model: it only sees :class:`EvalResult` objects.

    Args:
        space: The search space; every candidate :meth:`ask` returns must be one of its feasible
            candidates (``space.feasible(counts)``), unless the class sets ``proposes_infeasible``.
        seed: Seeds the searcher's own randomness (``self.rng``); same seed, same proposals.
    """

    #: Registry name (``random``, ``greedy``, ``tpe``, ``ddpg``, ...).
    name: ClassVar[str] = "searcher"
    #: True for searchers that evaluate over-budget candidates on purpose (greedy slimming's probes from
    #: full width); their infeasible trials are recorded with ``feasible=False`` and never become the best.
    proposes_infeasible: ClassVar[bool] = False
    #: True when the objective is two-dimensional (accuracy up, MACs down) and the result is a Pareto front.
    multi_objective: ClassVar[bool] = False
    #: Whether proposals are projected *up* to the budget as well as down (:meth:`project`): an
    #: accuracy-at-a-budget search spends the budget; a Pareto search explores cheaper candidates too.
    fills_budget: ClassVar[bool] = True
    #: True for searchers backed by an Optuna study: they take ``storage``, ``study_name``, ``total_trials``,
    #: ``pruner`` and ``seed_ratios``, several worker processes can share one study, and the CLI says so.
    study_based: ClassVar[bool] = False
    #: True for searchers that can propose several candidates before being told of any, and learn from them
    #: told in the order asked (RL agents: episodes of one policy, as vectorized environments step; random
    #: search). The runner then evaluates up to ``workers`` of them at once (:mod:`autoprune.search.pool`).
    asks_ahead: ClassVar[bool] = False
    #: True for searchers that propose from a model of earlier results after a start-up phase of random
    #: proposals (:attr:`warming_up`); the contract suite checks that a few proposals come from the model.
    model_based: ClassVar[bool] = False
    #: Options that shorten the start-up phase, so that a handful of trials reaches the model (tests, smoke runs).
    fast_options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, space: SearchSpace, *, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._history: list[Trial] = []

    # ------------------------------------------------------------ options
    @classmethod
    def option_names(cls) -> list[str]:
        """The keyword options the class takes besides ``space`` and ``seed`` (from its ``__init__`` signatures).

        A class whose ``__init__`` takes ``**options`` and passes them on to a config overrides this.
        """
        names: list[str] = []
        for klass in cls.__mro__:
            if klass is object or "__init__" not in vars(klass):
                continue
            for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
                if p.kind == p.KEYWORD_ONLY and p.name != "seed" and p.name not in names:
                    names.append(p.name)
        return names

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Refuse option names the class does not take (values are checked by the class itself).

        Raises:
            AutoPruneError: an unknown option, with the closest valid names and the full list.
        """
        valid = cls.option_names()
        for key in options:
            if key not in valid:
                listed = ", ".join(valid) if valid else "none"
                raise AutoPruneError(
                    f"searcher {cls.name!r} has no option {key!r}.{suggest(key, valid)} Its options: {listed}"
                )

    # ------------------------------------------------------------ to implement
    @abc.abstractmethod
    def ask(self) -> Proposal | None:
        """The next candidate to evaluate, or ``None`` when the searcher is done (e.g. greedy reached the budget)."""

    def _learn(self, trial: Trial) -> None:  # noqa: B027  (optional hook, do-nothing default)
        """Update the searcher's model with a finished trial (called by :meth:`tell`)."""

    def should_prune(self, counts: Mapping[str, int], partial: EvalResult, rung: int) -> bool:
        """Whether to stop evaluating ``counts`` after the partial result at fidelity rung ``rung`` (0-based).

        The default never stops; Optuna searchers ask their pruner.
        """
        return False

    def restore(self, trials: Sequence[Trial]) -> None:
        """Continue from the trials of an earlier, interrupted run of the same search (``--resume``).

        The default re-tells them in order, which rebuilds the state of searchers that learn only through
        :meth:`tell`. Searchers with state of their own (an Optuna study, an RL agent) override this.
        """
        for trial in trials:
            self.tell(trial)

    @property
    def warming_up(self) -> bool:
        """Whether the next proposal comes from the start-up phase rather than the model (``model_based``)."""
        return False

    def plan_budget(self, trials: int) -> None:  # noqa: B027  (optional hook)
        """Called by the runner before the first :meth:`ask` with the number of trials left to run."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release resources (threads, storages); called once by the runner at the end."""

    def state(self) -> dict[str, Any]:
        """Searcher-specific state for ``report.json`` (JSON-serializable); empty by default."""
        return {}

    # ------------------------------------------------------------ provided
    def project(self, ratios: Mapping[str, float] | Sequence[float]) -> dict[str, int]:
        """Feasible counts for requested keep ratios, filled up to the budget unless ``fills_budget`` is off."""
        return self.space.project(ratios, fill=self.fills_budget)

    def tell(self, trial: Trial) -> None:
        """Record a finished trial and let the searcher learn from it."""
        self._history.append(trial)
        self._learn(trial)

    @property
    def history(self) -> list[Trial]:
        """Every trial told so far, in order."""
        return list(self._history)

    @property
    def best(self) -> Trial | None:
        """The complete, feasible trial with the highest accuracy (ties: fewer MACs, then earlier)."""
        return best_trial(self._history)

    @property
    def pareto(self) -> list[Trial]:
        """The accuracy-MACs Pareto front of the complete, feasible trials."""
        return pareto_front(self._history)
