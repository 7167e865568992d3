"""One searched group of a :class:`~autoprune.search_spaces.SearchSpace`: its allowed kept-channel counts."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from autoprune.errors import AutoPruneError
from autoprune.search_spaces._checks import integer, number, show


@dataclass(frozen=True)
class GroupSpace:
    """The allowed kept-channel counts of one group.

    Attributes:
        name: Group name (see :attr:`ModelStructure.groups`).
        channels: Channels of the dense group.
        choices: Allowed kept counts, ascending and distinct, each in ``[1, channels]``.
        round_to: This group's own channel rounding (its counts are multiples of it, or the whole
            group), at most ``channels``; ``None``: the space's ``round_to``.
    """

    name: str
    channels: int
    choices: tuple[int, ...]
    round_to: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise AutoPruneError(f"group name must be a string, got {show(self.name)}")
        channels = integer(self.channels, f"group {self.name!r}: channels")
        if self.round_to is not None:
            own = integer(self.round_to, f"group {self.name!r}: round_to")
            if own > channels:
                raise AutoPruneError(
                    f"group {self.name!r}: round_to={own} exceeds its {channels} channels, so it could only stay "
                    f"whole; use a round_to of at most {channels}, or list the group under 'exclude'"
                )
            object.__setattr__(self, "round_to", own)
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Iterable):
            raise AutoPruneError(f"group {self.name!r}: choices must be a list of counts, got {show(self.choices)}")
        choices = tuple(integer(c, f"group {self.name!r}: choice") for c in self.choices)
        if not choices:
            raise AutoPruneError(f"group {self.name!r}: choices must not be empty")
        if any(b <= a for a, b in itertools.pairwise(choices)) or choices[-1] > channels:
            raise AutoPruneError(
                f"group {self.name!r}: choices {show(choices)} must be ascending, distinct and at most "
                f"channels={channels}"
            )
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "choices", choices)

    @property
    def min_count(self) -> int:
        return self.choices[0]

    @property
    def max_count(self) -> int:
        return self.choices[-1]

    def ratio(self, count: int) -> float:
        """Keep ratio of ``count`` kept channels."""
        return count / self.channels

    def count_for(self, keep_ratio: float) -> int:
        """The allowed count nearest to ``keep_ratio * channels`` (ties go to the smaller count)."""
        want = number(keep_ratio, f"keep ratio of group {self.name!r}") * self.channels
        return min(self.choices, key=lambda c: (abs(c - want), c))

    def floor_count(self, keep_ratio: float) -> int:
        """The largest allowed count not above ``keep_ratio * channels`` (the smallest choice if none)."""
        want = keep_ratio * self.channels + 1e-9
        below = [c for c in self.choices if c <= want]
        return below[-1] if below else self.choices[0]
