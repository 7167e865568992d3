"""The validation samples a search sets aside to judge its winner (``--holdout``), shared by the search and
the policy answers: how the part is resolved, and the scorer that reads it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from autoprune.data import DataSplits
from autoprune.errors import AutoPruneError
from autoprune.evaluate import FullScore, SupernetEvaluator
from autoprune.supernet import Supernet


def set_aside(splits: DataSplits, holdout: float | Dataset[Any] | None) -> tuple[DataSplits, Dataset[Any] | None]:
    """``splits`` without the hold-out, and the hold-out: a fraction is cut here (:meth:`DataSplits.hold_out`),
    a dataset was already set aside by the caller, 0 or None means none."""
    if isinstance(holdout, (int, float)):
        try:
            return splits.hold_out(float(holdout))
        except ValueError as e:
            raise AutoPruneError(str(e)) from None
    return splits, holdout


def holdout_scorer(supernet: Supernet, held: Dataset[Any], calibration: list[tuple[torch.Tensor, torch.Tensor]], *,
                   val_batch_size: int, device: torch.device | str) -> Callable[[Mapping[str, int]], FullScore]:
    """Full-fidelity scoring on the hold-out, with the re-scoring's calibration batches."""
    judge = SupernetEvaluator(supernet, DataLoader(held, batch_size=val_batch_size, shuffle=False), calibration,
                              bn_batches=len(calibration), device=device)
    return judge.score
