"""The episode logic shared by the environments and the RL searchers: map, clip and snap keep ratios.

An episode walks the searched groups of a :class:`SearchSpace` in order. For every group an action in
[0, 1] becomes a keep ratio inside the group's bounds, is snapped to the nearest allowed count, and is
clipped so that the episode can still end within the budget (AMC's resource-constrained clipping):

- from above: the largest count whose cost, with the groups decided so far and every later group at its
  smallest choice, still meets the target. The smallest sub-network meets the target (the space checks
  it), so by induction every finished episode is feasible by clipping alone;
- from below (``budget_slack``, optional): the smallest count whose cost, with every later group at its
  largest choice, still reaches ``target - budget_slack``, so episodes do not leave budget unused. When
  the two bounds cross, feasibility wins.

:meth:`SearchSpace.project` then runs on the episode's counts: clipping alone already makes them
feasible (the tests check it), and the projection fills what the episode left of the budget, so every
evaluated candidate spends it (within one rounding step). Observations are AMC's layer embeddings, each
feature scaled to [0, 1].

Budget-conditioned episodes (``target_range=(low, high)``): every episode has a target of its own inside
the range (:meth:`EpisodeCore.set_target`), the clipping and the projection use it, and the observation
gains one last feature, ``target`` (:data:`TARGET_FEATURE`), so that one policy serves every budget of
the range. Without a range nothing changes: the space's own target, the observation of :data:`FEATURES`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from autoprune.errors import AutoPruneError
from autoprune.search_spaces import SearchSpace

#: Names of the observation features, in order (see :meth:`EpisodeCore.observation`).
FEATURES: tuple[str, ...] = (
    "index", "is_conv", "in_channels", "out_channels", "kernel", "stride", "feature_map",
    "group_macs", "macs_removed", "macs_later", "previous_action",
)  # fmt: skip
#: How many leading features describe the group itself (up to ``group_macs``); the rest change during
#: an episode (what was removed so far, the previous action).
STATIC_FEATURES = FEATURES.index("group_macs") + 1
#: The feature a budget-conditioned episode appends to its observation: the episode's target (0..1).
TARGET_FEATURE = "target"
_EPS = 1e-12


def parse_target_range(value: str | Sequence[float]) -> tuple[float, float]:
    """A range of budget targets ``(low, high)`` from a pair of numbers or text ``"low:high"`` (``"0.3:0.7"``).

    Raises:
        AutoPruneError: not two numbers, or not ``0 < low <= high <= 1``.
    """
    parts = value.split(":") if isinstance(value, str) else value
    try:
        low, high = (float(v) for v in parts)
    except (TypeError, ValueError):
        raise AutoPruneError(f"target_range={value!r} must be two budget fractions low:high, e.g. 0.3:0.7") from None
    if not 0.0 < low <= high <= 1.0:
        raise AutoPruneError(
            f"target_range={low:g}:{high:g} must satisfy 0 < low <= high <= 1 (fractions of the dense budget "
            "metric to keep), e.g. 0.3:0.7"
        )
    return low, high


def check_target_range(value: str | Sequence[float], space: SearchSpace) -> tuple[float, float]:
    """:func:`parse_target_range`, and every target of the range reachable in ``space``.

    Raises:
        AutoPruneError: a malformed range, or ``low`` below what the smallest sub-network of the space keeps.
    """
    from autoprune.search_spaces.budget import check_reachable

    low, high = parse_target_range(value)
    check_reachable(space, target=low, fix="raise the low end of the target range")
    return low, high


@dataclass(frozen=True)
class GroupFacts:
    """Static facts of one searched group (from its root layer and the structure's cost model)."""

    name: str
    is_conv: float
    in_channels: float
    out_channels: float
    kernel: float
    stride: float
    feature_map: float
    macs: float


def group_facts(space: SearchSpace) -> list[GroupFacts]:
    """Per searched group: layer type, channels, kernel, stride, feature-map size and MACs of its root layer."""
    modules = dict(space.structure.model.named_modules())
    facts = []
    for g in space.groups:
        module = modules.get(g.name)
        group = space.structure.group(g.name)
        cost = space.structure.costs.get(g.name)
        positions = float(cost.out_positions) if cost is not None else 1.0
        if isinstance(module, nn.modules.conv._ConvNd):
            facts.append(GroupFacts(
                g.name, 1.0, float(module.in_channels), float(module.out_channels),
                float(module.kernel_size[0]), float(module.stride[0]), positions ** 0.5, float(group.macs),
            ))  # fmt: skip
        elif isinstance(module, nn.Linear):
            facts.append(GroupFacts(g.name, 0.0, float(module.in_features), float(module.out_features),
                                    1.0, 1.0, 1.0, float(group.macs)))
        else:  # an unwrapped parameter or another root: channel count only
            facts.append(GroupFacts(g.name, 0.0, float(g.channels), float(g.channels), 1.0, 1.0, 1.0,
                                    float(group.macs)))
    return facts


class EpisodeCore:
    """One pruning episode over a search space, without rewards: the part every env and agent shares.

    Args:
        space: The search space (its cost model enforces the budget).
        budget_slack: Clip from below so that the episode can still reach ``target - budget_slack`` of the
            budget metric (``None``: clip from above only, as AMC).
        target_range: Budget-conditioned episodes: targets ``(low, high)`` of the space's metric (see
            :func:`check_target_range`); the target starts at ``high`` until :meth:`set_target` moves it.
            ``None``: every episode has the space's own target.

    Raises:
        AutoPruneError: ``budget_slack`` negative or not below the (lowest) target; a bad ``target_range``.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        budget_slack: float | None = 0.02,
        target_range: str | Sequence[float] | None = None,
    ) -> None:
        self.target_range = None if target_range is None else check_target_range(target_range, space)
        lowest = space.target if self.target_range is None else self.target_range[0]
        if budget_slack is not None and not 0.0 <= budget_slack < lowest:
            raise AutoPruneError(
                f"budget_slack={budget_slack!r} must be in [0, target={lowest:g}) (a fraction of the dense "
                "budget metric an episode may leave unused), or None to clip from above only"
            )
        self.space = space
        if self.target_range is not None:
            self.space = dataclasses.replace(space, target=self.target_range[1])
        self.budget_slack = budget_slack
        self.facts = group_facts(space)
        static = np.array(
            [[f.in_channels, f.out_channels, f.kernel, f.stride, f.feature_map, f.macs] for f in self.facts]
        )
        self._static_scale = np.maximum(static.max(axis=0), _EPS)
        self._dense_macs = float(space.structure.dense_macs)
        later = np.cumsum([f.macs for f in self.facts][::-1])[::-1]
        self._macs_later = [float(x) for x in later[1:]] + [0.0]
        self.reset()

    @property
    def n_groups(self) -> int:
        return len(self.space.groups)

    @property
    def conditioned(self) -> bool:
        """Whether episodes are budget-conditioned (the observation ends with the target)."""
        return self.target_range is not None

    @property
    def features(self) -> tuple[str, ...]:
        """Names of the observation's features, in order."""
        return (*FEATURES, TARGET_FEATURE) if self.conditioned else FEATURES

    @property
    def target(self) -> float:
        """The current episode's budget target."""
        return float(self.space.target)

    def set_target(self, target: float) -> None:
        """Give the next episodes the budget ``target`` (inside :attr:`target_range`); call before :meth:`reset`.

        Raises:
            AutoPruneError: the episodes are not budget-conditioned, or ``target`` is outside the range.
        """
        if self.target_range is None:
            raise AutoPruneError(
                f"target={target!r}: these episodes have the fixed target {self.space.target:g}; build them with "
                "target_range=(low, high) to choose a target per episode"
            )
        low, high = self.target_range
        if not low - 1e-9 <= float(target) <= high + 1e-9:
            raise AutoPruneError(
                f"target={target!r} is outside the target range {low:g}:{high:g} of these episodes; pick one "
                "inside it"
            )
        if float(target) != self.space.target:
            self.space = dataclasses.replace(self.space, target=min(max(float(target), low), high))

    @property
    def done(self) -> bool:
        return self.t >= self.n_groups

    def reset(self) -> None:
        """Start a new episode at the first group."""
        self.t = 0
        self.counts: dict[str, int] = {}
        self.actions: list[float] = []
        self.previous_action = 0.0

    def observation(self) -> np.ndarray:
        """AMC's embedding of the current group (the last group's, updated, once the episode is done).

        Budget-conditioned episodes append the episode's target (:attr:`features`).
        """
        i = min(self.t, self.n_groups - 1)
        f = self.facts[i]
        static = np.array([f.in_channels, f.out_channels, f.kernel, f.stride, f.feature_map, f.macs])
        static = static / self._static_scale
        removed = (self._dense_macs - self.space.structure.predict_macs(self.counts)) / self._dense_macs
        obs = [
            i / max(self.n_groups - 1, 1), f.is_conv, *static[:5], static[5],
            removed, self._macs_later[i] / self._dense_macs, self.previous_action,
        ]  # fmt: skip
        if self.conditioned:
            obs.append(self.space.target)
        return np.clip(np.asarray(obs, dtype=np.float32), 0.0, 1.0)

    def bounds(self) -> tuple[int, int]:
        """The (lowest, highest) allowed count of the current group under the budget clipping."""
        g = self.space.groups[self.t]
        later = self.space.groups[self.t + 1 :]
        smallest_later = {h.name: h.min_count for h in later}
        largest_later = {h.name: h.max_count for h in later}
        target = self.space.target + _EPS
        fitting = [c for c in g.choices if self.space.cost({**self.counts, g.name: c, **smallest_later}) <= target]
        high = fitting[-1] if fitting else g.min_count
        low = g.min_count
        if self.budget_slack is not None:
            floor = self.space.target - self.budget_slack
            reaching = [c for c in g.choices if self.space.cost({**self.counts, g.name: c, **largest_later}) >= floor]
            low = reaching[0] if reaching else g.max_count
        return min(low, high), high

    def count_for_action(self, action: float) -> int:
        """The count an action in [0, 1] maps to for the current group (mapped, snapped, clipped)."""
        g = self.space.groups[self.t]
        a = float(np.clip(action, 0.0, 1.0))
        lo, hi = g.ratio(g.min_count), g.ratio(g.max_count)
        count = g.count_for(lo + a * (hi - lo))
        low, high = self.bounds()
        return min(max(count, low), high)

    def step(self, action: float, *, count: int | None = None) -> int:
        """Decide the current group with ``action`` in [0, 1]; returns its count.

        ``count`` (replays of recorded candidates) is taken as given instead of the action's clipped count.

        Raises:
            AutoPruneError: the episode is already done (call :meth:`reset`).
        """
        if self.done:
            raise AutoPruneError("the episode is over: every group is decided; call reset() to start another")
        g = self.space.groups[self.t]
        count = self.count_for_action(action) if count is None else int(count)
        self.counts[g.name] = count
        self.actions.append(float(np.clip(action, 0.0, 1.0)))
        self.previous_action = g.ratio(count)
        self.t += 1
        return count

    def action_for_count(self, count: int) -> float:
        """An action that maps to ``count`` for the current group (to replay a recorded candidate)."""
        g = self.space.groups[self.t]
        lo, hi = g.ratio(g.min_count), g.ratio(g.max_count)
        return 0.0 if hi <= lo else float(np.clip((g.ratio(count) - lo) / (hi - lo), 0.0, 1.0))

    def final_counts(self) -> tuple[dict[str, int], bool]:
        """The finished episode's counts projected onto the budget (filled up to it), and whether that changed them.

        Raises:
            AutoPruneError: the episode is not finished yet.
        """
        if not self.done:
            raise AutoPruneError(f"the episode has decided {self.t} of {self.n_groups} groups; finish it first")
        projected = self.space.project(self.space.ratios(self.counts))
        return projected, projected != self.counts


def replay(core: EpisodeCore, counts: Mapping[str, int]) -> tuple[list[np.ndarray], list[float]]:
    """Walk ``core`` through a recorded candidate: observations before every step and the actions taken.

    The actions are those that map exactly to the recorded counts (the original continuous actions are
    not recorded), so the transitions are those of the episode up to the snapping of each action.
    """
    core.reset()
    observations, actions = [], []
    for g in core.space.groups:
        observations.append(core.observation())
        action = core.action_for_count(int(counts[g.name]))
        actions.append(action)
        core.step(action, count=int(counts[g.name]))
    observations.append(core.observation())
    return observations, actions
