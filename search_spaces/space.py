"""The search space: kept-channel choices per searched group, a budget, and projection onto it.

A *candidate* is one kept channel count per searched group (``dict[str, int]``); groups of the model
that the space does not search stay whole. Searchers may think in keep ratios and convert with
:meth:`SearchSpace.counts` (nearest choices) or :meth:`SearchSpace.project` (nearest *feasible* choices).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autoprune.engine.latency_table import LatencyTable
from autoprune.engine.rounding import Rounding, group_min, group_step
from autoprune.engine.structure import ModelStructure
from autoprune.errors import AutoPruneError
from autoprune.search_spaces._checks import integer, number, ratio, show, suggest
from autoprune.search_spaces.budget import check_reachable, check_target
from autoprune.search_spaces.group import GroupSpace

Metric = Literal["macs", "params", "latency"]
METRICS: tuple[str, ...] = ("macs", "params", "latency")
RatioInput = Mapping[str, float] | Iterable[float]
LATENCY_HINT = (
    "metric 'latency' needs a latency table measured on this machine: build one for the space's choices with "
    "autoprune.engine.latency_table.build_latency_table(structure, choices) (choices: a macs space's "
    "`.choices`) and pass it as latency_table=... to load_space, auto_space or SearchSpace"
)


@dataclass(frozen=True)
class SearchSpace:
    """Which groups are searched, their choices, and the budget every candidate must meet.

    Attributes:
        groups: The searched groups, in the model's group order; other groups stay whole.
        metric: Budget metric, ``"macs"``, ``"params"`` or ``"latency"`` (predicted by ``latency_table``).
        target: Fraction of the dense metric a candidate may keep, in (0, 1].
        round_to: Channel rounding the choices were made with (kept counts are multiples of it, or of
            the group's channel blocks, unless the group is whole); a group's own ``round_to`` overrides
            it (see :attr:`rounding`).
        structure: The model's groups and cost model (not compared, not serialized).
        latency_table: Per-layer latencies of this model on this machine (see
            :func:`autoprune.engine.latency_table.build_latency_table`); required by the latency metric,
            ignored by the others. Not compared, not serialized (save it with :meth:`LatencyTable.save`).

    Raises:
        AutoPruneError: malformed groups (unknown names, channel counts that differ from the model's,
            choices that break the rounding), metric or round_to; metric latency without a latency table,
            or with one that lacks widths the choices reach.
        BudgetError: ``target`` outside (0, 1] or below the cost of the smallest sub-network.
    """

    groups: tuple[GroupSpace, ...]
    metric: Metric
    target: float
    round_to: int
    structure: ModelStructure = field(compare=False, repr=False)
    latency_table: LatencyTable | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise AutoPruneError(f"metric {show(self.metric)} must be one of {', '.join(METRICS)}")
        if self.latency_table is not None and not isinstance(self.latency_table, LatencyTable):
            raise AutoPruneError(f"latency_table must be a LatencyTable, got {show(self.latency_table)}")
        if self.metric == "latency" and self.latency_table is None:
            raise AutoPruneError(LATENCY_HINT)
        target = check_target(self.target, self.metric)
        round_to = integer(self.round_to, "round_to")
        if not isinstance(self.structure, ModelStructure):
            raise AutoPruneError(f"structure must be a ModelStructure, got {show(self.structure)}")
        if not isinstance(self.groups, (tuple, list)):
            raise AutoPruneError(f"groups must be a tuple of GroupSpace, got {show(self.groups)}")
        groups = tuple(self.groups)
        if not groups:
            raise AutoPruneError("the search space has no groups to search; list some under 'groups' or exclude fewer")
        seen: set[str] = set()
        for g in groups:
            if not isinstance(g, GroupSpace):
                raise AutoPruneError(f"search space groups must be GroupSpace objects, got {show(g)}")
            if g.name in seen:
                raise AutoPruneError(f"group {g.name!r} appears twice in the search space")
            seen.add(g.name)
            self._check_group(g, round_to)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "round_to", round_to)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "_by_name", {g.name: g for g in groups})
        if self.metric == "latency":
            self._check_latency_table()
        check_reachable(self)

    def _check_latency_table(self) -> None:
        """Every width the choices reach has an entry, and the dense prediction is usable as the reference."""
        table = self.latency_table
        assert table is not None
        missing = table.missing(self.structure, self.choices)
        if missing:
            shown = ", ".join(f"{name} (in, out)={shape}" for name, shape in missing[:3])
            raise AutoPruneError(
                f"the latency table lacks {len(missing)} layer widths this space can reach, e.g. {shown}: it was "
                "built for other choices or another model; rebuild it with build_latency_table(structure, "
                "space.choices)"
            )
        dense_ms = table.predict(self.structure, {})
        if not dense_ms > 0.0:
            raise AutoPruneError(
                f"the latency table predicts {dense_ms:.4g} ms for the dense model; a latency budget needs a "
                "positive reference: rebuild the table with more repeats (the machine may have been busy)"
            )
        object.__setattr__(self, "_dense_latency_ms", dense_ms)

    def _check_group(self, g: GroupSpace, round_to: int) -> None:
        if g.name not in self.structure.group_names:
            raise AutoPruneError(
                f"unknown group {g.name!r}.{suggest(g.name, self.structure.group_names)} "
                f"This model's groups are: {', '.join(self.structure.group_names)}"
            )
        model_group = self.structure.group(g.name)
        if g.channels != model_group.channels:
            raise AutoPruneError(
                f"group {g.name!r} has {g.channels} channels in the space but {model_group.channels} in the "
                "model: the space was made for a different model"
            )
        own = round_to if g.round_to is None else g.round_to
        step, least = group_step(model_group, own), group_min(model_group, own)
        bad = [c for c in g.choices if c % step and c != g.channels]
        if bad:
            whose = "the space's" if g.round_to is None else "the group's"
            raise AutoPruneError(
                f"group {g.name!r}: counts {bad} are not multiples of {step} ({whose} round_to={own}, "
                f"{model_group.channel_groups} channel block(s)); use multiples of {step} or {g.channels}"
            )
        if g.choices[0] < least:
            raise AutoPruneError(
                f"group {g.name!r}: count {g.choices[0]} is below its minimum {least}: each of its "
                f"{len(model_group.segments)} concatenated branches keeps at least one channel block; "
                f"use counts of at least {least}"
            )

    # ------------------------------------------------------------------ names and conversions
    @property
    def rounding(self) -> Rounding:
        """The channel rounding of every group: the groups' own ``round_to``, the space's for the others."""
        return Rounding(self.round_to, {g.name: g.round_to for g in self.groups if g.round_to is not None})

    @property
    def names(self) -> list[str]:
        """Names of the searched groups, in order (the order of sequence inputs)."""
        return [g.name for g in self.groups]

    @property
    def choices(self) -> dict[str, tuple[int, ...]]:
        """Allowed kept counts per searched group (what :func:`build_latency_table` takes)."""
        return {g.name: g.choices for g in self.groups}

    def group(self, name: str) -> GroupSpace:
        """The searched group ``name``.

        Raises:
            AutoPruneError: ``name`` is not searched (with the valid names).
        """
        by_name: dict[str, GroupSpace] = self.__dict__["_by_name"]
        if isinstance(name, str) and name in by_name:
            return by_name[name]
        raise AutoPruneError(
            f"unknown group {show(name)} in this search space.{suggest(name, by_name)} "
            f"The searched groups are: {', '.join(by_name)}"
        )

    def _ratio_vector(self, ratios: RatioInput, *, allow_zero: bool) -> dict[str, float]:
        """Per searched group, a validated ratio; missing names of a mapping get their largest choice."""
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        if isinstance(ratios, Mapping):
            items = list(ratios.items())
            for name, _ in items:
                self.group(name)
            values = {g.name: g.ratio(g.max_count) for g in self.groups}
        elif isinstance(ratios, (str, bytes)) or not isinstance(ratios, Iterable):
            raise AutoPruneError(
                f"keep ratios must be a mapping of group names to ratios or a sequence in `names` order, "
                f"got {show(ratios)}"
            )
        else:
            flat = list(np.asarray(ratios, dtype=object).ravel()) if isinstance(ratios, np.ndarray) else list(ratios)
            if len(flat) != len(self.groups):
                raise AutoPruneError(
                    f"got {len(flat)} keep ratios for {len(self.groups)} searched groups; give one per group "
                    f"in `names` order ({', '.join(self.names[:3])}, ...) or a mapping"
                )
            items = list(zip(self.names, flat, strict=True))
            values = {}
        for name, value in items:
            r = number(value, f"keep ratio of group {name!r}")
            if not (0.0 <= r <= 1.0 if allow_zero else 0.0 < r <= 1.0):
                raise AutoPruneError(f"keep ratio {r} of group {name!r} must be in {interval}")
            values[name] = r
        return values

    def _count_map(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Validated counts for every searched group (missing ones whole); other model groups must be whole."""
        if not isinstance(counts, Mapping):
            raise AutoPruneError(f"counts must be a mapping of group names to kept channels, got {show(counts)}")
        by_name: dict[str, GroupSpace] = self.__dict__["_by_name"]
        result = {g.name: g.channels for g in self.groups}
        for name, value in counts.items():
            if name not in by_name and isinstance(name, str) and name in self.structure.group_names:
                whole = self.structure.group(name).channels
                if value == whole:
                    continue  # a group this space keeps whole, given whole: consistent
                raise AutoPruneError(
                    f"group {name!r} is not searched by this space (it stays whole with {whole} channels); "
                    f"got {show(value)} kept channels"
                )
            g = self.group(name)
            count = integer(value, f"kept channels of group {name!r}")
            if count > g.channels:
                raise AutoPruneError(f"kept channels of group {name!r} = {count} exceed its {g.channels} channels")
            result[name] = count
        return result

    def counts(self, ratios: RatioInput) -> dict[str, int]:
        """Nearest allowed count per group (no budget projection; see :meth:`project`).

        Args:
            ratios: Keep ratios in (0, 1], a mapping by group name (missing groups get their largest
                choice) or a sequence in :attr:`names` order.

        Raises:
            AutoPruneError: unknown names (with the valid ones), wrong length, ratios outside (0, 1].
        """
        values = self._ratio_vector(ratios, allow_zero=False)
        return {g.name: g.count_for(values[g.name]) for g in self.groups}

    def ratios(self, counts: Mapping[str, int]) -> dict[str, float]:
        """Keep ratio of every searched group (groups missing from ``counts`` are whole: 1.0)."""
        full = self._count_map(counts)
        return {g.name: g.ratio(full[g.name]) for g in self.groups}

    # ------------------------------------------------------------------ budget
    def cost(self, counts: Mapping[str, int]) -> float:
        """The budget metric of the model with these counts, as a fraction of the dense model's.

        MACs and parameters are exact; latency is the latency table's prediction over its prediction for
        the dense model.
        """
        full = self._count_map(counts)
        if self.metric == "latency":
            assert self.latency_table is not None
            dense_ms: float = self.__dict__["_dense_latency_ms"]
            return self.latency_table.predict(self.structure, full) / dense_ms
        if self.metric == "params":
            return self.structure.predict_params(full) / self.structure.dense_params
        return self.structure.predict_macs(full) / self.structure.dense_macs

    def feasible(self, counts: Mapping[str, int], tol: float = 1e-9) -> bool:
        """Whether every count is an allowed choice and the cost is within ``target + tol``."""
        full = self._count_map(counts)
        if any(full[g.name] not in g.choices for g in self.groups):
            return False
        return self.cost(full) <= self.target + tol

    def largest(self) -> dict[str, int]:
        """Every group at its largest choice (may exceed the budget: the sandwich rule's upper end)."""
        return {g.name: g.max_count for g in self.groups}

    def smallest(self) -> dict[str, int]:
        """Every group at its smallest choice (always within the budget)."""
        return {g.name: g.min_count for g in self.groups}

    def min_cost(self) -> float:
        return self.cost(self.smallest())

    def max_cost(self) -> float:
        return self.cost(self.largest())

    def project(self, ratios: RatioInput, *, fill: bool = True) -> dict[str, int]:
        """Feasible counts closest to ``ratios``: see :func:`autoprune.search_spaces.budget.project`.

        Args:
            ratios: Keep ratios in [0, 1] (a mapping or a sequence in :attr:`names` order); each is first
                clipped into its group's bounds.
            fill: Move a request that is under the budget *up* to it, keeping its shape, and top up until
                no group can grow by one choice (the default: an accuracy-at-a-budget search should spend
                the budget). ``False`` keeps an under-budget request as it is (Pareto searches, explicit
                requests); a request over the budget is shrunk either way.

        Returns:
            Counts that are allowed choices and meet the budget; deterministic.
        """
        from autoprune.search_spaces.budget import project

        return project(self, self._ratio_vector(ratios, allow_zero=True), fill=fill)

    def saturated(self, counts: Mapping[str, int]) -> bool:
        """Whether no group can take one more choice within the budget (within one rounding step of it)."""
        from autoprune.search_spaces.budget import saturated

        return saturated(self, self._count_map(counts))

    def budget_use(self, counts: Mapping[str, int]) -> dict[str, Any]:
        """``{"cost", "used" (cost / target), "saturated"}`` of a candidate."""
        from autoprune.search_spaces.budget import budget_use

        return budget_use(self, self._count_map(counts))

    def sample(self, rng: np.random.Generator) -> dict[str, int]:
        """A uniformly random choice per group, projected onto the budget (filled up to it)."""
        drawn = {g.name: g.ratio(g.choices[int(rng.integers(len(g.choices)))]) for g in self.groups}
        return self.project(drawn)

    def uniform(self, keep_ratio: float) -> dict[str, int]:
        """The same keep ratio in every group, fitted to the budget (``uniform(1.0)``: widest within it).

        See :func:`autoprune.search_spaces.budget.uniform`; a ratio whose counts already meet the budget
        is honoured as it is.
        """
        from autoprune.search_spaces.budget import uniform

        return uniform(self, ratio(keep_ratio, "keep_ratio"))

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready description; :meth:`from_dict` (or :func:`load_space`) rebuilds the space.

        A latency space records ``metric: latency`` only; its table is saved separately
        (:meth:`LatencyTable.save`) and passed back to :meth:`from_dict`.
        """
        return {
            "metric": self.metric,
            "target": self.target,
            "round_to": self.round_to,
            "groups": {g.name: {"channels": g.channels, **({} if g.round_to is None else {"round_to": g.round_to}),
                                "counts": list(g.choices)} for g in self.groups},
        }

