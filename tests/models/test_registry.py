"""Name lookup in :func:`build_model`: registered factories and helpful errors for unknown names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from autoprune.errors import UnknownNameError
from autoprune.models import MODELS, ModelSourceError, build_model


def test_unknown_name_suggests_and_lists_forms() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model("vgg_smal")
    message = str(info.value)
    assert "Did you mean 'vgg_small'" in message
    assert "Valid names: mobilenetv2, resnet20, resnet32, resnet56, vgg_small." in message
    assert "torchvision:<name>" in message
    assert "file.py:factory" in message


def test_registered_factory_gets_only_the_kwargs_it_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {}

    def tiny(num_classes: int) -> nn.Module:
        seen["num_classes"] = num_classes
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

    monkeypatch.setitem(MODELS._items, "tiny", tiny)  # a temporary entry, removed after the test
    model = build_model("tiny", num_classes=4, in_channels=1)
    assert seen == {"num_classes": 4}
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 4)


def test_factory_must_return_a_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(MODELS._items, "broken", lambda: "not a model")
    with pytest.raises(ModelSourceError, match=r"returned a str, expected a torch\.nn\.Module"):
        build_model("broken")
