"""Declarative pruning search spaces (installed as ``autoprune.search_spaces``).

A :class:`SearchSpace` says which groups are searched, the kept-channel counts each may take, and the
budget (a fraction of the dense MACs, parameters, or latency predicted by a per-layer latency table,
:mod:`autoprune.engine.latency_table`) every candidate must meet. Spaces come from the
bundled YAML files (:func:`space_names`, :func:`load_space`), the user's own YAML, or :func:`auto_space`.
:meth:`SearchSpace.project` maps any keep-ratio vector to a feasible candidate, so no searcher ever
evaluates one that misses the budget.
"""

from autoprune.search_spaces.derived import save_space, with_rounding
from autoprune.search_spaces.space import METRICS, GroupSpace, Metric, SearchSpace
from autoprune.search_spaces.spec import (
    auto_space,
    build_space,
    channel_space,
    load_space,
    space_from_dict,
    space_names,
)

__all__ = [
    "METRICS",
    "GroupSpace",
    "Metric",
    "SearchSpace",
    "auto_space",
    "build_space",
    "channel_space",
    "load_space",
    "save_space",
    "space_from_dict",
    "space_names",
    "with_rounding",
]
