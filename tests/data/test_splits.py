"""The hold-out a search sets aside from validation: disjoint, fixed, and refused when it cannot exist."""

from __future__ import annotations

import dataclasses

import pytest
from torch.utils.data import Subset

from autoprune.data import load_dataset


def _indices(part: Subset) -> list[int]:  # type: ignore[type-arg]
    return [int(i) for i in part.indices]


def test_hold_out_splits_validation_into_two_disjoint_parts_that_cover_it() -> None:
    splits = load_dataset("digits")
    n = len(splits.val)  # type: ignore[arg-type]
    rest, held = splits.hold_out(0.3)
    assert held is not None and isinstance(held, Subset) and isinstance(rest.val, Subset)
    kept, out = _indices(rest.val), _indices(held)
    assert not set(kept) & set(out) and sorted(kept + out) == list(range(n))
    assert len(out) == round(0.3 * n)
    assert rest.train is splits.train and rest.test is splits.test  # only validation is cut
    again_rest, again_held = splits.hold_out(0.3)  # fixed: every search seed is judged on the same samples
    assert _indices(again_held) == out and _indices(again_rest.val) == kept  # type: ignore[arg-type]
    x, y = held[0]
    assert (x == splits.val[out[0]][0]).all() and y == splits.val[out[0]][1]


def test_no_hold_out_leaves_the_splits_alone_and_bad_fractions_are_refused() -> None:
    splits = load_dataset("digits")
    same, held = splits.hold_out(0.0)
    assert same is splits and held is None
    for bad in (1.0, -0.1, 2, True):
        with pytest.raises(ValueError, match=r"holdout=.*must be in \[0, 1\)"):
            splits.hold_out(bad)  # type: ignore[arg-type]
    tiny = dataclasses.replace(splits, val=Subset(splits.val, [0]))
    with pytest.raises(ValueError, match="at least 2 validation samples"):
        tiny.hold_out(0.5)
