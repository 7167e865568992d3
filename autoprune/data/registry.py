"""The dataset registry and :func:`load_dataset`, the one entry point the rest of autoprune uses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from autoprune._registry import Registry
from autoprune.data.digits import load_digits
from autoprune.data.imagefolder import load_imagefolder
from autoprune.data.splits import DataSplits, LoadOptions
from autoprune.data.torchvision_sets import load_cifar10, load_cifar100, load_fashion_mnist, load_mnist

#: A dataset loader: ``(data_dir, options) -> DataSplits``.
DatasetLoader = Callable[[Path | None, LoadOptions], DataSplits]

DATASETS: Registry[DatasetLoader] = Registry("dataset")
DATASETS.register("digits", load_digits)
DATASETS.register("fashion-mnist", load_fashion_mnist)
DATASETS.register("mnist", load_mnist)
DATASETS.register("cifar10", load_cifar10)
DATASETS.register("cifar100", load_cifar100)
DATASETS.register("imagefolder", load_imagefolder)


#: Validation fractions that differ from the usual 10% of the training set.
VAL_FRACTIONS: dict[str, float] = {"digits": 0.25}


def dataset_names() -> list[str]:
    """Sorted names of the registered datasets."""
    return DATASETS.names()


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_fraction: float | None = None,
    split_seed: int = 0,
    download: bool = False,
    image_size: int | None = None,
    augment: bool = True,
) -> DataSplits:
    """Load a registered dataset and cut it into train / val / test.

    ``val`` is a seeded random ``val_fraction`` of the *training* set (disjoint from ``train``, without
    augmentation); ``test`` is the dataset's official test split. For ``"digits"`` (bundled with
    scikit-learn) the test split is a fixed stratified 20% that does not depend on ``split_seed``.

    Args:
        name: A name from :func:`dataset_names`.
        data_dir: The dataset folder (ignored by ``"digits"``, required by all others).
        val_fraction: Fraction of the training set held out as ``val``, in (0, 1); ``None``: the dataset's
            default (:data:`VAL_FRACTIONS`, else 0.1). Digits holds out 25% (360 images): with 10% (144)
            one image is 0.7 accuracy points, too coarse to rank pruned candidates.
        split_seed: Seed of the train/val split.
        download: Let torchvision download a missing dataset into ``data_dir`` (needs internet).
        image_size: Side of the square images to yield; ``None`` keeps the dataset's own size
            (224 for ``"imagefolder"``).
        augment: Apply train-time augmentation to ``train`` (CIFAR, imagefolder).

    Returns:
        The splits and their metadata (classes, channels, image size) with loader helpers.

    Raises:
        UnknownNameError: If ``name`` is not registered (the message lists the valid names).
        ValueError: If ``val_fraction`` or ``image_size`` is out of range.
        DataNotFoundError: If the dataset folder is missing or malformed.
    """
    loader = DATASETS.get(name)
    options = LoadOptions(
        val_fraction=VAL_FRACTIONS.get(name, 0.1) if val_fraction is None else val_fraction,
        split_seed=split_seed,
        download=download,
        image_size=image_size,
        augment=augment,
    )
    return loader(None if data_dir is None else Path(data_dir).expanduser(), options)
