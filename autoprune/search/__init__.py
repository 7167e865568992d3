"""Searchers over the candidate evaluator: one interface (ask / tell / best / history), registered by name.

Built in: ``random`` (projected uniform sampling), ``greedy`` (AutoSlim-style slimming) and ``sampling``
(EagleEye-style distinct draws from per-group choice probabilities); the Optuna samplers and the
Stable-Baselines3 agents register themselves from their own modules. The registry holds the classes: their
capabilities and options are class attributes (``SEARCHERS.get("tpe").study_based``).
"""

from autoprune.search.base import STATES, Proposal, Searcher, Trial, TrialState, pareto_front
from autoprune.search.greedy import GreedySearcher
from autoprune.search.optuna_searchers import search_candidates as search_candidates  # tpe, cmaes, gp, qmc, nsga2
from autoprune.search.random_search import RandomSearcher
from autoprune.search.registry import SEARCHERS, make_searcher, register_searcher
from autoprune.search.rl import RLSearcher as RLSearcher  # registers ddpg, td3, sac, ppo
from autoprune.search.runner import SearchConfig, SearchResult, fidelity_rungs, run_search
from autoprune.search.sampling import SamplingSearcher
from autoprune.search.trial_log import TrialLog

register_searcher("random", RandomSearcher)
register_searcher("greedy", GreedySearcher)
register_searcher("sampling", SamplingSearcher)

__all__ = [
    "SEARCHERS",
    "STATES",
    "GreedySearcher",
    "Proposal",
    "RandomSearcher",
    "SamplingSearcher",
    "SearchConfig",
    "SearchResult",
    "Searcher",
    "Trial",
    "TrialLog",
    "TrialState",
    "fidelity_rungs",
    "make_searcher",
    "pareto_front",
    "register_searcher",
    "run_search",
]
