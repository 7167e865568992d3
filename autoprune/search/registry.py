"""Searchers by name: ``make_searcher("tpe", space, seed=0)``; unknown names list the valid ones.

The registry holds the searcher classes themselves, so their capabilities (``study_based``,
``multi_objective``, ``proposes_infeasible``, ...) and options are read from the class:
``SEARCHERS.get("tpe").study_based``. A new searcher is one class plus one :func:`register_searcher` line.
"""

from __future__ import annotations

from typing import Any

from autoprune._registry import Registry
from autoprune.search.base import Searcher
from autoprune.search_spaces import SearchSpace

SEARCHERS: Registry[type[Searcher]] = Registry("searcher")


def register_searcher(name: str, cls: type[Searcher], *, overwrite: bool = False) -> type[Searcher]:
    """Make the searcher class ``cls`` available as ``--searcher NAME`` and :func:`make_searcher` ``(NAME, ...)``."""
    return SEARCHERS.register(name, cls, overwrite=overwrite)


def make_searcher(name: str, space: SearchSpace, *, seed: int = 0, **options: Any) -> Searcher:
    """The searcher registered as ``name`` over ``space``, with its options checked.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
        AutoPruneError: an option the searcher does not take (:meth:`Searcher.check_options`), or a bad value.
    """
    cls = SEARCHERS.get(name)
    cls.check_options(options)
    return cls(space, seed=seed, **options)
