"""ImageNet-style class folders: ``DIR/train/<class>/*.jpg`` and ``DIR/val/<class>/*.jpg`` (or ``test/``)."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets, transforms

from autoprune.data._missing import data_not_found
from autoprune.data.splits import DataSplits, LoadOptions, Transform, TransformedView, split_train_val

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = 224
LAYOUT = ["DIR/train/<class>/*.jpg", "DIR/val/<class>/*.jpg (or DIR/test/<class>/*.jpg)"]
#: Names accepted for the held-out (test) folder, in order of preference.
TEST_FOLDERS = ("val", "test")


def _transforms(size: int, augment: bool) -> tuple[Transform, Transform]:
    tail = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    eval_tf = transforms.Compose(
        [transforms.Resize(int(size * 256 / 224)), transforms.CenterCrop(size), *tail]
    )
    if not augment:
        return eval_tf, eval_tf
    train_tf = transforms.Compose(
        [transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip(), *tail]
    )
    return train_tf, eval_tf


def _read(name: str, root: Path, folder: Path, transform: Transform | None) -> datasets.ImageFolder:
    try:
        return datasets.ImageFolder(str(folder), transform=transform)
    except OSError as exc:  # FileNotFoundError: no class folders, or no image in them
        raise data_not_found(name, root, LAYOUT, downloadable=False, reason=str(exc)) from exc


def load_imagefolder(data_dir: Path | None, options: LoadOptions) -> DataSplits:
    """Load class folders; ``val`` is carved out of ``train/``, ``test`` is ``val/`` (or ``test/``).

    Images are converted to RGB. ``options.image_size`` defaults to 224: train images get
    ``RandomResizedCrop`` and a horizontal flip (when ``augment``), eval images are resized to
    ``size * 256 / 224`` and center-cropped.

    Args:
        data_dir: The folder holding ``train/`` and ``val/`` (or ``test/``).
        options: Split, resize and augmentation settings (``download`` is not possible here).

    Returns:
        The splits; classes are the sorted names of the folders in ``train/``.

    Raises:
        DataNotFoundError: If a folder is missing, holds no images, or ``val/`` has other classes than
            ``train/``.
    """
    name = "imagefolder"
    if data_dir is None or not (data_dir / "train").is_dir():
        raise data_not_found(name, data_dir, LAYOUT, downloadable=False)
    test_dir = next((data_dir / d for d in TEST_FOLDERS if (data_dir / d).is_dir()), None)
    if test_dir is None:
        raise data_not_found(name, data_dir, LAYOUT, downloadable=False, reason="no val/ or test/ folder")
    size = options.image_size or DEFAULT_SIZE
    train_tf, eval_tf = _transforms(size, options.augment)
    base_train = _read(name, data_dir, data_dir / "train", None)
    test = _read(name, data_dir, test_dir, eval_tf)
    if test.classes != base_train.classes:
        only_train = sorted(set(base_train.classes) - set(test.classes))[:5]
        only_test = sorted(set(test.classes) - set(base_train.classes))[:5]
        reason = f"class folders differ: only in train/: {only_train}, only in {test_dir.name}/: {only_test}"
        raise data_not_found(name, data_dir, LAYOUT, downloadable=False, reason=reason)
    train, val = split_train_val(
        TransformedView(base_train, train_tf), TransformedView(base_train, eval_tf), len(base_train), options
    )
    return DataSplits(
        name=name,
        train=train,
        val=val,
        test=test,
        num_classes=len(base_train.classes),
        in_channels=3,
        image_size=(size, size),
    )
