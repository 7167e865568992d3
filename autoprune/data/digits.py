"""scikit-learn's bundled 8x8 handwritten digits: the embedded default dataset (no download, no folder)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits as _sklearn_digits
from torch.utils.data import Subset, TensorDataset

from autoprune.data.splits import DataSplits, LoadOptions, stratified_split_indices

#: Mean and std of all 1797 images after scaling pixels 0..16 to 0..1.
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760
#: Fraction of the 1797 images held out as the test split.
TEST_FRACTION = 0.2
#: Seed of the test split. Fixed on purpose: the test set is the same whatever ``split_seed`` is.
TEST_SEED = 0
NATIVE_SIZE = 8


def load_digits(data_dir: Path | None, options: LoadOptions) -> DataSplits:
    """Load the digits as tensors: float32 images ``(N, 1, H, W)``, normalized, and int64 labels.

    The test split (20%, stratified) always uses the fixed seed :data:`TEST_SEED`; ``options.split_seed``
    only drives the (stratified) train/val split of the remaining 80%. There is no augmentation.

    Args:
        data_dir: Ignored (the data ships with scikit-learn).
        options: ``image_size`` optionally upscales the 8x8 images (bilinear); ``download`` and
            ``augment`` have no effect.

    Returns:
        The splits; each is a ``Subset`` of one ``TensorDataset`` holding all 1797 samples.
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
    return DataSplits(
        name="digits",
        train=Subset(everything, train_idx),
        val=Subset(everything, val_idx),
        test=Subset(everything, test_idx),
        num_classes=10,
        in_channels=1,
        image_size=(size, size),
    )
