"""Datasets read from a folder: torchvision's layouts, class folders, and the errors when they are missing."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

from autoprune.data import DataSplits, load_dataset
from autoprune.errors import DataNotFoundError

N_TRAIN, N_TEST = 60, 20


def sizes(splits: DataSplits) -> tuple[int, int, int]:
    """Lengths of train, val and test (``Dataset`` is not typed as ``Sized``)."""
    return len(splits.train), len(splits.val), len(splits.test)  # type: ignore[arg-type]


def write_fake_mnist(
    root: Path, folder: str = "FashionMNIST", n_train: int = N_TRAIN, n_test: int = N_TEST
) -> None:
    """Write random 28x28 images in torchvision's MNIST layout (uncompressed idx files)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
        )
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def write_image_folder(root: Path, test_name: str = "val", classes: tuple[str, ...] = ("cat", "dog")) -> None:
    """Write a few random PNGs per class under ``train/`` and ``test_name/``."""
    rng = np.random.default_rng(0)
    for part, per_class in (("train", 5), (test_name, 2)):
        for cls in classes:
            folder = root / part / cls
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


# --- missing or malformed folders -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("fashion-mnist", "FashionMNIST/raw/train-images-idx3-ubyte"),
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
    ],
)
def test_missing_folder(tmp_path: Path, name: str, layout: str) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, missing)
    message = str(info.value)
    assert name in message and str(missing) in message and layout in message and "--download" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10"])
def test_folder_without_the_files(tmp_path: Path, name: str) -> None:
    """The folder exists but torchvision finds nothing in it ("Dataset not found")."""
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "--download" in message and "not found" in message.lower()
    assert isinstance(info.value.__cause__, RuntimeError)


@pytest.mark.parametrize("name", ["fashion-mnist", "cifar10", "imagefolder"])
def test_no_data_dir(name: str) -> None:
    with pytest.raises(DataNotFoundError, match="no data folder was given"):
        load_dataset(name)


def test_truncated_file(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    images = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    with pytest.raises(DataNotFoundError, match="fashion-mnist"):
        load_dataset("fashion-mnist", tmp_path)


def test_missing_imagefolder(tmp_path: Path) -> None:
    missing = tmp_path / "imagenet"
    with pytest.raises(DataNotFoundError) as info:
        load_dataset("imagefolder", missing)
    message = str(info.value)
    assert str(missing) in message
    assert "train/<class>/*.jpg" in message and "val/<class>/*.jpg" in message
    assert "cannot be downloaded" in message and "--download" not in message


def test_imagefolder_without_val(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    for png in (tmp_path / "val").rglob("*.png"):
        png.unlink()
    for folder in sorted((tmp_path / "val").iterdir()):
        folder.rmdir()
    (tmp_path / "val").rmdir()
    with pytest.raises(DataNotFoundError, match="no val/ or test/ folder"):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_empty_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_dataset("imagefolder", tmp_path)


def test_imagefolder_class_mismatch(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    (tmp_path / "val" / "dog").rename(tmp_path / "val" / "fox")
    with pytest.raises(DataNotFoundError, match="class folders differ"):
        load_dataset("imagefolder", tmp_path)


# --- loading -----------------------------------------------------------------------------------------


def test_fake_fashion_mnist(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    splits = load_dataset("fashion-mnist", tmp_path, val_fraction=0.25, split_seed=1)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, (28, 28))
    assert sizes(splits) == (45, 15, N_TEST)
    assert isinstance(splits.train, Subset) and isinstance(splits.val, Subset)
    assert not set(splits.train.indices) & set(splits.val.indices)
    assert set(splits.train.indices) | set(splits.val.indices) == set(range(N_TRAIN))
    x, y = next(iter(splits.train_loader(8)))
    assert x.shape == (8, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert next(iter(splits.test_loader(8)))[0].shape == (8, 1, 28, 28)
    calib = list(splits.calibration_loader(4, num_batches=2))
    assert len(calib) == 2 and calib[0][0].shape == (4, 1, 28, 28)
    other = load_dataset("fashion-mnist", tmp_path, val_fraction=0.25, split_seed=2)
    assert set(other.val.indices) != set(splits.val.indices)  # type: ignore[attr-defined]


def test_fake_mnist_resized(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, folder="MNIST")
    splits = load_dataset("mnist", str(tmp_path), image_size=32)
    assert splits.image_size == (32, 32) and splits.input_shape(3) == (3, 1, 32, 32)
    assert splits.val[0][0].shape == (1, 32, 32) and splits.test[0][0].shape == (1, 32, 32)


def test_cifar_transforms() -> None:
    """CIFAR data cannot be faked (torchvision checks its md5 sums), so check the transforms directly."""
    from autoprune.data.torchvision_sets import CIFAR10, _transforms

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    train_tf, eval_tf = _transforms(CIFAR10, 32, augment=True)
    assert train_tf is not eval_tf
    names = [type(t).__name__ for t in train_tf.transforms]  # type: ignore[attr-defined]
    assert "RandomCrop" in names and "RandomHorizontalFlip" in names
    assert train_tf(image).shape == eval_tf(image).shape == (3, 32, 32)
    assert torch.equal(eval_tf(image), eval_tf(image))
    no_aug_train, _ = _transforms(CIFAR10, 32, augment=False)
    assert torch.equal(no_aug_train(image), eval_tf(image))


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_imagefolder(tmp_path: Path, test_name: str) -> None:
    write_image_folder(tmp_path, test_name=test_name)
    splits = load_dataset("imagefolder", tmp_path, image_size=32, val_fraction=0.2)
    assert splits.num_classes == 2 and splits.in_channels == 3 and splits.image_size == (32, 32)
    assert sizes(splits) == (8, 2, 4)
    for loader in (splits.train_loader(4), splits.val_loader(4), splits.test_loader(4)):
        x, y = next(iter(loader))
        assert x.shape[1:] == (3, 32, 32) and x.dtype == torch.float32
        assert set(y.tolist()) <= {0, 1}
    assert splits.input_shape(4) == (4, 3, 32, 32)
    assert isinstance(splits.train, Subset) and isinstance(splits.val, Subset)
    assert sorted([*splits.train.indices, *splits.val.indices]) == list(range(10))
    # val and test are not augmented (same tensor twice); train is (random crops differ)
    assert torch.equal(splits.val[0][0], splits.val[0][0])
    assert torch.equal(splits.test[0][0], splits.test[0][0])
    torch.manual_seed(0)
    assert not all(torch.equal(splits.train[0][0], splits.train[0][0]) for _ in range(3))


def test_imagefolder_default_size(tmp_path: Path) -> None:
    write_image_folder(tmp_path)
    splits = load_dataset("imagefolder", tmp_path, augment=False)
    assert splits.image_size == (224, 224)
    assert splits.train[0][0].shape == (3, 224, 224)
