"""scikit-learn's bundled 8x8 handwritten digits: the embedded default dataset (no download, no folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sklearn_digits
from torch.utils.data import Dataset, Subset, TensorDataset

from autoprune.data.splits import DataSplits, LoadOptions, stratified_split_indices

#: Mean and std of all 1797 images after scaling pixels 0..16 to 0..1.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760
#: Fraction of the 1797 images held out as the test split.
TEST_FRACTION = 0.2
#: Seed of the test split. Fixed on purpose: the test set is the same whatever ``split_seed`` is.
TEST_SEED = 0
NATIVE_SIZE = 8


class RandomShift(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``base``'s images shifted by a random offset of up to ``padding`` pixels each way.

    The image is padded with ``fill`` (the background) and a window of the original size is cut at a
    random place, as ``torchvision.transforms.RandomCrop(size, padding)`` does; ``padding=0`` is the
    identity. Offsets come from torch's global generator, so a seeded run repeats them.
    """

    def __init__(self, base: Dataset[Any], padding: int, fill: float) -> None:
        self.base = base
        self.padding = padding
        self.fill = fill

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[index]
        if not self.padding:
            return x, y
        p = self.padding
        h, w = x.shape[-2:]
        top, left = (int(v) for v in torch.randint(0, 2 * p + 1, (2,)))
        padded = F.pad(x, (p, p, p, p), value=self.fill)
        return padded[..., top : top + h, left : left + w], y

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


def load_digits(data_dir: Path | None, options: LoadOptions) -> DataSplits:
    """Load the digits as tensors: float32 images ``(N, 1, H, W)``, normalized, and int64 labels.

    The test split (20%, stratified) always uses the fixed seed :data:`TEST_SEED`; ``options.split_seed``
    only drives the (stratified) train/val split of the remaining 80%. With ``options.augment`` the
    train split is randomly shifted by up to one pixel in 8 (padding with the background, like CIFAR's
    pad-4 crop at 32 px); no flip, since a mirrored digit is another symbol.

    Args:
        data_dir: Ignored (the data ships with scikit-learn).
        options: ``image_size`` optionally upscales the 8x8 images (bilinear); ``augment`` shifts the
            train split; ``download`` has no effect.

    Returns:
        The splits; each is a ``Subset`` of one ``TensorDataset`` holding all 1797 samples (``train`` of
        a :class:`RandomShift` view of it).
    """
    del data_dir
    bunch = _sklearn_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    size = options.image_size or NATIVE_SIZE
    if size != NATIVE_SIZE:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    images = (images - DIGITS_MEAN) / DIGITS_STD
    everything = TensorDataset(images.contiguous(), labels)

    all_labels = labels.tolist()
    rest, test_idx = stratified_split_indices(all_labels, TEST_FRACTION, TEST_SEED)
    kept, held = stratified_split_indices(
        [all_labels[i] for i in rest], options.val_fraction, options.split_seed
    )
    train_idx = [rest[i] for i in kept]
    val_idx = [rest[i] for i in held]
    padding = max(1, round(size / NATIVE_SIZE)) if options.augment else 0
    background = (0.0 - DIGITS_MEAN) / DIGITS_STD
    return DataSplits(
        name="digits",
        train=Subset(RandomShift(everything, padding, background), train_idx),
        val=Subset(everything, val_idx),
        test=Subset(everything, test_idx),
        num_classes=10,
        in_channels=1,
        image_size=(size, size),
    )
