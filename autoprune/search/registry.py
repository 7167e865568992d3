"""Searchers by name: ``make_searcher("tpe", space, seed=0)``; unknown names list the valid ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoprune._registry import Registry
from autoprune.search.base import Searcher
from autoprune.search_spaces import SearchSpace

#: Builds a searcher: ``factory(space, seed=..., **options)``; searcher-specific options are keywords.
SearcherFactory = Callable[..., Searcher]


SEARCHERS: Registry[SearcherFactory] = Registry("searcher")


def register_searcher(name: str, factory: SearcherFactory, *, overwrite: bool = False) -> SearcherFactory:
    """Make ``factory`` available as ``--searcher NAME`` and :func:`make_searcher` ``(NAME, ...)``."""
    return SEARCHERS.register(name, factory, overwrite=overwrite)


def make_searcher(name: str, space: SearchSpace, *, seed: int = 0, **options: Any) -> Searcher:
    """The searcher registered as ``name`` over ``space``.

    Raises:
        UnknownNameError: ``name`` is not registered (the message lists the valid names).
    """
    return SEARCHERS.get(name)(space, seed=seed, **options)
