"""``path/to/file.py:factory`` models, built from the user's own file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from autoprune.errors import AutoPruneError, UnknownNameError
from autoprune.models import ModelSourceError, build_model

USER_MODULE = textwrap.dedent(
    """
    from torch import nn
    from helpers import WIDTH  # a neighbour of this file

    def make(num_classes, in_channels=3):
        head = nn.Linear(WIDTH, num_classes)
        return nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)

    def make_fixed():
        return make(num_classes=2, in_channels=3)

    def make_any(**kwargs):
        return make(**kwargs)

    def not_a_model(num_classes):
        return num_classes

    class Net(nn.Module):
        def __init__(self, num_classes=10):
            super().__init__()
            self.fc = nn.Linear(3, num_classes)
    """
)


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    (tmp_path / "helpers.py").write_text("WIDTH = 4\n")
    path = tmp_path / "my_net.py"
    path.write_text(USER_MODULE)
    return path


def test_factory_receives_sizes(user_file: Path) -> None:
    model = build_model(f"{user_file}:make", num_classes=5, in_channels=2)
    assert model(torch.randn(1, 2, 8, 8)).shape == (1, 5)


def test_factory_with_kwargs_receives_both(user_file: Path) -> None:
    model = build_model(f"{user_file}:make_any", num_classes=3, in_channels=1)
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 3)


def test_factory_without_parameters_is_called_bare(user_file: Path) -> None:
    model = build_model(f"{user_file}:make_fixed", num_classes=5, in_channels=1)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 2)


def test_class_as_factory(user_file: Path) -> None:
    model = build_model(f"{user_file}:Net", num_classes=6)
    assert model.fc.out_features == 6  # type: ignore[union-attr]


def test_missing_factory_lists_the_callables(user_file: Path) -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model(f"{user_file}:mak")
    message = str(info.value)
    assert "no factory 'mak'" in message
    assert "Did you mean 'make'" in message
    assert "Net, make, make_any, make_fixed, not_a_model" in message  # own callables, not `nn`
    assert str(user_file) in message


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.py"
    with pytest.raises(ModelSourceError, match=r"model file .*nope\.py.* does not exist") as info:
        build_model(f"{missing}:make")
    assert isinstance(info.value, AutoPruneError)


def test_file_without_factory_name(user_file: Path) -> None:
    with pytest.raises(ModelSourceError, match=r"no factory; write it as '.*my_net\.py:<factory>'"):
        build_model(str(user_file))


def test_factory_must_return_a_module(user_file: Path) -> None:
    with pytest.raises(ModelSourceError, match="returned a int"):
        build_model(f"{user_file}:not_a_model")


def test_relative_path(user_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(user_file.parent.parent)
    model = build_model(f"{user_file.parent.name}/{user_file.name}:make", num_classes=4)
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 4)
