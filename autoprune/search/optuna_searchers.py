"""The Optuna searchers by name: ``tpe``, ``cmaes``, ``gp``, ``qmc`` and ``nsga2`` (see :mod:`.optuna_search`).

Importing this module registers them; :func:`search_candidates` runs one search with plain arguments.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import optuna

from autoprune.errors import AutoPruneError
from autoprune.evaluate import Evaluator
from autoprune.search.optuna_search import OptunaSearcher
from autoprune.search.optuna_storage import quiet_optuna
from autoprune.search.registry import make_searcher, register_searcher
from autoprune.search.runner import SearchConfig, SearchResult, run_search
from autoprune.search_spaces import SearchSpace


class TPESearcher(OptunaSearcher):
    """Tree-structured Parzen Estimator (multivariate, constant liar for parallel workers)."""

    name = "tpe"
    sampler_class = optuna.samplers.TPESampler
    sampler_options: ClassVar[Mapping[str, Any]] = {"multivariate": True, "constant_liar": True}
    default_startup = 10


class CmaEsSearcher(OptunaSearcher):
    """CMA-ES (the uniform candidate is its first trial; Optuna 5 deprecates a fixed ``x0``)."""

    name = "cmaes"
    sampler_class = optuna.samplers.CmaEsSampler
    sampler_options: ClassVar[Mapping[str, Any]] = {"warn_independent_sampling": False}
    default_startup = 1


class GPSearcher(OptunaSearcher):
    """Gaussian-process Bayesian optimization (Optuna's GPSampler)."""

    name = "gp"
    sampler_class = optuna.samplers.GPSampler
    sampler_options: ClassVar[Mapping[str, Any]] = {"warn_independent_sampling": False}
    default_startup = 10


class QMCSearcher(OptunaSearcher):
    """Scrambled Sobol quasi-random sampling: an evenly spread random search."""

    name = "qmc"
    sampler_class = optuna.samplers.QMCSampler
    model_based = False
    sampler_options: ClassVar[Mapping[str, Any]] = {
        "qmc_type": "sobol", "scramble": True, "warn_independent_sampling": False,
    }  # fmt: skip


class NSGA2Searcher(OptunaSearcher):
    """NSGA-II over (accuracy up, MACs ratio down); the result is the Pareto front.

    Args:
        population_size: Individuals per generation (at least 2); the first generation is random.
        raw_constraint: Also mark raw samples beyond the budget as constraint violations (Optuna 5's
            ``trial.set_constraint``, which replaces the deprecated ``constraints_func``), which steers the
            population into the feasible region. Off by default: Optuna would then rank trials whose
            evaluated (projected) candidate is feasible as infeasible, and ``study.best_trials`` would
            leave them out and disagree with :attr:`pareto`.
        **options: As :class:`OptunaSearcher` (``pruner`` must be ``none``).
    """

    name = "nsga2"
    sampler_class = optuna.samplers.NSGAIISampler
    multi_objective = True
    fills_budget = False  # a Pareto front needs the cheaper candidates too: requests within the budget stay
    fast_options: ClassVar[Mapping[str, Any]] = {"population_size": 2}

    def __init__(self, space: SearchSpace, *, seed: int = 0, population_size: int = 16,
                 raw_constraint: bool = False, **options: Any) -> None:  # fmt: skip
        if not isinstance(population_size, int) or population_size < 2:
            raise AutoPruneError(f"population_size={population_size!r} must be an integer >= 2")
        self.population_size = population_size
        self.raw_constraint = raw_constraint
        super().__init__(space, seed=seed, **options)

    @property
    def startup_trials(self) -> int:
        return self.population_size  # the first generation is random

    def _sampler_kwargs(self) -> dict[str, Any]:
        return {"population_size": self.population_size}

    def _mark(self, trial: optuna.Trial, raw_cost: float) -> None:
        if self.raw_constraint:
            with quiet_optuna():
                trial.set_constraint("budget", raw_cost - self.space.target)


#: The searchers of this module by name.
OPTUNA_SEARCHERS: dict[str, type[OptunaSearcher]] = {
    cls.name: cls for cls in (TPESearcher, CmaEsSearcher, GPSearcher, QMCSearcher, NSGA2Searcher)
}

for _name, _cls in OPTUNA_SEARCHERS.items():
    register_searcher(_name, _cls)


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
