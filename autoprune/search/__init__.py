"""Searchers over the candidate evaluator: one interface (ask / tell / best / history), registered by name.

Built in: ``random`` (projected uniform sampling) and ``greedy`` (AutoSlim-style slimming); the Optuna
samplers and the Stable-Baselines3 agents register themselves from their own modules.
"""

from autoprune.search.base import STATES, Searcher, Trial, TrialState, pareto_front
from autoprune.search.greedy import GreedySearcher
from autoprune.search.optuna_searchers import search_candidates as search_candidates  # tpe, cmaes, gp, qmc, nsga2
from autoprune.search.random_search import RandomSearcher
from autoprune.search.registry import SEARCHERS, make_searcher, register_searcher
from autoprune.search.rl import RLSearcher as RLSearcher  # registers ddpg, td3, sac, ppo
from autoprune.search.runner import SearchConfig, SearchResult, TrialLog, fidelity_rungs, run_search

register_searcher("random", RandomSearcher)
register_searcher("greedy", GreedySearcher)

__all__ = [
    "SEARCHERS",
    "STATES",
    "GreedySearcher",
    "RandomSearcher",
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
