"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 from a local folder, through torchvision's own classes."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from torchvision import datasets, transforms

from autoprune.data._missing import data_not_found
from autoprune.data.splits import DataSplits, LoadOptions, Transform, TransformedView, split_train_val

#: What reading a missing, truncated or corrupted dataset file raises inside torchvision.
READ_ERRORS = (RuntimeError, OSError, ValueError, AssertionError, EOFError, pickle.UnpicklingError)


@dataclass(frozen=True)
class TorchvisionSpec:
    """How to read one torchvision dataset from a folder.

    Attributes:
        name: Registry name.
        dataset_cls: The torchvision class (constructed with ``root, train=..., download=...``).
        native_size: Side of the stored square images.
        in_channels: 1 (grayscale) or 3 (RGB).
        num_classes: Number of classes.
        mean: Per-channel mean used for normalization.
        std: Per-channel standard deviation used for normalization.
        layout: Expected files, with ``DIR`` for the data folder (for error messages).
        crop_padding: Train-time random crop: zero padding in pixels at ``native_size`` (scaled with the
            image size; 0 = no crop).
        flip: Train-time random horizontal flip (off where mirroring can change the class, e.g. digits).
    """

    name: str
    dataset_cls: Any
    native_size: int
    in_channels: int
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    layout: tuple[str, ...]
    crop_padding: int = 0
    flip: bool = False


def _mnist_layout(folder: str) -> tuple[str, ...]:
    files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    return tuple(f"DIR/{folder}/raw/{f}" for f in files)


# A mirrored garment is the same class: pad-2 crop + flip (issue 16: ResNet-20, 15 epochs, 93.4% -> 94.3% test).
FASHION_MNIST = TorchvisionSpec(
    "fashion-mnist",
    datasets.FashionMNIST,
    28,
    1,
    10,
    (0.2860,),
    (0.3530,),
    _mnist_layout("FashionMNIST"),
    crop_padding=2,
    flip=True,
)
# A mirrored digit is another symbol (or none): crop only.
MNIST = TorchvisionSpec(
    "mnist", datasets.MNIST, 28, 1, 10, (0.1307,), (0.3081,), _mnist_layout("MNIST"), crop_padding=2
)
CIFAR10 = TorchvisionSpec(
    "cifar10",
    datasets.CIFAR10,
    32,
    3,
    10,
    (0.4914, 0.4822, 0.4465),
    (0.2470, 0.2435, 0.2616),
    ("DIR/cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",),
    crop_padding=4,
    flip=True,
)
CIFAR100 = TorchvisionSpec(
    "cifar100",
    datasets.CIFAR100,
    32,
    3,
    100,
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2762),
    ("DIR/cifar-100-python/ (train, test, meta)",),
    crop_padding=4,
    flip=True,
)


def _transforms(spec: TorchvisionSpec, size: int, augment: bool) -> tuple[Transform, Transform]:
    resize: list[Any] = [] if size == spec.native_size else [transforms.Resize((size, size))]
    tail = [transforms.ToTensor(), transforms.Normalize(spec.mean, spec.std)]
    eval_tf = transforms.Compose([*resize, *tail])
    augmentation = train_augmentation(spec, size) if augment else []
    if not augmentation:
        return eval_tf, eval_tf
    return transforms.Compose([*resize, *augmentation, *tail]), eval_tf


def train_augmentation(spec: TorchvisionSpec, size: int) -> list[Any]:
    """The train-time augmentation of ``spec`` at ``size`` px (after any resize, before ``ToTensor``).

    The crop padding is scaled with the image, so the shift stays the same fraction of it.
    """
    steps: list[Any] = []
    if spec.crop_padding:
        padding = max(1, round(spec.crop_padding * size / spec.native_size))
        steps.append(transforms.RandomCrop(size, padding=padding))
    if spec.flip:
        steps.append(transforms.RandomHorizontalFlip())
    return steps


def load_torchvision(spec: TorchvisionSpec, data_dir: Path | None, options: LoadOptions) -> DataSplits:
    """Load ``spec``'s dataset from ``data_dir`` (torchvision's layout) and split it.

    Args:
        spec: Which dataset.
        data_dir: The folder holding torchvision's files.
        options: Split, download, resize and augmentation settings.

    Returns:
        ``train``/``val`` are disjoint ``Subset`` s of the official training set (``val`` without
        augmentation); ``test`` is the official test set.

    Raises:
        DataNotFoundError: If no folder was given, it is missing, or torchvision cannot read it.
    """
    if data_dir is None or not (options.download or data_dir.is_dir()):
        raise data_not_found(spec.name, data_dir, list(spec.layout), downloadable=True)
    try:
        base_train = spec.dataset_cls(str(data_dir), train=True, download=options.download)
        base_test = spec.dataset_cls(str(data_dir), train=False, download=options.download)
    except READ_ERRORS as exc:
        raise data_not_found(
            spec.name, data_dir, list(spec.layout), downloadable=True, reason=str(exc)
        ) from exc
    size = options.image_size or spec.native_size
    train_tf, eval_tf = _transforms(spec, size, options.augment)
    train, val = split_train_val(
        TransformedView(base_train, train_tf), TransformedView(base_train, eval_tf), len(base_train), options
    )
    return DataSplits(
        name=spec.name,
        train=train,
        val=val,
        test=TransformedView(base_test, eval_tf),
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        image_size=(size, size),
    )


load_fashion_mnist = partial(load_torchvision, FASHION_MNIST)
load_mnist = partial(load_torchvision, MNIST)
load_cifar10 = partial(load_torchvision, CIFAR10)
load_cifar100 = partial(load_torchvision, CIFAR100)
