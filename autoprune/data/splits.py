"""The train / val / test splits every dataset is turned into, and the helpers that make them.

``val`` is always carved out of the *training* set: search scoring and calibration read ``val``;
``test`` is the official test split and is read only for the final report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset, Subset

Transform = Callable[[Any], Any]


@dataclass(frozen=True)
class LoadOptions:
    """Settings shared by every dataset loader (validated once here).

    Attributes:
        val_fraction: Fraction of the training set held out as ``val``, in (0, 1).
        split_seed: Seed of the train/val split.
        download: Let torchvision download a missing dataset (needs internet).
        image_size: Side of the square images the loaders yield; ``None`` keeps the dataset's default.
        augment: Apply train-time augmentation to ``train`` where the dataset has one.
    """

    val_fraction: float = 0.1
    split_seed: int = 0
    download: bool = False
    image_size: int | None = None
    augment: bool = True

    def __post_init__(self) -> None:
        check_val_fraction(self.val_fraction)
        if self.image_size is not None and (isinstance(self.image_size, bool) or self.image_size < 1):
            raise ValueError(f"image_size={self.image_size!r} must be a positive integer (pixels) or None")


def check_val_fraction(val_fraction: float) -> None:
    """Raise ``ValueError`` unless ``0 < val_fraction < 1``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(
            f"val_fraction={val_fraction!r} must be in (0, 1): it is the fraction of the training set "
            "held out for search scoring and calibration (0 is not allowed: scoring never reads the test set)"
        )


def _held_out_count(n: int, fraction: float) -> int:
    if n < 2:
        raise ValueError(f"cannot split {n} sample(s) into two non-empty parts")
    return min(max(1, round(n * fraction)), n - 1)


#: Seed of the draw of the verdict hold-out from ``val`` (:meth:`DataSplits.hold_out`): fixed, so that searches
#: with different seeds are judged on the same samples.
HOLDOUT_SEED = 20261202


def random_split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Split ``range(n)`` into (kept, held_out), ``held_out`` a seeded random ``fraction`` of it.

    Both lists are sorted, disjoint, non-empty, and together cover ``range(n)``.
    """
    n_held = _held_out_count(n, fraction)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(perm[n_held:]), sorted(perm[:n_held])


def stratified_split_indices(
    labels: Sequence[int] | np.ndarray, fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Like :func:`random_split_indices`, but keeps the class proportions in both parts."""
    n = len(labels)
    kept, held = train_test_split(
        np.arange(n), test_size=_held_out_count(n, fraction), random_state=seed, stratify=np.asarray(labels)
    )
    return sorted(int(i) for i in kept), sorted(int(i) for i in held)


class TransformedView(Dataset[tuple[Any, Any]]):
    """A view of ``base`` (which yields ``(x, y)``) that applies ``transform`` to ``x``.

    Two views of one base dataset (train transforms / eval transforms) share its storage.
    """

    def __init__(self, base: Dataset[Any], transform: Transform | None) -> None:
        self.base = base
        self.transform = transform

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        x, y = self.base[index]
        return (self.transform(x) if self.transform is not None else x), y

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def split_train_val(
    train_view: Dataset[Any], eval_view: Dataset[Any], n: int, options: LoadOptions
) -> tuple[Subset[Any], Subset[Any]]:
    """Carve ``val`` out of the training set.

    Args:
        train_view: The training set with train-time transforms.
        eval_view: The same training set (same order) with eval transforms.
        n: Number of training samples.
        options: ``val_fraction`` and ``split_seed`` are used.

    Returns:
        ``(train, val)``: ``Subset`` s of ``train_view`` and ``eval_view`` with disjoint indices.
    """
    train_idx, val_idx = random_split_indices(n, options.val_fraction, options.split_seed)
    return Subset(train_view, train_idx), Subset(eval_view, val_idx)


def default_val_batch_size(n_samples: int) -> int:
    """Validation batch size when none is given: 256, smaller for small validation sets so that there are at
    least 8 batches (one batch is one fidelity unit of a search), never under 16."""
    return min(256, max(16, math.ceil(n_samples / 8)))


