"""The embedded digits dataset: shapes, splits, determinism, loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sklearn_digits
from torch.utils.data import Subset

from autoprune.data import DATASETS, DataSplits, dataset_names, load_dataset
from autoprune.data.digits import DIGITS_MEAN, DIGITS_STD
from autoprune.errors import UnknownNameError

N_DIGITS = 1797


def sizes(splits: DataSplits) -> tuple[int, int, int]:
    """Lengths of train, val and test (``Dataset`` is not typed as ``Sized``)."""
    return len(splits.train), len(splits.val), len(splits.test)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def digits() -> DataSplits:
    return load_dataset("digits")


def _indices(ds: object) -> list[int]:
    assert isinstance(ds, Subset)
    return list(ds.indices)


def _raw_keys(ds: torch.utils.data.Dataset) -> set[bytes]:
    """Identify samples by their raw 0..16 pixels, independently of how the splits are built.

    All 1797 digits are distinct, so this key names one sample.
    """
    keys = set()
    for i in range(len(ds)):  # type: ignore[arg-type]
        x, _ = ds[i]
        raw = torch.round((x * DIGITS_STD + DIGITS_MEAN) * 16).to(torch.uint8)
        keys.add(raw.numpy().tobytes())
    return keys


def test_names() -> None:
    assert dataset_names() == ["cifar10", "cifar100", "digits", "fashion-mnist", "imagefolder", "mnist"]
    assert "digits" in DATASETS


def test_shapes_and_metadata(digits: DataSplits) -> None:
    assert digits.name == "digits"
    assert digits.num_classes == 10
    assert digits.in_channels == 1
    assert digits.image_size == (8, 8)
    assert digits.input_shape(5) == (5, 1, 8, 8)
    assert digits.input_shape() == (1, 1, 8, 8)
    x, y = next(iter(digits.train_loader(batch_size=16)))
    assert x.shape == (16, 1, 8, 8) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    assert set(torch.cat([b[1] for b in digits.test_loader()]).tolist()) == set(range(10))


def test_normalized(digits: DataSplits) -> None:
    x = torch.cat([b[0] for b in digits.val_loader()] + [b[0] for b in digits.train_loader()])
    assert abs(float(x.mean())) < 0.1
    assert abs(float(x.std()) - 1.0) < 0.1


def test_splits_disjoint_and_cover_everything(digits: DataSplits) -> None:
    train, val, test = (set(_indices(d)) for d in (digits.train, digits.val, digits.test))
    assert (len(train), len(val), len(test)) == sizes(digits)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(N_DIGITS))
    assert len(test) == round(0.2 * N_DIGITS)
    assert len(val) == round(0.25 * (N_DIGITS - len(test)))  # digits' default: 25% (see VAL_FRACTIONS)


def test_splits_disjoint_by_content() -> None:
    plain = load_dataset("digits", augment=False)
    keys = [_raw_keys(d) for d in (plain.train, plain.val, plain.test)]
    assert sum(len(k) for k in keys) == N_DIGITS
    assert set().union(*keys) == {bytes(r.astype(np.uint8)) for r in sklearn_digits().data}


def test_splits_stratified(digits: DataSplits) -> None:
    for part in (digits.test, digits.val):
        counts = torch.bincount(torch.stack([part[i][1] for i in range(len(part))]), minlength=10)  # type: ignore[arg-type]
        assert int(counts.min()) >= 0.8 * len(part) / 10  # type: ignore[arg-type]


def test_split_deterministic(digits: DataSplits) -> None:
    again = load_dataset("digits")
    for a, b in zip(
        (digits.train, digits.val, digits.test), (again.train, again.val, again.test), strict=True
    ):
        assert _indices(a) == _indices(b)


def test_split_seed_changes_val_not_test(digits: DataSplits) -> None:
    other = load_dataset("digits", split_seed=1)
    assert _indices(other.test) == _indices(digits.test)
    assert _indices(other.val) != _indices(digits.val)
    assert set(_indices(other.train)) | set(_indices(other.val)) == set(_indices(digits.train)) | set(
        _indices(digits.val)
    )


def test_val_fraction(digits: DataSplits) -> None:
    bigger = load_dataset("digits", val_fraction=0.3)
    n_train, n_val, _ = sizes(digits)
    assert sizes(bigger)[1] == round(0.3 * (n_train + n_val))
    assert _indices(bigger.test) == _indices(digits.test)


@pytest.mark.parametrize("bad", [0, 0.0, 1, 1.5, -0.1, float("nan")])
def test_val_fraction_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match=r"val_fraction=.*\(0, 1\)"):
        load_dataset("digits", val_fraction=bad)


@pytest.mark.parametrize("size", [16, 32])
def test_upscaling(size: int) -> None:
    splits = load_dataset("digits", image_size=size)
    assert splits.image_size == (size, size)
    assert splits.input_shape(2) == (2, 1, size, size)
    for loader in (
        splits.train_loader(8),
        splits.val_loader(8),
        splits.test_loader(8),
        splits.calibration_loader(8),
    ):
        x, _ = next(iter(loader))
        assert x.shape == (8, 1, size, size)


def test_bad_image_size() -> None:
    with pytest.raises(ValueError, match="image_size"):
        load_dataset("digits", image_size=0)


def test_train_loader_reproducible() -> None:
    digits = load_dataset("digits", augment=False)  # augmentation draws from torch's global generator

    def order(seed: int) -> torch.Tensor:
        return torch.cat([b[0].flatten(1) for b in digits.train_loader(64, seed=seed)])

    assert torch.equal(order(3), order(3))
    assert not torch.equal(order(3), order(4))
    unshuffled = torch.cat([b[0].flatten(1) for b in digits.train_loader(64, seed=3, shuffle=False)])
    assert torch.equal(
        unshuffled, torch.cat([b[0].flatten(1) for b in digits.train_loader(64, shuffle=False)])
    )
    assert torch.equal(order(3).sort(dim=0).values, unshuffled.sort(dim=0).values)


def test_calibration_from_val_only(digits: DataSplits) -> None:
    loader = digits.calibration_loader(batch_size=32)
    assert len(loader.dataset) == len(digits.val)  # type: ignore[arg-type]
    calib = loader.dataset
    assert isinstance(calib, Subset) and calib.dataset is digits.val
    base = {_indices(digits.val)[i] for i in calib.indices}
    assert base == set(_indices(digits.val))
    assert not base & set(_indices(digits.test))
    # independent of the implementation: compare the pixels themselves
    x = torch.cat([b[0] for b in loader])
    keys = {torch.round((s * DIGITS_STD + DIGITS_MEAN) * 16).to(torch.uint8).numpy().tobytes() for s in x}
    assert keys == _raw_keys(digits.val)
    assert not keys & _raw_keys(digits.test)


def test_calibration_limited_and_deterministic(digits: DataSplits) -> None:
    loader = digits.calibration_loader(batch_size=16, num_batches=3, seed=5)
    batches = list(loader)
    assert len(batches) == 3 and all(b[0].shape[0] == 16 for b in batches)
    again = list(digits.calibration_loader(batch_size=16, num_batches=3, seed=5))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))
    other = list(digits.calibration_loader(batch_size=16, num_batches=3, seed=6))
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(batches, other, strict=True))
    # asking for more than val holds gives all of val
    assert len(digits.calibration_loader(batch_size=64, num_batches=100).dataset) == len(digits.val)  # type: ignore[arg-type]


def test_calibration_bad_arguments(digits: DataSplits) -> None:
    with pytest.raises(ValueError, match="num_batches"):
        digits.calibration_loader(num_batches=0)
    with pytest.raises(ValueError, match="batch_size"):
        digits.calibration_loader(batch_size=0)


def test_data_dir_ignored(tmp_path: Path) -> None:
    assert _indices(load_dataset("digits", tmp_path).test) == _indices(load_dataset("digits").test)


@pytest.mark.parametrize(
    ("wrong", "suggestion"), [("fashion_mnist", "fashion-mnist"), ("cifar-10", "cifar10")]
)
def test_unknown_name(wrong: str, suggestion: str) -> None:
    with pytest.raises(UnknownNameError) as info:
        load_dataset(wrong)
    message = str(info.value)
    assert wrong in message
    assert f"Did you mean {suggestion!r}" in message
    for name in dataset_names():
        assert name in message


def test_default_validation_split_is_large_enough_to_rank(digits: DataSplits) -> None:
    # 25% of the 1438 non-test images: one image is 0.28 accuracy points (10% would be 144 images, 0.7 points)
    assert sizes(digits)[1] == round(0.25 * 1438) == 360


def _shifts(image: torch.Tensor, fill: float) -> list[torch.Tensor]:
    """Every shift of ``image`` by -1, 0 or +1 pixel each way, the uncovered border set to ``fill``."""
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1), value=fill)
    return [padded[..., t : t + 8, s : s + 8] for t in range(3) for s in range(3)]


def test_train_split_shifted_by_at_most_one_pixel_never_mirrored() -> None:
    """Augmentation moves train digits by up to one pixel (background fill) and leaves val and test alone."""
    torch.manual_seed(0)
    augmented, plain = load_dataset("digits"), load_dataset("digits", augment=False)
    background = (0.0 - DIGITS_MEAN) / DIGITS_STD
    moved = 0
    for i in range(200):
        x, y = augmented.train[i]
        x0, y0 = plain.train[i]
        assert int(y) == int(y0)
        assert any(torch.equal(x, s) for s in _shifts(x0, background))
        assert not torch.equal(x, torch.flip(x0, dims=[-1])) or torch.equal(x0, torch.flip(x0, dims=[-1]))
        moved += not torch.equal(x, x0)
    assert moved > 100  # 8 of 9 offsets move the image
    for part in ("val", "test"):
        a, b = getattr(augmented, part), getattr(plain, part)
        assert all(torch.equal(a[i][0], b[i][0]) for i in range(50))


def test_torchvision_augmentation_flips_only_where_the_class_survives() -> None:
    from torchvision import transforms

    from autoprune.data.torchvision_sets import CIFAR10, FASHION_MNIST, MNIST, train_augmentation

    def kinds(spec: object, size: int) -> list[tuple[str, object]]:
        return [(type(t).__name__, getattr(t, "padding", None)) for t in train_augmentation(spec, size)]  # type: ignore[arg-type]

    assert kinds(FASHION_MNIST, 28) == [("RandomCrop", 2), ("RandomHorizontalFlip", None)]
    assert kinds(MNIST, 28) == [("RandomCrop", 2)]  # a mirrored digit is another symbol
    assert kinds(CIFAR10, 32) == [("RandomCrop", 4), ("RandomHorizontalFlip", None)]
    assert kinds(CIFAR10, 64) == [("RandomCrop", 8), ("RandomHorizontalFlip", None)]  # same fraction
    assert isinstance(train_augmentation(MNIST, 28)[0], transforms.RandomCrop)
