"""Fashion-MNIST from a real folder (``/work/shared/data/fashion-mnist DEST`` writes one).

The folder comes from ``$AUTOPRUNE_FASHION_MNIST`` (default ``/tmp/autoprune-fmnist``); skipped when absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from autoprune.data import DataSplits, load_dataset

FOLDER = Path(os.environ.get("AUTOPRUNE_FASHION_MNIST", "/tmp/autoprune-fmnist"))


def _first_images(src: Path, dest: Path, *, train: int, test: int) -> Path:
    """A torchvision Fashion-MNIST folder holding the first ``train`` / ``test`` images of ``src``'s raw
    IDX files (headers rewritten), so that a command runs on real files in seconds."""
    raw = dest / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", train), ("t10k", test)):
        for kind, header, item in (("images-idx3", 16, 28 * 28), ("labels-idx1", 8, 1)):
            data = (src / "FashionMNIST" / "raw" / f"{prefix}-{kind}-ubyte").read_bytes()
            head = bytearray(data[:header])
            head[4:8] = n.to_bytes(4, "big")
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(bytes(head) + data[header: header + n * item])
    return dest


def sizes(splits: DataSplits) -> tuple[int, int, int]:
    """Lengths of train, val and test (``Dataset`` is not typed as ``Sized``)."""
    return len(splits.train), len(splits.val), len(splits.test)  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.skipif(
    not (FOLDER / "FashionMNIST" / "raw").is_dir(), reason=f"no Fashion-MNIST folder at {FOLDER}"
)
def test_fashion_mnist_folder() -> None:
    splits = load_dataset("fashion-mnist", FOLDER, val_fraction=0.1, split_seed=0)
    n_val = 6000
    assert sizes(splits) == (60000 - n_val, n_val, 10000)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, (28, 28))
    x, y = next(iter(splits.train_loader(32)))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < 10
    x, _ = next(iter(splits.val_loader(64)))
    assert x.shape == (64, 1, 28, 28)
    assert abs(float(x.mean())) < 0.3 and 0.7 < float(x.std()) < 1.3  # normalized
    test_x, test_y = next(iter(splits.test_loader(10000)))
    assert test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(test_y, minlength=10).tolist() == [1000] * 10
    assert len(splits.calibration_loader(64, num_batches=4).dataset) == 256  # type: ignore[arg-type]


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not (FOLDER / "FashionMNIST" / "raw").is_dir(), reason=f"no Fashion-MNIST folder at {FOLDER}"
)
def test_train_command_on_the_real_folder(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from autoprune.cli import app

    folder = _first_images(FOLDER, tmp_path / "fmnist", train=12000, test=2000)  # the same files, cut short
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--model", "vgg_small", "--dataset", "fashion-mnist", "--data-dir", str(folder),
         "--epochs", "1", "--out", str(out), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "fashion-mnist" and report["dense"]["test_samples"] == 2000
    assert report["dense"]["accuracy"] > 0.6  # one epoch of VGG-small on 10800 Fashion-MNIST images
    assert (out / "model.pt").is_file()
