"""The re-scoring's calibration batches depend on the seed only, not on what drew from torch's generator before."""

from __future__ import annotations

import torch

from autoprune.data import load_dataset
from autoprune.pipelines.search import rescore_calibration


def test_calibration_batches_are_the_same_whatever_ran_before() -> None:
    splits = load_dataset("digits", None)  # train-time augmentation: random shifts from the global generator
    torch.manual_seed(1)
    first_draw = splits.train[0][0]
    torch.manual_seed(2)
    assert not torch.equal(first_draw, splits.train[0][0])  # the augmentation does read the global generator
    torch.manual_seed(1)
    before = torch.get_rng_state()
    a = rescore_calibration(splits, 3, seed=0)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator is left as it was
    torch.manual_seed(2)
    torch.rand(1000)  # e.g. the trials of a longer (or resumed) search
    b = rescore_calibration(splits, 3, seed=0)
    assert len(a) == len(b) == 3
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = rescore_calibration(splits, 3, seed=1)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))  # another seed, other batches