@dataclass(frozen=True)
class DataSplits:
    """A dataset cut into train / val / test, with loaders.

    Attributes:
        name: Registry name of the dataset.
        train: Training part (with train-time augmentation where the dataset has one).
        val: Held-out part of the *training* set, without augmentation; used for all search
            scoring and calibration.
        test: Official test split, only for final reporting.
        num_classes: Number of classes.
        in_channels: Channels of the input tensors.
        image_size: ``(H, W)`` of the tensors the loaders yield.
    """

    name: str
    train: Dataset[Any]
    val: Dataset[Any]
    test: Dataset[Any]
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]

    def input_shape(self, batch_size: int = 1) -> tuple[int, int, int, int]:
        """Shape ``(N, C, H, W)`` of an input batch of ``batch_size`` samples."""
        return (batch_size, self.in_channels, *self.image_size)

    def train_loader(
        self, batch_size: int = 128, *, seed: int = 0, shuffle: bool = True, num_workers: int = 0
    ) -> DataLoader[Any]:
        """Loader over ``train``; the shuffling order is reproducible given ``seed``.

        Train-time augmentation draws from torch's global generator (seeded by a run's ``--seed``).
        """
        return DataLoader(
            self.train,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed),
        )

    def val_loader(self, batch_size: int = 256, *, num_workers: int = 0) -> DataLoader[Any]:
        """Loader over ``val`` in a fixed order."""
        return DataLoader(self.val, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    def hold_out(self, fraction: float) -> tuple[DataSplits, Dataset[Any] | None]:
        """Set a seeded random ``fraction`` of ``val`` aside: the splits without it, and the part set aside.

        A search scores and chooses on the rest of ``val``; the part set aside judges its winner once,
        against the uniform candidate, on samples the choice never saw (see
        :func:`autoprune.search.winner.judge_on_holdout`). ``fraction == 0`` sets nothing aside.

        Raises:
            ValueError: ``fraction`` outside [0, 1), or ``val`` too small to split.
        """
        if isinstance(fraction, bool) or not 0.0 <= fraction < 1.0:
            raise ValueError(f"holdout={fraction!r} must be in [0, 1): the fraction of the validation split set "
                             "aside to judge the search's winner (0: none)")
        if fraction == 0.0:
            return self, None
        n = len(self.val)  # type: ignore[arg-type]
        if n < 2:
            raise ValueError(f"holdout={fraction!r} needs at least 2 validation samples, the split has {n}: "
                             "give holdout=0 or a larger validation split")
        kept, held = random_split_indices(n, fraction, HOLDOUT_SEED)
        return replace(self, val=Subset(self.val, kept)), Subset(self.val, held)

    def test_loader(self, batch_size: int = 256, *, num_workers: int = 0) -> DataLoader[Any]:
        """Loader over ``test`` in a fixed order (final reporting only)."""
        return DataLoader(self.test, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    def calibration_loader(
        self, batch_size: int = 64, num_batches: int | None = None, *, seed: int = 0
    ) -> DataLoader[Any]:
        """Loader for calibration (adaptive BN, importance scores), drawn from ``val``, never ``test``.

        Args:
            batch_size: Samples per batch.
            num_batches: Limit to ``num_batches * batch_size`` samples; ``None`` uses all of ``val``.
            seed: Chooses which ``val`` samples are used and their order (deterministic given ``seed``).

        Returns:
            A loader over a ``Subset`` of ``val``.

        Raises:
            ValueError: If ``batch_size`` or ``num_batches`` is not positive.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        if num_batches is not None and num_batches < 1:
            raise ValueError(f"num_batches={num_batches!r} must be a positive integer or None (all of val)")
        n_val = len(self.val)  # type: ignore[arg-type]
        n = n_val if num_batches is None else min(n_val, num_batches * batch_size)
        order = torch.randperm(n_val, generator=torch.Generator().manual_seed(seed))[:n].tolist()
        return DataLoader(Subset(self.val, order), batch_size=batch_size, shuffle=False)
