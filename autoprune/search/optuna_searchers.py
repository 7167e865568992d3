"""The Optuna searchers by name: ``tpe``, ``cmaes``, ``gp``, ``qmc`` and ``nsga2`` (see :mod:`.optuna_search`).

Importing this module registers them; :func:`search_candidates` runs one search with plain arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from autoprune.errors import AutoPruneError
from autoprune.evaluate import Evaluator
from autoprune.search.base import Searcher
from autoprune.search.optuna_search import OptunaSearcher
from autoprune.search.optuna_storage import quiet_optuna
from autoprune.search.registry import make_searcher, register_searcher
from autoprune.search.runner import SearchConfig, SearchResult, run_search
from autoprune.search_spaces import SearchSpace
from autoprune.search_spaces._checks import suggest


class TPESearcher(OptunaSearcher):
    """Tree-structured Parzen Estimator (multivariate, constant liar for parallel workers)."""

    name = "tpe"
    sampler_name = "TPESampler"

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        n = 10 if self.n_startup_trials is None else self.n_startup_trials
        with quiet_optuna():
            return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=n, multivariate=True, constant_liar=True)


class CmaEsSearcher(OptunaSearcher):
    """CMA-ES (the uniform candidate is its first trial; Optuna 5 deprecates a fixed ``x0``)."""

    name = "cmaes"
    sampler_name = "CmaEsSampler"

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        n = 1 if self.n_startup_trials is None else self.n_startup_trials
        return optuna.samplers.CmaEsSampler(seed=self.seed, n_startup_trials=n, warn_independent_sampling=False)


class GPSearcher(OptunaSearcher):
    """Gaussian-process Bayesian optimization (Optuna's GPSampler)."""

    name = "gp"
    sampler_name = "GPSampler"

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        n = 10 if self.n_startup_trials is None else self.n_startup_trials
        return optuna.samplers.GPSampler(seed=self.seed, n_startup_trials=n, warn_independent_sampling=False)


class QMCSearcher(OptunaSearcher):
    """Scrambled Sobol quasi-random sampling: an evenly spread random search."""

    name = "qmc"
    sampler_name = "QMCSampler"

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=self.seed,
                                          warn_independent_sampling=False)  # fmt: skip


class NSGA2Searcher(OptunaSearcher):
    """NSGA-II over (accuracy up, MACs ratio down); the result is the Pareto front.

    Args:
        population_size: Individuals per generation (at least 2).
        raw_constraint: Also mark raw samples beyond the budget as constraint violations (Optuna 5's
            ``trial.set_constraint``, which replaces the deprecated ``constraints_func``), which steers the
            population into the feasible region. Off by default: Optuna would then rank trials whose
            evaluated (projected) candidate is feasible as infeasible, and ``study.best_trials`` would
            leave them out and disagree with :attr:`pareto`.
        **options: As :class:`OptunaSearcher` (``pruner`` must be ``none``).
    """

    name = "nsga2"
    sampler_name = "NSGAIISampler"
    multi_objective = True
    fills_budget = False  # a Pareto front needs the cheaper candidates too: requests within the budget stay

    def __init__(self, space: SearchSpace, *, seed: int = 0, population_size: int = 16,
                 raw_constraint: bool = False, **options: Any) -> None:  # fmt: skip
        if not isinstance(population_size, int) or population_size < 2:
            raise AutoPruneError(f"population_size={population_size!r} must be an integer >= 2")
        self.population_size = population_size
        self.raw_constraint = raw_constraint
        super().__init__(space, seed=seed, **options)

    def _make_sampler(self) -> optuna.samplers.BaseSampler:
        return optuna.samplers.NSGAIISampler(seed=self.seed, population_size=self.population_size)

    def _mark(self, trial: optuna.Trial, raw_cost: float) -> None:
        if self.raw_constraint:
            with quiet_optuna():
                trial.set_constraint("budget", raw_cost - self.space.target)


#: The searchers of this module by name.
OPTUNA_SEARCHERS: dict[str, type[OptunaSearcher]] = {
    cls.name: cls for cls in (TPESearcher, CmaEsSearcher, GPSearcher, QMCSearcher, NSGA2Searcher)
}


def searcher_options(cls: type[Searcher]) -> list[str]:
    """The keyword options a searcher class takes besides ``space`` and ``seed``."""
    names: list[str] = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(vars(klass)["__init__"]).parameters.values():
            if p.kind == p.KEYWORD_ONLY and p.name != "seed" and p.name not in names:
                names.append(p.name)
    return names


class _Factory:
    """Registry entry of an Optuna searcher: checks option names, then builds it.

    ``study_based`` tells the CLI that this searcher takes ``storage``, ``study_name``, ``total_trials``,
    ``pruner`` and ``seed_ratios`` and that several worker processes can share its study.
    """

    study_based = True

    def __init__(self, cls: type[OptunaSearcher]) -> None:
        self.cls = cls
        self.options = searcher_options(cls)
        self.__doc__ = cls.__doc__

    def __call__(self, space: SearchSpace, *, seed: int = 0, **options: Any) -> OptunaSearcher:
        for key in options:
            if key not in self.options:
                raise AutoPruneError(
                    f"searcher {self.cls.name!r} has no option {key!r}.{suggest(key, self.options)} "
                    f"Its options: {', '.join(self.options)}"
                )
        return self.cls(space, seed=seed, **options)


for _name, _cls in OPTUNA_SEARCHERS.items():
    register_searcher(_name, _Factory(_cls))


def search_candidates(
    evaluator: Evaluator,
    space: SearchSpace,
    *,
    searcher: str = "tpe",
    trials: int = 50,
    seed: int = 0,
    rungs: Sequence[int] | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    progress: bool = False,
    **options: Any,
) -> SearchResult:
    """One search with plain arguments over an existing evaluator: ``make_searcher`` + :func:`run_search`.

    Meant for a search inside your own Optuna objective (tuning the budget, the searcher or its options):
    pass the same evaluator to every call and candidates seen by earlier calls cost nothing. To start from
    a supernet and data instead, see :func:`autoprune.pipelines.search.search_supernet`.

    Args:
        evaluator: Scores candidates (e.g. :class:`~autoprune.evaluate.SupernetEvaluator`).
        space: The search space (its target is the budget).
        searcher: Registered searcher name (``tpe``, ``cmaes``, ``gp``, ``qmc``, ``nsga2``, ``random``, ...).
        trials: Trials to run.
        seed: Seeds the searcher.
        rungs: Validation-batch counts for early stopping (with ``pruner=...``); None: full fidelity only.
        out: Run folder for ``trials.jsonl`` / ``trials.csv`` (nothing written when None).
        resume: Continue the trials recorded in ``out``.
        progress: Show a progress bar.
        **options: Searcher options (``pruner``, ``storage``, ``study_name``, ``seed_ratios``, ...).

    Returns:
        The :class:`SearchResult` (``.best``, ``.pareto``, ``.trials``).
    """
    s = make_searcher(searcher, space, seed=seed, **options)
    config = SearchConfig(trials=trials, rungs=None if rungs is None else tuple(rungs), seed=seed)
    return run_search(s, evaluator, config, out=None if out is None else Path(out), resume=resume, progress=progress)
